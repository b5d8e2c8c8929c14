import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { mapLimited } from '../util/map-limited.ts';
import { sweep, sweepSettings, type SweepResult } from '../eviction/sweeper.ts';
import type { KeepRules } from '../eviction/keep.ts';
import type { Logger } from '../logging/logger.ts';
import type { StorePaths } from '../storage/paths.ts';
import type { RepositoryIndex } from './repository-index.ts';
import { listDir } from '../storage/repository-walk.ts';

/** How long one preview answers: it walks the whole store, so it is never recomputed per refresh. */
const FRESH_MS = 30_000;
/** Items listed per kind; the counts are always complete. */
const MAX_ITEMS = 500;

export interface PinnedItem {
  repository: string;
  tag?: string;
  digest?: string;
  pattern: string;
}

export interface EvictionPreview {
  computedAt: number;
  /** Why no pass will carry this out, when none will (read-only maintenance). */
  note?: string;
  durationMs: number;
  counts: { tags: number; manifests: number; blobs: number };
  tags: { repository: string; tag: string; reason: string }[];
  manifests: { repository: string; digest: string; reason: string; lastAccess: number }[];
  blobs: { digest: string; size: number }[];
  /** Whether the lists were cut at MAX_ITEMS. */
  truncated: boolean;
  bytesToFree: number;
  sizeBefore: number;
  sizeAfter: number;
  capUnreached: boolean;
  /** What storage.eviction.keep holds (the plan's counts) and, listed, which tags and manifests. */
  pinnedCounts: { tags: number; manifests: number };
  pinned: PinnedItem[];
  graceHeld: SweepResult['graceHeld'];
  graceMs: number;
}

/**
 * What a pass would remove now: the same sweep as `pullmirror gc --dry-run` (same planner, same
 * settings), asked for explicitly only. One computation at a time, whatever the number of
 * callers, and its answer reused for FRESH_MS.
 */
export class EvictionPreviewer {
  private readonly config: Config;
  private readonly paths: StorePaths;
  private readonly logger: Logger;
  private readonly index: RepositoryIndex;
  private last?: EvictionPreview;
  private running?: Promise<EvictionPreview>;

  constructor(options: { config: Config; paths: StorePaths; logger: Logger; index: RepositoryIndex }) {
    this.config = options.config;
    this.paths = options.paths;
    this.logger = options.logger;
    this.index = options.index;
  }

  get(): Promise<EvictionPreview> {
    if (this.last && Date.now() - this.last.computedAt < FRESH_MS) return Promise.resolve(this.last);
    this.running ??= this.compute().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async compute(): Promise<EvictionPreview> {
    const settings = sweepSettings(this.config);
    const result = await sweep({ ...settings, paths: this.paths, logger: this.logger, dryRun: true, sharesLoop: true });
    const truncated = result.tags.length > MAX_ITEMS || result.links.length > MAX_ITEMS || result.blobs.length > MAX_ITEMS;
    this.last = {
      computedAt: Date.now(),
      ...(this.config.storage.maintenance.readonly.enabled ? { note: 'storage.maintenance.readonly is enabled: no pass removes anything while it is' } : {}),
      durationMs: result.durationMs,
      counts: { tags: result.tags.length, manifests: result.links.length, blobs: result.blobs.length },
      tags: result.tags.slice(0, MAX_ITEMS).map((tag) => ({ repository: tag.repository, tag: tag.tag, reason: tag.reason })),
      manifests: result.links.slice(0, MAX_ITEMS).map((link) => ({ repository: link.repository, digest: link.digest, reason: link.reason, lastAccess: link.lastAccess })),
      blobs: result.blobs.slice(0, MAX_ITEMS).map((blob) => ({ digest: blob.digest, size: blob.size })),
      truncated,
      bytesToFree: result.freed,
      sizeBefore: result.sizeBefore,
      sizeAfter: result.sizeAfter,
      capUnreached: result.capUnreached,
      pinnedCounts: result.pinned,
      pinned: settings.keep && !settings.keep.empty ? await pinnedItems(this.paths, await this.index.all(), settings.keep) : [],
      graceHeld: result.graceHeld,
      graceMs: result.graceMs,
    };
    return this.last;
  }
}

/**
 * The tags and manifests storage.eviction.keep names directly (a kept tag also holds its
 * manifest and an index its children, which the plan's counts include). Reads `_tags` names of
 * every repository, and `_manifests` only where a whole-repository or digest pattern could apply.
 */
async function pinnedItems(paths: StorePaths, keys: string[], keep: KeepRules): Promise<PinnedItem[]> {
  const items: PinnedItem[] = [];
  const manifestPatterns = keep.patterns.some((pattern) => !pattern.tag);
  await mapLimited(keys, async (key) => {
    if (items.length >= MAX_ITEMS) return;
    const dir = paths.repository(key);
    for (const tag of await listDir(join(dir, '_tags'))) {
      const pattern = keep.keepsTag(key, tag);
      if (!pattern) continue;
      const digest = (await readFile(join(dir, '_tags', tag), 'utf8').catch(() => '')).trim();
      items.push({ repository: key, tag, ...(digest ? { digest } : {}), pattern: pattern.source });
    }
    if (!manifestPatterns) return;
    for (const algorithm of await listDir(join(dir, '_manifests'))) {
      for (const hex of await listDir(join(dir, '_manifests', algorithm))) {
        const pattern = keep.keepsManifest(key, `${algorithm}:${hex}`);
        if (pattern) items.push({ repository: key, digest: `${algorithm}:${hex}`, pattern: pattern.source });
      }
    }
  });
  return items
    .sort((a, b) => (a.repository + (a.tag ?? '') + (a.digest ?? '') < b.repository + (b.tag ?? '') + (b.digest ?? '') ? -1 : 1))
    .slice(0, MAX_ITEMS);
}
