import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import type { StorePaths } from '../storage/paths.ts';
import type { AccessClock } from './access-clock.ts';
import { LocalAccessClock } from './local-access-clock.ts';
import { localPassLock, RedisPassLock, type PassLock } from './pass-lock.ts';
import { RedisAccessClock } from './redis-access-clock.ts';

/** Whether the configuration names a Redis at all (the mirror connects to it, and so does `gc`). */
export function redisConfigured(config: Config): boolean {
  return Boolean(config.redis.url || config.redis.addr || config.redis.addrs?.length) || config.storage.cache.blobdescriptor === 'redis';
}

/**
 * The access clock of a store: in Redis when one is configured (every instance of the fleet,
 * and `gc`, read and write the same records), else the journal on the local disk beside the
 * store (StorePaths.accessClockDir). `compacts`: false for `gc`, which only appends.
 */
export function openAccessClock(options: { redis?: RedisConnection; paths: StorePaths; logger: Logger; compacts?: boolean }): AccessClock {
  const logger = options.logger.child({ component: 'access-clock' });
  if (options.redis) return new RedisAccessClock({ redis: options.redis, logger });
  return new LocalAccessClock({ dir: options.paths.accessClockDir(), logger, compacts: options.compacts });
}

/** One eviction pass at a time: across the fleet through Redis when configured, else in this process. */
export function passLockFor(redis: RedisConnection | undefined, name: string): PassLock {
  return redis ? new RedisPassLock({ redis, name }) : localPassLock;
}
