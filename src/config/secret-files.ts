import { readFileSync } from 'node:fs';
import type { Config } from './schema.ts';

/**
 * Fills proxy.password from proxy.passwordfile (ours), and each remote's likewise,
 * storage.s3.secretkey from storage.s3.secretkeyfile, and http.secret from http.secretfile. A password belongs in a file (a mounted
 * secret) or the environment (REGISTRY_PROXY_PASSWORD), never on a command line where `ps` shows
 * it; the config file may hold it too. One trailing newline is dropped, as `echo pw > file` adds
 * it. Errors name the key and the file, never the content.
 */
export function resolveSecretFiles(config: Config, fail: (message: string) => Error): Config {
  const proxy = { ...readPasswordFile(config.proxy, 'proxy', fail), remotes: config.proxy.remotes.map((r, i) => readPasswordFile(r, `proxy.remotes.${i}`, fail)) };
  const http = resolveHttpSecret(config, fail);
  const s3 = config.storage.s3;
  if (s3?.secretkeyfile === undefined) return { ...config, proxy, http };
  const secretkey = readSecret(s3.secretkeyfile, 'storage.s3.secretkeyfile', fail);
  return { ...config, proxy, http, storage: { ...config.storage, s3: { ...s3, secretkey } } };
}

/** The peers' HMAC key: fewer characters than this is a key one could guess from a signed request offline. */
export const MIN_PEER_SECRET_LENGTH = 16;

/**
 * http.secret from http.secretfile; with the peer listener (redis.fleet.peers.addr) it must be
 * long enough to key the peers' HMAC. The schema already refused neither or both being set.
 */
function resolveHttpSecret(config: Config, fail: (message: string) => Error): Config['http'] {
  const key = config.http.secretfile !== undefined ? 'http.secretfile' : 'http.secret';
  const secret = config.http.secretfile !== undefined ? readSecret(config.http.secretfile, key, fail) : config.http.secret;
  if (config.redis.fleet.peers.addr !== undefined && secret !== undefined && secret.length < MIN_PEER_SECRET_LENGTH) {
    throw fail(`${key}: the key of redis.fleet.peers must be at least ${MIN_PEER_SECRET_LENGTH} characters (e.g. openssl rand -hex 32)`);
  }
  return { ...config.http, secret };
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
