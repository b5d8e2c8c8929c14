import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorePaths } from './paths.ts';

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
  /** When the walk finished (ms since the epoch). */
  computedAt: number;
}

/**
 * Walks the store once and counts it. It reads directory entries and stats files, never
 * their content; on a big store that is seconds, so serving processes use StoreStatsCache.
 */
export async function computeStoreFigures(paths: StorePaths): Promise<StoreFigures> {
  const figures: StoreFigures = { blobs: 0, bytes: 0, manifests: 0, manifestBytes: 0, repositories: 0, tags: 0, registries: {}, tempFiles: 0, tempBytes: 0, computedAt: 0 };
  const sizes = new Map<string, number>();
  for (const algorithm of await list(paths.blobsDir())) {
    for (const prefix of await list(join(paths.blobsDir(), algorithm))) {
      const dir = join(paths.blobsDir(), algorithm, prefix);
      for (const hex of await list(dir)) {
        const size = await fileSize(join(dir, hex));
        if (size === undefined) continue;
        figures.blobs++;
        figures.bytes += size;
        sizes.set(`${algorithm}:${hex}`, size);
      }
    }
  }
  const linked = new Set<string>();
  for (const { dir, keyPrefix } of await paths.repositoryRoots()) {
    const registry = { repositories: 0, tags: 0 };
    figures.registries[keyPrefix.replace(/\/$/, '')] = registry;
    await walkRepositories(dir, async (repoDir) => {
      const tags = (await list(join(repoDir, '_tags'))).length;
      figures.repositories++;
      figures.tags += tags;
      registry.repositories++;
      registry.tags += tags;
      for (const algorithm of await list(join(repoDir, '_manifests'))) {
        for (const hex of await list(join(repoDir, '_manifests', algorithm))) linked.add(`${algorithm}:${hex}`);
      }
    });
  }
  for (const digest of linked) {
    const size = sizes.get(digest);
    if (size === undefined) continue;
    figures.manifests++;
    figures.manifestBytes += size;
  }
  for (const entry of await list(paths.tmpDir(), true)) {
    const size = await fileSize(join(paths.tmpDir(), entry));
    if (size === undefined) continue;
    figures.tempFiles++;
    figures.tempBytes += size;
  }
  figures.computedAt = Date.now();
  return figures;
}

/** Calls `visit` for every repository directory (one holding _manifests or _tags). */
async function walkRepositories(dir: string, visit: (repoDir: string) => Promise<void>, depth = 0): Promise<void> {
  const entries = await list(dir);
  if (entries.includes('_manifests') || entries.includes('_tags')) await visit(dir);
  if (depth > 16) return;
  for (const entry of entries) {
    if (entry.startsWith('_')) continue;
    await walkRepositories(join(dir, entry), visit, depth + 1);
  }
}

async function list(dir: string, recursive = false): Promise<string[]> {
  try {
    return await readdir(dir, { recursive });
  } catch {
    return [];
  }
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The figures of a serving store, recomputed at most every `maxAgeMs`, sooner (but at most
 * every `minAgeMs`) once something was added; one walk at a time, whatever the number of callers.
 */
export class StoreStatsCache {
  private readonly paths: StorePaths;
  private readonly maxAgeMs: number;
  private readonly minAgeMs: number;
  private figures?: StoreFigures;
  private walking?: Promise<StoreFigures>;
  private dirty = false;

  constructor(paths: StorePaths, options: { maxAgeMs?: number; minAgeMs?: number } = {}) {
    this.paths = paths;
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.minAgeMs = options.minAgeMs ?? 2_000;
  }

  /** Marks the figures out of date (content was just added). Costs nothing per request. */
  changed(): void {
    this.dirty = true;
  }

  async get(): Promise<StoreFigures> {
    const current = this.figures;
    if (current) {
      const age = Date.now() - current.computedAt;
      if (age < this.minAgeMs || (age < this.maxAgeMs && !this.dirty)) return current;
    }
    this.walking ??= (async () => {
      this.dirty = false;
      try {
        this.figures = await computeStoreFigures(this.paths);
        return this.figures;
      } finally {
        this.walking = undefined;
      }
    })();
    return this.walking;
  }
}
