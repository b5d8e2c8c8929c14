import { readFileSync } from 'node:fs';
import type { Config } from './schema.ts';

/**
 * Fills proxy.password from proxy.passwordfile (ours), and each remote's likewise, and
 * storage.s3.secretkey from storage.s3.secretkeyfile. A password belongs in a file (a mounted
 * secret) or the environment (REGISTRY_PROXY_PASSWORD), never on a command line where `ps` shows
 * it; the config file may hold it too. One trailing newline is dropped, as `echo pw > file` adds
 * it. Errors name the key and the file, never the content.
 */
export function resolveSecretFiles(config: Config, fail: (message: string) => Error): Config {
  const proxy = { ...readPasswordFile(config.proxy, 'proxy', fail), remotes: config.proxy.remotes.map((r, i) => readPasswordFile(r, `proxy.remotes.${i}`, fail)) };
  const s3 = config.storage.s3;
  if (s3?.secretkeyfile === undefined) return { ...config, proxy };
  const secretkey = readSecret(s3.secretkeyfile, 'storage.s3.secretkeyfile', fail);
  return { ...config, proxy, storage: { ...config.storage, s3: { ...s3, secretkey } } };
}

function readPasswordFile<T extends { password?: string; passwordfile?: string }>(upstream: T, key: string, fail: (message: string) => Error): T {
  if (upstream.passwordfile === undefined) return upstream;
  if (upstream.password !== undefined) throw fail(`${key}.passwordfile: set either ${key}.password or ${key}.passwordfile, not both`);
  return { ...upstream, password: readSecret(upstream.passwordfile, `${key}.passwordfile`, fail) };
}

/** A secret from a file, one trailing newline dropped; errors name the key and the file, never the content. */
function readSecret(file: string, key: string, fail: (message: string) => Error): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw fail(`${key}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw fail(`${key}: ${file} is empty`);
  return secret;
}
