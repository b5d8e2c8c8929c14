import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { parseDigest } from '../registry/digest.ts';
import type { StorePaths } from '../storage/paths.ts';
import { storeKey } from '../storage/repository-walk.ts';
import { accessItem, type AccessClock } from './access-clock.ts';

/** The longest an access may go unrecorded: the resolution of "last access". */
const MAX_DEBOUNCE_MS = 60 * 60 * 1000;

/** A stored item whose use is recorded. */
export type UsedItem = { kind: 'blob'; digest: string } | { kind: 'manifest'; repository: string; digest: string } | { kind: 'tag'; repository: string; tag: string };

export interface AccessRecorderOptions {
  clock: AccessClock;
  /**
   * Whether the store holds the item now (driver.stat of its key). Asked once per debounce
   * interval, off the request path: a `gc` in another process may have deleted what this one
   * still knows, and is then told through `gone`.
   */
  present: (item: UsedItem) => Promise<boolean>;
  /** proxy.ttl in ms: the debounce interval is a small fraction of it. */
  ttlMs: number;
  logger: Logger;
  now?: () => number;
  /** Told when a used item is not stored: in-memory knowledge of it is stale. */
  gone?: { manifest(name: string, digest: string): void; blob(digest: string): void };
}

/**
 * Records when stored content was last used, on the access clock (access-clock.ts): a
 * repository's manifest link, a tag, a blob. Before the driver layer this was the file's mtime.
 *
 * Touches are fire-and-forget (never awaited by a request) and debounced per item in an
 * in-process LRU: a hot item costs one existence check and one record per debounce interval,
 * not one per request, and the clock writes its records in batches.
 */
export class AccessRecorder {
  private readonly clock: AccessClock;
  private readonly present: AccessRecorderOptions['present'];
  private readonly now: () => number;
  private readonly debounceMs: number;
  private readonly logger: Logger;
  /** clock item → when this process last recorded a use of it. */
  private readonly touched = new LRUCache<string, number>({ max: 20_000 });
  private readonly gone: AccessRecorderOptions['gone'];
  private warned = false;

  constructor(options: AccessRecorderOptions) {
    this.clock = options.clock;
    this.present = options.present;
    this.gone = options.gone;
    this.now = options.now ?? Date.now;
    this.logger = options.logger;
    // A small fraction of the TTL, so that debouncing never makes a used item look expired.
    this.debounceMs = options.ttlMs > 0 ? Math.min(MAX_DEBOUNCE_MS, Math.floor(options.ttlMs / 24)) : MAX_DEBOUNCE_MS;
  }

  // Called on every warm request: the debounce check comes first, the rest only when the use is recorded.
  manifest(name: string, digest: string): void {
    this.touch(accessItem.manifest(name, digest), () => ({ kind: 'manifest', repository: name, digest }), () => this.gone?.manifest(name, digest));
  }

  tag(name: string, tag: string): void {
    this.touch(accessItem.tag(name, tag), () => ({ kind: 'tag', repository: name, tag }));
  }

  blob(digest: string): void {
    this.touch(accessItem.blob(digest), () => ({ kind: 'blob', digest }), () => this.gone?.blob(digest));
  }

  private touch(item: string, describe: () => UsedItem, whenGone?: () => void): void {
    const now = this.now();
    const last = this.touched.get(item);
    if (last !== undefined && now - last < this.debounceMs && now >= last) return;
    this.touched.set(item, now);
    this.present(describe()).then(
      (stored) => {
        if (stored) {
          this.clock.touch(item, now);
          return;
        }
        // Not stored (yet, or passed through uncached, or evicted by a `gc` in another process
        // while this one still knew it): nothing to record; forget it so it is stored again.
        this.touched.delete(item);
        whenGone?.();
      },
      (error: Error) => {
        // The store cannot tell now: it was used, so it is recorded (a record is never harmful).
        this.clock.touch(item, now);
        if (this.warned) return;
        this.warned = true;
        this.logger.warn('cannot record access times', { error: error.message });
      },
    );
  }
}

/** The driver key of a used item (where driver.stat asks whether it is stored). */
export function usedItemKey(paths: StorePaths, item: UsedItem): string {
  if (item.kind === 'blob') return storeKey(paths, paths.blob(parseDigest(item.digest)));
  if (item.kind === 'manifest') return storeKey(paths, paths.manifestLink(item.repository, parseDigest(item.digest)));
  return storeKey(paths, paths.tag(item.repository, item.tag));
}
