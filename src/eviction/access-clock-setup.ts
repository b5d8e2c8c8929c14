import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { StorePaths } from '../storage/paths.ts';
import type { AccessClock } from './access-clock.ts';
import { adoptJournal, LocalAccessClock } from './local-access-clock.ts';
import { localPassLock, RedisPassLock, type PassLock } from './pass-lock.ts';
import { RedisAccessClock } from './redis-access-clock.ts';

/** Whether the configuration names a Redis at all (the mirror connects to it, and so does `gc`). */
export function redisConfigured(config: Config): boolean {
  return Boolean(config.redis.url || config.redis.addr || config.redis.addrs?.length) || config.storage.cache.blobdescriptor === 'redis';
}

/** The journal's directory name, in the store's root or the spool (a name no instance's spool directory takes). */
const ACCESS_CLOCK_DIR = '_access-clock';

/**
 * The store's id (storage/store-id.ts), which keeps the journal of a store on a bucket apart:
 * undefined when the store has none, a rejection when that cannot be told now (the bucket has
 * not answered), and the clock asks again at its next write or lookup.
 */
export type StoreIdSource = () => Promise<string | undefined>;

/**
 * Where the journal of the access clock lives without Redis, the same for the mirror and `gc`:
 * beside the store on the filesystem (StorePaths.accessClockDir: one per store, and a copy of
 * the store takes its journal with it); with a bucket, in the local spool directory
 * (storage.filesystem is not set then, and its default ./data would depend on the working
 * directory of each process), under the store's id: instances of different buckets on one
 * host share the spool (its default is in the OS's temp directory), not their journals.
 */
export function localAccessClockDir(config: Config, storeId: StoreIdSource): string | (() => Promise<string>) {
  const s3 = config.storage.s3;
  if (!s3) return new StorePaths(config.storage.filesystem.rootdirectory).accessClockDir();
  const shared = join(s3.spooldirectory, ACCESS_CLOCK_DIR);
  return async () => {
    const id = await storeId();
    // No id was ever made: only versions before this layout ran on the store, and kept the journal here.
    if (id === undefined) return shared;
    const own = join(shared, id);
    // Before the journal was kept per store, every store on this spool shared one: a store
    // starts from a copy of it. Another store's records only make an item look used later (kept
    // longer, until they are a TTL old), never evicted sooner; the shared file stays for the others.
    await adoptJournal(shared, own);
    return own;
  };
}

/**
 * The access clock of a store: in Redis when one is configured (every instance of the fleet,
 * and `gc`, read and write the same records), else the journal on the local disk
 * (localAccessClockDir; on a bucket under `storeId`). `compacts`: false for `gc`, which only appends.
 */
export function openAccessClock(options: { redis?: RedisConnection; config: Config; logger: Logger; compacts?: boolean; storeId: StoreIdSource }): AccessClock {
  const logger = options.logger.child({ component: 'access-clock' });
  if (options.redis) return new RedisAccessClock({ redis: options.redis, logger });
  return new LocalAccessClock({ dir: localAccessClockDir(options.config, options.storeId), logger, compacts: options.compacts });
}

/** One eviction pass at a time: across the fleet through Redis when configured, else in this process. */
export function passLockFor(redis: RedisConnection | undefined, name: string): PassLock {
  return redis ? new RedisPassLock({ redis, name }) : localPassLock;
}
