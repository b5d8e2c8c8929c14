import { readdir } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { parseDigest } from '../registry/digest.ts';
import { isNotFound } from './blob-store.ts';
import type { StorageDriver } from './driver/storage-driver.ts';
import { isRegistryHost, type StorePaths } from './paths.ts';

/**
 * The driver key of a path StorePaths draws: the filesystem driver keeps key `k` at
 * `join(root, k)`, so the layout of paths.ts is the layout of keys.
 */
export function storeKey(paths: StorePaths, path: string): string {
  return relative(paths.root, path).split(sep).join('/');
}

/** The key of a blob by its digest; undefined for a name that is no digest the store keeps (a stray file). */
export function blobKey(paths: StorePaths, digest: string): string | undefined {
  try {
    return storeKey(paths, paths.blob(parseDigest(digest)));
  } catch {
    return undefined;
  }
}

/** A directory's entries; none when it does not exist or is not a directory (manifest-store.ts, until it reads through the driver). */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** A prefix's names (driver.children); none when there are none (it vanished during a walk). */
export async function listNames(driver: StorageDriver, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const name of driver.children(prefix)) names.push(name);
  return names;
}

/** A repository as the figures and the browser count it: it holds a manifest link or a tag. */
export function holdsImages(entries: string[]): boolean {
  return entries.includes('_manifests') || entries.includes('_tags');
}

/** Every prefix of repositories, with the key prefix of the names found under it ('' for the default remote's). */
export async function repositoryRoots(driver: StorageDriver, paths: StorePaths): Promise<{ prefix: string; keyPrefix: string }[]> {
  const registries = storeKey(paths, paths.registriesDir());
  const namespaces = (await listNames(driver, registries)).filter(isRegistryHost).sort();
  return [{ prefix: storeKey(paths, paths.repositoriesDir()), keyPrefix: '' }, ...namespaces.map((ns) => ({ prefix: `${registries}/${ns}/repositories`, keyPrefix: `${ns}/` }))];
}

/**
 * Calls `visit` for every repository of the store: one with any `_` entry (`_manifests`,
 * `_tags`, `_layers`, `_access`, `_referrers`), with its prefix (the driver key of its directory), its key
 * (paths.ts repositoryKey) and its entries. Lists names only (driver.children), never an
 * object: for 3,000 repositories about 3,000 directory reads on the filesystem. The one walk
 * of the repository trees: sweeps, the store's figures and the browser's index all use it.
 */
export async function walkRepositories(
  driver: StorageDriver,
  paths: StorePaths,
  visit: (prefix: string, key: string, entries: string[]) => Promise<void>,
): Promise<void> {
  for (const root of await repositoryRoots(driver, paths)) {
    const walk = async (prefix: string, name: string, depth: number): Promise<void> => {
      const entries = await listNames(driver, prefix);
      if (name && entries.some((entry) => entry.startsWith('_'))) await visit(prefix, name, entries);
      if (depth > 16) return;
      for (const entry of entries) {
        if (entry.startsWith('_') || entry.startsWith('.')) continue;
        // Under repositories/, a first component that looks like a registry host is no key of
        // the default remote (those live under registries/): left alone, as nothing serves it.
        if (!name && !root.keyPrefix && isRegistryHost(entry)) continue;
        await walk(`${prefix}/${entry}`, name ? `${name}/${entry}` : `${root.keyPrefix}${entry}`, depth + 1);
      }
    };
    await walk(root.prefix, '', 0);
  }
}
