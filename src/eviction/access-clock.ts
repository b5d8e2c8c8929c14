/*
 * The access clock: when each stored item was last used, kept apart from the objects.
 *
 * Before the storage driver layer, last use was the file's mtime (utimes on every debounced
 * access). Object storage has no settable mtime, and a fleet on one bucket needs one clock all
 * instances write and every eviction pass reads; so last use is a record here, never a file
 * time. Two implementations pass one suite (spec/unit/access-clock-suite.ts):
 * - RedisAccessClock (redis-access-clock.ts): one hash per store in the fleet's Redis;
 * - LocalAccessClock (local-access-clock.ts): an append-only journal on a local disk, compacted
 *   in the background, for an instance without Redis.
 *
 * An item is named by what it stands for, not by where its bytes are (accessItem below), so the
 * clock does not change with the layout or the driver.
 *
 * A record only ever adds to what the object itself says: an item's last use is the later of
 * its record and its object's write time (`modifiedMs`, which a fill, a tag update or a link
 * write sets). That keeps an existing store's ages (an item with no record yet is as old as
 * its object, as with the mtimes before), and a record left behind by an item deleted and
 * stored again never makes the new object look older than it is.
 */

/** What the clock cannot do now (Redis unreachable, the journal unreadable): no pass runs without it. */
export class AccessClockUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AccessClockUnavailable';
  }
}

export interface AccessClock {
  /** 'redis' | 'local': for logs and the status page. */
  readonly kind: string;
  /**
   * Records a use of `item` at `atMs`. Returns at once: the record is written with the next
   * batch (at most FLUSH_MS later); a later use of the same item in the batch replaces it.
   */
  touch(item: string, atMs: number): void;
  /**
   * The last recorded use of each item (ms since the epoch), in the order asked; undefined
   * where there is none. At most LOOKUP_BATCH items per call (use lastUsesOf for more).
   * Throws AccessClockUnavailable when the records cannot be read.
   */
  lastUses(items: readonly string[]): Promise<(number | undefined)[]>;
  /** Drops the records of items that were deleted (an eviction pass). */
  forget(items: readonly string[]): Promise<void>;
  /** Writes the pending touches now. */
  flush(): Promise<void>;
  /** Writes what is pending and stops the timers. */
  close(): Promise<void>;
}

/** How often pending touches are written: what a `gc` in another process, or another instance, may miss at most. */
export const FLUSH_MS = 100;
/** Items per lookup (one HMGET) and per written batch. */
export const LOOKUP_BATCH = 1000;
/**
 * Touches kept while they cannot be written (Redis down): distinct items, newest use each.
 * Beyond it, further items are not recorded until the clock can be written again (logged once).
 */
export const MAX_PENDING = 100_000;

/** The clock's name for a stored item: a blob by digest, a repository's manifest link, a tag. */
export const accessItem = {
  blob: (digest: string) => `b:${digest}`,
  manifest: (repository: string, digest: string) => `m:${repository}@${digest}`,
  tag: (repository: string, tag: string) => `t:${repository}:${tag}`,
};

/**
 * Looks up `count` items in batches of LOOKUP_BATCH: `itemAt(i)` names the i-th, `found(i, ms)`
 * is told of each that has a record. The caller keeps its own arrays (150 000 blobs make no
 * array of names); `pause` lets a serving mirror's requests run between batches.
 */
export async function lastUsesOf(
  clock: AccessClock,
  count: number,
  itemAt: (index: number) => string,
  found: (index: number, lastUseMs: number) => void,
  pause?: () => Promise<void>,
): Promise<void> {
  for (let start = 0; start < count; start += LOOKUP_BATCH) {
    const end = Math.min(count, start + LOOKUP_BATCH);
    const items: string[] = [];
    for (let i = start; i < end; i++) items.push(itemAt(i));
    const uses = await clock.lastUses(items);
    for (let i = start; i < end; i++) {
      const use = uses[i - start];
      if (use !== undefined) found(i, use);
    }
    await pause?.();
  }
}

/**
 * The touches not written yet: one entry per item, its latest use. Shared by both clocks.
 * Bounded (MAX_PENDING); `overflowed` tells the owner to log once.
 */
export class PendingTouches {
  private entries = new Map<string, number>();
  overflowed = false;

  get size(): number {
    return this.entries.size;
  }

  add(item: string, atMs: number): void {
    const known = this.entries.get(item);
    if (known !== undefined) {
      if (atMs > known) this.entries.set(item, atMs);
      return;
    }
    if (this.entries.size >= MAX_PENDING) {
      this.overflowed = true;
      return;
    }
    this.entries.set(item, atMs);
  }

  get(item: string): number | undefined {
    return this.entries.get(item);
  }

  delete(item: string): void {
    this.entries.delete(item);
  }

  /** Takes everything pending (the caller writes it, or gives it back with restore). */
  take(): Map<string, number> {
    const taken = this.entries;
    this.entries = new Map();
    return taken;
  }

  /** Puts back what could not be written; newer touches made meanwhile win. */
  restore(taken: Map<string, number>): void {
    for (const [item, atMs] of taken) this.add(item, atMs);
  }
}

/** A recorded time as read back (Redis, a journal line): a positive integer of ms, else nothing. */
export function parseTime(text: string | null | undefined): number | undefined {
  if (!text || !/^[0-9]{1,15}$/.test(text)) return undefined;
  const ms = Number(text);
  return ms > 0 ? ms : undefined;
}
