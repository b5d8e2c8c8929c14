import type { Config } from '../config/schema.ts';
import type { KeptItem } from '../eviction/plan.ts';
import { sweep, sweepSettings, type SweepResult } from '../eviction/sweeper.ts';
import type { Logger } from '../logging/logger.ts';
import type { StoreReader } from '../eviction/inventory.ts';

/** How long one preview answers: it walks the whole store, so it is never recomputed per refresh. */
const FRESH_MS = 30_000;
/** Items listed per kind; the counts are always complete. */
const MAX_ITEMS = 500;

export type PinnedItem = KeptItem;

const nameOf = (item: PinnedItem) => `${item.repository}:${item.tag ?? ''}@${item.digest ?? ''}`;
const byName = (a: PinnedItem, b: PinnedItem) => (nameOf(a) < nameOf(b) ? -1 : 1);

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
  private readonly store: StoreReader;
  private readonly logger: Logger;
  private readonly passDone: () => Promise<void> | undefined;
  private last?: EvictionPreview;
  /** performance.now() when `last` was computed: its freshness runs on a monotonic clock (computedAt is for people). */
  private lastComputed = -Infinity;
  private running?: Promise<EvictionPreview>;

  /** `passDone`: resolves once a scheduled pass in flight is over (a preview never walks beside one). */
  constructor(options: { config: Config; store: StoreReader; logger: Logger; passDone?: () => Promise<void> | undefined }) {
    this.config = options.config;
    this.store = options.store;
    this.logger = options.logger;
    this.passDone = options.passDone ?? (() => undefined);
  }

  get(): Promise<EvictionPreview> {
    if (this.last && performance.now() - this.lastComputed < FRESH_MS) return Promise.resolve(this.last);
    this.running ??= this.compute().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async compute(): Promise<EvictionPreview> {
    await this.passDone();
    const settings = sweepSettings(this.config);
    const result = await sweep({ ...settings, store: this.store, logger: this.logger, dryRun: true, sharesLoop: true });
    const truncated = result.tags.length > MAX_ITEMS || result.links.length > MAX_ITEMS || result.blobs.length > MAX_ITEMS;
    this.lastComputed = performance.now();
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
      pinnedCounts: { tags: result.pinned.tags, manifests: result.pinned.manifests },
      // What the patterns name directly, as the plan found them (a kept tag also holds its manifest, an index its children: the counts include them).
      pinned: [...result.pinned.items].sort(byName).slice(0, MAX_ITEMS),
      graceHeld: result.graceHeld,
      graceMs: result.graceMs,
    };
    return this.last;
  }
}
