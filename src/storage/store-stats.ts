import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorageDriver } from './driver/storage-driver.ts';
import { splitRepositoryKey, type StorePaths } from './paths.ts';
import { blobKey, holdsImages, listNames, repositoryRoots, storeKey, walkRepositories } from './repository-walk.ts';

/** The store's figures, as `pullmirror stats`, the status page and the metrics show them. */
export interface StoreFigures {
  /** Verified blobs in blobs/ (layers, configs and manifests alike) and their bytes. */
  blobs: number;
  bytes: number;
  /** Of those, the manifests some repository links, and their bytes. */
  manifests: number;
  manifestBytes: number;
  repositories: number;
  tags: number;
  /** Repositories and tags per registry: by namespace, '' for the default remote's (repositories/). */
  registries: Record<string, { repositories: number; tags: number }>;
  /** Downloads in flight or left behind in _tmp. */
  tempFiles: number;
  tempBytes: number;
  /** When the last walk finished (ms since the epoch); blobs and bytes are kept current since. */
  computedAt: number;
  /** False while this process's first walk runs: the figures so far are partial. */
  complete: boolean;
}

const emptyFigures = (): StoreFigures => ({
  blobs: 0, bytes: 0, manifests: 0, manifestBytes: 0, repositories: 0, tags: 0, registries: {}, tempFiles: 0, tempBytes: 0, computedAt: 0, complete: false,
});

/** The store a walk counts: through its driver, laid out as paths.ts draws it. */
export interface CountedStore {
  driver: StorageDriver;
  paths: StorePaths;
  /** The local temporary area (downloads in flight): storage.s3.spooldirectory on S3; default the store's _tmp. */
  spool?: string;
}

/**
 * One walk of the store, through its driver. Blobs are counted one prefix (`blobs/<algorithm>/<xx>`,
 * about 1/256 of the store) at a time, yielding between prefixes. That makes the walk exact beside live changes: a blob added or removed in a
 * prefix already counted is applied to this walk too (`apply`), one in a prefix not yet
 * counted is seen by the walk itself, and one committed while its prefix is listed may be
 * counted twice or missed, until the next walk.
 */
class StoreWalk {
  readonly figures = emptyFigures();
  private readonly counted = new Set<string>();
  private readonly store: CountedStore;
  private cancelled = false;

  constructor(store: CountedStore) {
    this.store = store;
  }

  cancel(): void {
    this.cancelled = true;
  }

  /** Repositories and tags are counted before blobs: a change after that phase is added to this walk. */
  repositoriesCounted = false;

  /** A live change: counted only when its directory was counted already (see the class comment). */
  apply(digest: string, blobs: number, bytes: number): void {
    if (!this.counted.has(prefixDir(digest))) return;
    this.figures.blobs += blobs;
    this.figures.bytes += bytes;
  }

