import { randomBytes } from 'node:crypto';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import type { StorageDriver } from './driver/storage-driver.ts';
import { StoreKeys } from './paths.ts';

/*
 * Instances that share a store share its id (`_store-id`) and so their Redis keys: that is how
 * a fleet on one volume coordinates its downloads. A cloned volume (a snapshot restored for a
 * second replica, `cp -a`, a VM image) carries the id along, and instances on two disks would
 * then wait for each other's files that are not there. The id alone cannot tell: a clone is
 * bit-identical, and device or inode numbers differ between hosts that do share a store (NFS).
 *
 * So the store is asked directly. Each instance writes a probe file with a random name into
 * the store and swaps that name into one Redis key (under the store id's prefix), receiving the
 * name the last instance wrote. The file of that name must be in our store if we share it: it
 * was written before its name reached Redis. When it is missing, another instance using this
 * id writes to another disk: ours is a copy. Instances renew their probe every PROBE_INTERVAL_MS,
 * so a probe written before the copy is soon replaced by one that only the original holds.
 *
 * GETSET hands each name to exactly one instance, which removes the file once it has looked:
 * a store keeps one probe file, whatever the number of instances.
 */

const PROBE_KEY = 'store-probe';
/** How often a running instance renews its probe; a copy made before that is told at its start. */
export const PROBE_INTERVAL_MS = 15_000;
/** What a probe's name looks like; anything else read from Redis is never used as a file name. */
const PROBE_NAME = /^[0-9a-f]{32}$/;

export type ProbeResult =
  | { kind: 'shared' }
  /** Nobody probed this store id before (a new store, a flushed Redis). */
  | { kind: 'first' }
  /** The last probe under this id is not in our store: ours is a copy of the store others use. */
  | { kind: 'copy' }
  /** Redis or the store could not be asked: nothing known. */
  | { kind: 'unknown'; reason: string };

export class StoreProbe {
  private readonly driver: StorageDriver;
  private readonly redis: RedisConnection;
  private readonly logger: Logger;
  private timer?: NodeJS.Timeout;
  private reported = false;

  constructor(options: { driver: StorageDriver; redis: RedisConnection; logger: Logger }) {
    this.driver = options.driver;
    this.redis = options.redis;
    this.logger = options.logger;
  }

  /** Writes a new probe, swaps it in, and looks for the one it replaced. */
  async probe(): Promise<ProbeResult> {
    if (!this.redis.available) return { kind: 'unknown', reason: 'redis unavailable' };
    const name = randomBytes(16).toString('hex');
    const file = StoreKeys.storeProbe(name);
    try {
      await this.driver.putContent(file, '');
    } catch (error) {
      return { kind: 'unknown', reason: `cannot write ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
    }
    let previous: string | null;
    try {
      previous = await this.redis.client.getset(PROBE_KEY, name);
    } catch (error) {
      this.redis.failed(error as Error);
      await this.driver.delete(file).catch(() => {});
      return { kind: 'unknown', reason: `redis: ${(error as Error).message}` };
    }
    if (previous === null) return { kind: 'first' };
    if (!PROBE_NAME.test(previous)) {
      this.logger.warn('store probe: ignoring a malformed probe name read from redis', { key: PROBE_KEY });
      return { kind: 'first' };
    }
    const previousFile = StoreKeys.storeProbe(previous);
    const found = await this.driver.stat(previousFile).then(
      (info) => info !== undefined,
      // The store cannot say (EACCES, EIO, a bucket unreachable): no verdict from that.
      () => undefined,
    );
    if (found === undefined) return { kind: 'unknown', reason: `cannot look for ${previousFile}` };
    if (found) {
      await this.driver.delete(previousFile).catch(() => {});
      return { kind: 'shared' };
    }
    // Put the other store's probe back, so its instances do not take ours for a copy in turn.
    await this.redis.client.eval(RESTORE, 1, PROBE_KEY, name, previous).catch(() => {});
    await this.driver.delete(file).catch(() => {});
    return { kind: 'copy' };
  }

  /**
   * Renews the probe every PROBE_INTERVAL_MS while the instance runs. A copy found then (a
   * clone started within one interval of being made) is reported once through `onCopy`.
   */
  start(onCopy: () => void): void {
    this.timer = setTimeout(() => void this.renew(onCopy), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  private async renew(onCopy: () => void): Promise<void> {
    const result = await this.probe().catch((error: Error): ProbeResult => ({ kind: 'unknown', reason: error.message }));
    if (result.kind === 'copy' && !this.reported) {
      this.reported = true;
      onCopy();
    }
    // Stopped meanwhile: no next renewal.
    if (this.timer) this.start(onCopy);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** SET key previous, only if it still holds our probe (another instance may have swapped since). */
const RESTORE = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) end return 0";
