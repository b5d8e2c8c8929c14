import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isRegistryHost, type StorePaths } from '../storage/paths.ts';

/** How long one walk of the repository directories answers listings and searches. */
const FRESH_MS = 30_000;

/**
 * The names of every repository in the store, for the browser's listing and search.
 *
 * What it costs: one readdir per directory of the repository trees (for 3,000 repositories
 * about 3,000 readdirs: measured 70–240 ms here, then 5–13 ms per page or search from the
 * cached names) and the keys in memory (about 60 bytes each: 180 KB for 3,000). No file is stat'ed or read. It is walked only
 * when someone browses, at most once per FRESH_MS, one walk at a time; the blob path never
 * touches it. A repository pulled meanwhile shows on the next walk.
 */
export class RepositoryIndex {
  private readonly paths: StorePaths;
  private keys?: { at: number; sorted: string[] };
  private walking?: Promise<string[]>;
  private readonly freshMs: number;

  constructor(paths: StorePaths, options: { freshMs?: number } = {}) {
    this.paths = paths;
    this.freshMs = options.freshMs ?? FRESH_MS;
  }

  /** Every repository key (paths.ts repositoryKey), sorted. */
  async all(): Promise<string[]> {
    if (this.keys && Date.now() - this.keys.at < this.freshMs) return this.keys.sorted;
    this.walking ??= this.walk().finally(() => {
      this.walking = undefined;
    });
    return this.walking;
  }

  private async walk(): Promise<string[]> {
    const keys: string[] = [];
    for (const { dir, keyPrefix } of await this.paths.repositoryRoots()) await collect(dir, keyPrefix, '', keys, 0);
    keys.sort();
    this.keys = { at: Date.now(), sorted: keys };
    return keys;
  }
}

/** A repository is a directory holding `_manifests` or `_tags` (as store-stats counts them). */
async function collect(dir: string, keyPrefix: string, name: string, into: string[], depth: number): Promise<void> {
  const entries = await list(dir);
  if (name && (entries.includes('_manifests') || entries.includes('_tags'))) into.push(keyPrefix + name);
  if (depth > 16) return;
  for (const entry of entries) {
    if (entry.startsWith('_') || entry.startsWith('.')) continue;
    // Under repositories/, a host-like first component is nothing served (see inventory.ts).
    if (!name && !keyPrefix && isRegistryHost(entry)) continue;
    await collect(join(dir, entry), keyPrefix, name ? `${name}/${entry}` : entry, into, depth + 1);
  }
}

async function list(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch {
    return [];
  }
}
