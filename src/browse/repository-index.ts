import type { StorageDriver } from '../storage/driver/storage-driver.ts';
import type { StorePaths } from '../storage/paths.ts';
import { holdsImages, walkRepositories } from '../storage/repository-walk.ts';

/** How long one walk of the repository directories answers listings and searches. */
const FRESH_MS = 30_000;

/**
 * The names of every repository in the store, for the browser's listing and search.
 *
 * What it costs: one listing (driver.children) per directory of the repository trees (for 3,000 repositories
 * about 3,000 readdirs: measured 70–240 ms here, then 5–13 ms per page or search from the
 * cached names) and the keys in memory (about 60 bytes each: 176 KiB for 3,000). No file is stat'ed or read. It is walked only
 * when someone browses, at most once per FRESH_MS, one walk at a time; the blob path never
 * touches it. A repository pulled meanwhile shows on the next walk.
 */
export class RepositoryIndex {
  private readonly store: { driver: StorageDriver; paths: StorePaths };
  private keys?: { at: number; sorted: string[] };
  private walking?: Promise<string[]>;
  private readonly freshMs: number;

  constructor(store: { driver: StorageDriver; paths: StorePaths }, options: { freshMs?: number } = {}) {
    this.store = store;
    this.freshMs = options.freshMs ?? FRESH_MS;
  }

  /** Every repository key (paths.ts repositoryKey), sorted. */
  async all(): Promise<string[]> {
    if (this.keys && performance.now() - this.keys.at < this.freshMs) return this.keys.sorted;
    this.walking ??= this.walk().finally(() => {
      this.walking = undefined;
    });
    return this.walking;
  }

  private async walk(): Promise<string[]> {
    const keys: string[] = [];
    await walkRepositories(this.store.driver, this.store.paths, async (_prefix, key, entries) => {
      if (holdsImages(entries)) keys.push(key);
    });
    keys.sort();
    this.keys = { at: performance.now(), sorted: keys };
    return keys;
  }
}
