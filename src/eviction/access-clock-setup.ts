import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { StorePaths } from '../storage/paths.ts';
import type { AccessClock } from './access-clock.ts';
import { LocalAccessClock } from './local-access-clock.ts';
import { localPassLock, RedisPassLock, type PassLock } from './pass-lock.ts';
import { RedisAccessClock } from './redis-access-clock.ts';

/** Whether the configuration names a Redis at all (the mirror connects to it, and so does `gc`). */
export function redisConfigured(config: Config): boolean {
  return Boolean(config.redis.url || config.redis.addr || config.redis.addrs?.length) || config.storage.cache.blobdescriptor === 'redis';
}

/** The journal's directory name, in the store's root or the spool (a name no instance's spool directory takes). */
const ACCESS_CLOCK_DIR = '_access-clock';

/**
 * Where the journal of the access clock lives without Redis, the same for the mirror and `gc`:
 * beside the store on the filesystem (StorePaths.accessClockDir); with a bucket, in the local
 * spool directory (storage.filesystem is not set then, and its default ./data would depend on
 * the working directory of each process).
 */
export function localAccessClockDir(config: Config): string {
  const s3 = config.storage.s3;
  return s3 ? join(s3.spooldirectory, ACCESS_CLOCK_DIR) : new StorePaths(config.storage.filesystem.rootdirectory).accessClockDir();
}

/**
 * The access clock of a store: in Redis when one is configured (every instance of the fleet,
 * and `gc`, read and write the same records), else the journal on the local disk
 * (localAccessClockDir). `compacts`: false for `gc`, which only appends.
 */
export function openAccessClock(options: { redis?: RedisConnection; config: Config; logger: Logger; compacts?: boolean }): AccessClock {
  const logger = options.logger.child({ component: 'access-clock' });
  if (options.redis) return new RedisAccessClock({ redis: options.redis, logger });
  return new LocalAccessClock({ dir: localAccessClockDir(options.config), logger, compacts: options.compacts });
}

/** One eviction pass at a time: across the fleet through Redis when configured, else in this process. */
export function passLockFor(redis: RedisConnection | undefined, name: string): PassLock {
  return redis ? new RedisPassLock({ redis, name }) : localPassLock;
}
