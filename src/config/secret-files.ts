import { readFileSync } from 'node:fs';
import type { Config } from './schema.ts';

/**
 * Fills proxy.password from proxy.passwordfile (ours), and each remote's likewise. A password belongs in a file (a mounted
 * secret) or the environment (REGISTRY_PROXY_PASSWORD), never on a command line where `ps` shows
 * it; the config file may hold it too. One trailing newline is dropped, as `echo pw > file` adds
 * it. Errors name the key and the file, never the content.
 */
export function resolveSecretFiles(config: Config, fail: (message: string) => Error): Config {
  const proxy = { ...readPasswordFile(config.proxy, 'proxy', fail), remotes: config.proxy.remotes.map((r, i) => readPasswordFile(r, `proxy.remotes.${i}`, fail)) };
  return { ...config, proxy };
}

function readPasswordFile<T extends { password?: string; passwordfile?: string }>(upstream: T, key: string, fail: (message: string) => Error): T {
  if (upstream.passwordfile === undefined) return upstream;
  if (upstream.password !== undefined) throw fail(`${key}.passwordfile: set either ${key}.password or ${key}.passwordfile, not both`);
  let text: string;
  try {
    text = readFileSync(upstream.passwordfile, 'utf8');
  } catch (error) {
    throw fail(`${key}.passwordfile: cannot read ${upstream.passwordfile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw fail(`${key}.passwordfile: ${upstream.passwordfile} is empty`);
  return { ...upstream, password };
}
