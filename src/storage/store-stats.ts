import { readdirSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { splitRepositoryKey, type StorePaths } from './paths.ts';
import { holdsImages, listDir, walkRepositories } from './repository-walk.ts';

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

/**
 * One walk of the store. Blobs are counted one prefix directory (about 1/256 of the store) at a
 * time, synchronously (readdir and stat of some hundred files: a few ms), yielding between
 * directories. That makes the walk exact beside live changes: a blob added or removed in a
 * directory already counted is applied to this walk too (`apply`), one in a directory not yet
 * counted is seen by the walk itself, and nothing can happen inside a directory's count.
 */
class StoreWalk {
  readonly figures = emptyFigures();
  private readonly counted = new Set<string>();
  private readonly paths: StorePaths;
  private cancelled = false;

  constructor(paths: StorePaths) {
    this.paths = paths;
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
    const { figures, paths } = this;
    const linked = new Set<string>();
    for (const { dir, keyPrefix } of await paths.repositoryRoots()) {
      const registry = { repositories: 0, tags: 0 };
      figures.registries[keyPrefix.replace(/\/$/, '')] = registry;
      await walkRepositories(dir, keyPrefix, async (repoDir, _key, entries) => {
        if (!holdsImages(entries)) return;
        const tags = (await listDir(join(repoDir, '_tags'))).length;
        figures.repositories++;
        figures.tags += tags;
        registry.repositories++;
        registry.tags += tags;
        for (const algorithm of await listDir(join(repoDir, '_manifests'))) {
          for (const hex of await listDir(join(repoDir, '_manifests', algorithm))) linked.add(`${algorithm}:${hex}`);
        }
      });
      if (this.cancelled) return undefined;
    }
    this.repositoriesCounted = true;
    for (const algorithm of await listDir(paths.blobsDir())) {
      for (const prefix of await listDir(join(paths.blobsDir(), algorithm))) {
        if (this.cancelled) return undefined;
        const dir = join(paths.blobsDir(), algorithm, prefix);
        for (const hex of listSync(dir)) {
          const info = statSync(join(dir, hex), { throwIfNoEntry: false });
          if (!info?.isFile()) continue;
          figures.blobs++;
          figures.bytes += info.size;
        }
        this.counted.add(`${algorithm}/${prefix}`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    // Manifest bytes: a stat of each linked manifest (thousands), not a map of every blob's size.
    for (const digest of linked) {
      const size = await fileSize(this.paths.blobsDir(), digest);
      if (size === undefined) continue;
      figures.manifests++;
      figures.manifestBytes += size;
    }
    for (const entry of await listTree(paths.tmpDir())) {
      const size = await fileSizeAt(join(paths.tmpDir(), entry));
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
export async function computeStoreFigures(paths: StorePaths): Promise<StoreFigures> {
  return (await new StoreWalk(paths).run())!;
}

/** Every file and directory below `dir`, by relative path (the temporary area's few files). */
async function listTree(dir: string): Promise<string[]> {
  try {
    return await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
}

function listSync(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function fileSize(blobsDir: string, digest: string): Promise<number | undefined> {
  const [algorithm, hex] = digest.split(':');
  return fileSizeAt(join(blobsDir, algorithm, hex.slice(0, 2), hex));
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
  private readonly paths: StorePaths;
  private readonly maxAgeMs: number;
  private readonly minAgeMs: number;
  private figures = emptyFigures();
  private walk?: StoreWalk;
  /** performance.now() when the last walk started (a monotonic clock: only intervals are taken from it). */
  private lastWalkStarted = -Infinity;
  private timer?: NodeJS.Timeout;
  private dirty = false;
  private stopped = false;

  constructor(paths: StorePaths, options: LiveStoreFiguresOptions = {}) {
    this.paths = paths;
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
    const walk = (this.walk = new StoreWalk(this.paths));
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
