import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { AccessClockUnavailable, FLUSH_MS, LOOKUP_BATCH, parseTime, PendingTouches, type AccessClock } from './access-clock.ts';

/*
 * Keys (after the connection's `pullmirror:<store id>:` prefix, so each store has its own):
 *
 *   access    hash   item (accessItem) → last use, ms since the epoch, decimal
 *
 * One hash per store: 165 000 items (150 000 blobs, links, tags) are about 20 MB in Redis, and
 * a pass reads them with HMGET in batches. One key is one Cluster slot, which also lets one
 * script compare and set many fields.
 */
const KEY = 'access';

/** Sets each field to the later of its value and the one given: batches from several instances may arrive in any order. */
const TOUCH = `
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if not old or old < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1`;

/**
 * The fleet's access clock in Redis: every instance's touches, batched every FLUSH_MS, in one
 * hash per store; every instance's pass, and `gc`, read the same records.
 *
 * Redis is not a cache here: a pass that cannot read the records does not run
 * (AccessClockUnavailable), since without them every item would look as old as its object.
 * Touches while Redis is unreachable stay pending (up to MAX_PENDING items) and are written
 * once it answers; requests never wait on any of it. The connection logs the outage once.
 */
export class RedisAccessClock implements AccessClock {
  readonly kind = 'redis';
  private readonly redis: RedisConnection;
  private readonly logger: Logger;
  private readonly pending = new PendingTouches();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private warnedOverflow = false;

  constructor(options: { redis: RedisConnection; logger: Logger; flushMs?: number }) {
    this.redis = options.redis;
    this.logger = options.logger;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? FLUSH_MS);
    this.timer.unref();
  }

  touch(item: string, atMs: number): void {
    this.pending.add(item, atMs);
    if (this.pending.overflowed && !this.warnedOverflow) {
      this.warnedOverflow = true;
      this.logger.warn('access clock: too many uses waiting for redis; further ones are not recorded until it answers');
    }
  }

  async lastUses(items: readonly string[]): Promise<(number | undefined)[]> {
    if (items.length > LOOKUP_BATCH) throw new RangeError(`at most ${LOOKUP_BATCH} items per lookup`);
    if (items.length === 0) return [];
    if (!this.redis.available) throw new AccessClockUnavailable('the access clock cannot be read: redis is unreachable');
    let values: (string | null)[];
    try {
      values = await this.redis.client.hmget(KEY, ...items);
    } catch (error) {
      this.redis.failed(error as Error);
      throw new AccessClockUnavailable(`the access clock cannot be read: ${(error as Error).message}`, { cause: error });
    }
    // This instance's own touches not written yet count too.
    return items.map((item, i) => maxOf(parseTime(values[i]), this.pending.get(item)));
  }

  async forget(items: readonly string[]): Promise<void> {
    for (const item of items) this.pending.delete(item);
    if (!this.redis.available) return;
    try {
      for (let start = 0; start < items.length; start += LOOKUP_BATCH) await this.redis.client.hdel(KEY, ...items.slice(start, start + LOOKUP_BATCH));
    } catch (error) {
      // A record left behind is harmless (last use is never older than the object): logged by the connection.
      this.redis.failed(error as Error);
    }
  }

  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0 || !this.redis.available) return;
    const taken = this.pending.take();
    const entries = [...taken];
    try {
      for (let start = 0; start < entries.length; start += LOOKUP_BATCH) {
        const args: string[] = [];
        for (const [item, atMs] of entries.slice(start, start + LOOKUP_BATCH)) args.push(item, String(Math.floor(atMs)));
        await this.redis.client.eval(TOUCH, 1, KEY, ...args);
        for (const [item] of entries.slice(start, start + LOOKUP_BATCH)) taken.delete(item);
      }
      this.warnedOverflow = false;
      this.pending.overflowed = false;
    } catch (error) {
      this.redis.failed(error as Error);
      this.pending.restore(taken);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

function maxOf(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}
