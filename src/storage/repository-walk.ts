import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound } from './blob-store.ts';
import { isRegistryHost } from './paths.ts';

/** A directory's entries; none when it does not exist or is not a directory (it vanished during a walk). */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** A repository as the figures and the browser count it: it holds a manifest link or a tag. */
export function holdsImages(entries: string[]): boolean {
  return entries.includes('_manifests') || entries.includes('_tags');
}

/**
 * Calls `visit` for every repository directory under one registry's root (StorePaths.repositoryRoots):
 * one with any `_` entry (`_manifests`, `_tags`, `_layers`, `_access`), with its key (paths.ts
 * repositoryKey) and its entries. The one walk of the repository trees: sweeps, the store's
 * figures and the browser's index all use it.
 */
export async function walkRepositories(root: string, keyPrefix: string, visit: (dir: string, key: string, entries: string[]) => Promise<void>): Promise<void> {
  const walk = async (dir: string, name: string, depth: number): Promise<void> => {
    const entries = await listDir(dir);
    if (name && entries.some((entry) => entry.startsWith('_'))) await visit(dir, name, entries);
    if (depth > 16) return;
    for (const entry of entries) {
      if (entry.startsWith('_') || entry.startsWith('.')) continue;
      // Under repositories/, a first component that looks like a registry host is no key of
      // the default remote (those live under registries/): left alone, as nothing serves it.
      if (!name && !keyPrefix && isRegistryHost(entry)) continue;
      await walk(join(dir, entry), name ? `${name}/${entry}` : `${keyPrefix}${entry}`, depth + 1);
    }
  };
  await walk(root, '', 0);
}
