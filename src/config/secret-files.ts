import { readFileSync } from 'node:fs';
import type { Config } from './schema.ts';

/**
 * Fills proxy.password from proxy.passwordfile (ours). A password belongs in a file (a mounted
 * secret) or the environment (REGISTRY_PROXY_PASSWORD), never on a command line where `ps` shows
 * it; the config file may hold it too. One trailing newline is dropped, as `echo pw > file` adds
 * it. Errors name the key and the file, never the content.
 */
export function resolveSecretFiles(config: Config, fail: (message: string) => Error): Config {
  const proxy = config.proxy;
  if (proxy.passwordfile === undefined) return config;
  if (proxy.password !== undefined) throw fail('proxy.passwordfile: set either proxy.password or proxy.passwordfile, not both');
  let text: string;
  try {
    text = readFileSync(proxy.passwordfile, 'utf8');
  } catch (error) {
    throw fail(`proxy.passwordfile: cannot read ${proxy.passwordfile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw fail(`proxy.passwordfile: ${proxy.passwordfile} is empty`);
  return { ...config, proxy: { ...proxy, password } };
}