  async run(): Promise<StoreFigures | undefined> {
    const { figures } = this;
    const { driver, paths } = this.store;
    const linked = new Set<string>();
    for (const { keyPrefix } of await repositoryRoots(driver, paths)) figures.registries[keyPrefix.replace(/\/$/, '')] = { repositories: 0, tags: 0 };
    await walkRepositories(driver, paths, async (prefix, key, entries) => {
      if (!holdsImages(entries)) return;
      const tags = entries.includes('_tags') ? (await listNames(driver, `${prefix}/_tags`)).length : 0;
      const registry = (figures.registries[splitRepositoryKey(key).namespace ?? ''] ??= { repositories: 0, tags: 0 });
      figures.repositories++;
      figures.tags += tags;
      registry.repositories++;
      registry.tags += tags;
      if (!entries.includes('_manifests')) return;
      for (const algorithm of await listNames(driver, `${prefix}/_manifests`)) {
        for (const hex of await listNames(driver, `${prefix}/_manifests/${algorithm}`)) linked.add(`${algorithm}:${hex}`);
      }
    });
    if (this.cancelled) return undefined;
    this.repositoriesCounted = true;
    const blobs = storeKey(paths, paths.blobsDir());
    for (const algorithm of await listNames(driver, blobs)) {
      for (const prefix of await listNames(driver, `${blobs}/${algorithm}`)) {
        if (this.cancelled) return undefined;
        for await (const object of driver.walk(`${blobs}/${algorithm}/${prefix}`)) {
          figures.blobs++;
          figures.bytes += object.size;
        }
        this.counted.add(`${algorithm}/${prefix}`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    // Manifest bytes: a stat of each linked manifest (thousands), not a map of every blob's size.
    for (const digest of linked) {
      const key = blobKey(paths, digest);
      const info = key === undefined ? undefined : await driver.stat(key).catch(() => undefined);
      if (info === undefined) continue;
      figures.manifests++;
      figures.manifestBytes += info.size;
    }
    // The temporary area is local files, not the driver's (downloads in flight); in a bucket's
    // spool, not the access clock's journal beside them (`_access-clock/`).
    const spool = this.store.spool ?? paths.tmpDir();
    for (const entry of await listTree(spool)) {
      if (entry.startsWith('_')) continue;
      const size = await fileSizeAt(join(spool, entry));
      if (size === undefined) continue;
      figures.tempFiles++;
      figures.tempBytes += size;
    }
    figures.computedAt = Date.now();
    figures.complete = true;
    return figures;
  }
}

/** blobs/<algorithm>/<first two hex digits>: the directory a digest's file is in. */
function prefixDir(digest: string): string {
  const colon = digest.indexOf(':');
  return `${digest.slice(0, colon)}/${digest.slice(colon + 1, colon + 3)}`;
}

/** Walks the store once and counts it (`pullmirror stats`); a serving process uses LiveStoreFigures. */
export async function computeStoreFigures(store: CountedStore): Promise<StoreFigures> {
  return (await new StoreWalk(store).run())!;
}

/** Every file and directory below `dir`, by relative path (the temporary area's few files). */
async function listTree(dir: string): Promise<string[]> {
  try {
    return await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
}

async function fileSizeAt(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

export interface LiveStoreFiguresOptions {
  /** A walk at least this often (fleet peers and `gc` beside the mirror change the store too). */
  maxAgeMs?: number;
  /** After a change to repositories or tags, the next walk comes at most this soon after the last. */
  minAgeMs?: number;
}

/**
 * The figures of a serving store, answered at once, never after a walk: one walk in the
 * background at start, blobs and bytes kept current from then on as this process commits and
 * deletes blobs (blobAdded, blobRemoved) and adds repositories, tags and manifests, and a walk
 * again every `maxAgeMs` (10 min) for what others changed (fleet peers, `gc` beside the mirror),
 * sooner (at most every `minAgeMs`, 1 min) after an eviction pass (changed()). One walk at a time.
 */
export class LiveStoreFigures {
  private readonly store: CountedStore;
  private readonly maxAgeMs: number;
  private readonly minAgeMs: number;
  private figures = emptyFigures();
  private walk?: StoreWalk;
  /** performance.now() when the last walk started (a monotonic clock: only intervals are taken from it). */
  private lastWalkStarted = -Infinity;
  private timer?: NodeJS.Timeout;
  private dirty = false;
  private stopped = false;

  constructor(store: CountedStore, options: LiveStoreFiguresOptions = {}) {
    this.store = store;
    this.maxAgeMs = options.maxAgeMs ?? 600_000;
    this.minAgeMs = options.minAgeMs ?? 60_000;
  }

  /** Starts the first walk (in the background) and the schedule of later ones. */
  start(): void {
    this.stopped = false;
    void this.walkNow();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.walk?.cancel();
  }

  /** The current figures: the last walk's, with this process's blob changes since. */
  current(): StoreFigures {
    // While the first walk runs, what it counted so far (partial, and marked so).
    return this.figures.complete || !this.walk ? { ...this.figures } : { ...this.walk.figures, complete: false };
  }

  /** A blob this process committed that was not stored before. */
  blobAdded(digest: string, size: number): void {
    this.figures.blobs++;
    this.figures.bytes += size;
    this.walk?.apply(digest, 1, size);
  }

  /** A blob this process deleted (eviction). */
  blobRemoved(digest: string, size: number): void {
    this.figures.blobs = Math.max(0, this.figures.blobs - 1);
    this.figures.bytes = Math.max(0, this.figures.bytes - size);
    this.walk?.apply(digest, -1, -size);
  }

  /**
   * A repository, tag or manifest this process added (a miss). A change made while a walk counts
   * repositories may be missed or counted twice by that walk; the next walk corrects it.
   */
  repositoryAdded(key: string): void {
    this.count(key, 'repositories');
  }

  tagAdded(key: string): void {
    this.count(key, 'tags');
  }

  manifestAdded(size: number): void {
    for (const figures of this.touched()) {
      figures.manifests++;
      figures.manifestBytes += size;
    }
  }

  private count(key: string, what: 'repositories' | 'tags'): void {
    const registry = splitRepositoryKey(key).namespace ?? '';
    for (const figures of this.touched()) {
      figures[what]++;
      const counts = (figures.registries[registry] ??= { repositories: 0, tags: 0 });
      counts[what]++;
    }
  }

  /** The figures a repository change goes to: the current ones, and a walk's once its repository phase is done. */
  private touched(): StoreFigures[] {
    return this.walk?.repositoriesCounted ? [this.figures, this.walk.figures] : [this.figures];
  }

  /** Others may have changed repositories (an eviction pass removed tags and manifests): walk again soon. */
  changed(): void {
    if (this.dirty) return;
    this.dirty = true;
    if (!this.walk) this.schedule(Math.max(0, this.lastWalkStarted + this.minAgeMs - performance.now()));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.walkNow(), delayMs);
    this.timer.unref();
  }

  private async walkNow(): Promise<void> {
    if (this.walk || this.stopped) return;
    this.dirty = false;
    this.lastWalkStarted = performance.now();
    const walk = (this.walk = new StoreWalk(this.store));
    try {
      const figures = await walk.run();
      if (figures) this.figures = figures;
    } catch {
      // A store that cannot be read keeps its last figures; the storage check reports the fault.
    } finally {
      this.walk = undefined;
      this.schedule(this.dirty ? this.minAgeMs : this.maxAgeMs);
    }
  }
}
