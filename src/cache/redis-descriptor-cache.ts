import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import type { DescriptorCache } from './descriptor-cache.ts';

/** How long a descriptor lookup may take before the disk is asked instead. */
const LOOKUP_DEADLINE_MS = 250;

/**
 * Descriptors in Redis, shared by every instance on one store: one hash per blob,
 * `pullmirror:blob:<digest>` → {size, mediatype} (the shape of distribution's `blobs::<digest>`).
 *
 * Never a point of failure: while Redis is unreachable every call answers "not cached" at once
 * and the connection logs the outage once (RedisConnection); the store is asked instead.
 */
export class RedisDescriptorCache implements DescriptorCache {
  private readonly redis: RedisConnection;

  constructor(redis: RedisConnection) {
    this.redis = redis;
  }

  async get(digest: string): Promise<BlobDescriptor | undefined> {
    if (!this.redis.available) return undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      // A lookup slower than the disk it spares is worse than none: give up on it, and let the
      // connection's circuit breaker skip Redis until it answers again.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis did not answer a descriptor lookup within ${LOOKUP_DEADLINE_MS} ms`)), LOOKUP_DEADLINE_MS);
      });
      const fields = await Promise.race([this.redis.client.hgetall(key(digest)), late]);
      if (fields.size === undefined || !/^\d+$/.test(fields.size)) return undefined;
      return { digest, size: Number(fields.size), ...(fields.mediatype ? { mediaType: fields.mediatype } : {}) };
    } catch (error) {
      this.redis.failed(error as Error);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  async set(descriptor: BlobDescriptor): Promise<void> {
    if (!this.redis.available) return;
    try {
      const fields: Record<string, string> = { size: String(descriptor.size) };
      if (descriptor.mediaType) fields.mediatype = descriptor.mediaType;
      await this.redis.client
        .multi()
        .del(key(descriptor.digest))
        .hset(key(descriptor.digest), fields)
        .exec();
    } catch (error) {
      this.redis.failed(error as Error);
    }
  }

  async delete(digest: string): Promise<void> {
    if (!this.redis.available) return;
    try {
      await this.redis.client.del(key(digest));
    } catch (error) {
      this.redis.failed(error as Error);
    }
  }

  /** The connection is shared (fleet coordinator): its owner closes it. */
  async close(): Promise<void> {}
}

function key(digest: string): string {
  return `blob:${digest}`;
}
