import type { Logger } from '../logging/logger.ts';
import type { RedisClient, RedisConnection } from '../redis/redis-connection.ts';

/** The channel of a store's download events: the holders' scripts publish on it. */
export function fillEventsChannel(redis: RedisConnection): string {
  return `${redis.prefix}fills`;
}

/**
 * The fleet's channel of blob download events, one per store (under the connection's prefix).
 * A holder publishes a digest on it in the very script that changes the download's claim
 * (started, committed, failed, abandoned: see redis-fill-coordinator.ts), so followers wake
 * once per state change instead of asking Redis on a clock.
 *
 * One subscriber connection per instance, opened at the first follow and shared by every
 * followed blob; a message names a digest and only wakes that digest's followers, who then
 * read the claim themselves (a message steers nothing else). Pub/sub is fire-and-forget: what
 * is published while this instance is not subscribed (a reconnection, a Sentinel failover) is
 * lost. So every confirmed (re)subscription wakes every follower, and followers still look on
 * a slow timer of their own: a lost message delays a follower, it never hangs one.
 */
export class FillEvents {
  readonly channel: string;
  private readonly redis: RedisConnection;
  private readonly logger: Logger;
  private readonly listeners = new Map<string, Set<() => void>>();
  private subscriber?: RedisClient;
  private closed = false;

  constructor(options: { redis: RedisConnection; logger: Logger }) {
    this.redis = options.redis;
    this.logger = options.logger;
    this.channel = fillEventsChannel(options.redis);
  }

  /** Calls `listener` at each event for `digest` (and at each resubscription); answers the way to stop. */
  watch(digest: string, listener: () => void): () => void {
    this.connect();
    let set = this.listeners.get(digest);
    if (!set) this.listeners.set(digest, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(digest) === set) this.listeners.delete(digest);
    };
  }

  private connect(): void {
    if (this.subscriber || this.closed) return;
    const subscriber = this.redis.subscriber();
    this.subscriber = subscriber;
    // 'ready' comes at the first connection and after every reconnection (to a new master too).
    subscriber.on('ready', () => void this.subscribe(subscriber));
    subscriber.on('message', (channel: string, digest: string) => {
      if (channel === this.channel) this.wake(this.listeners.get(digest));
    });
    if (subscriber.status === 'ready') void this.subscribe(subscriber);
  }

  private async subscribe(subscriber: RedisClient): Promise<void> {
    try {
      // Idempotent: ioredis may have resubscribed already.
      await subscriber.subscribe(this.channel);
    } catch (error) {
      // The connection dropped again: its next 'ready' subscribes.
      this.logger.debug('fill events: subscription failed', { error: (error as Error).message });
      return;
    }
    if (this.closed) return;
    this.logger.debug('fill events: subscribed', { channel: this.channel, following: this.listeners.size });
    // Whatever was published before this moment went unheard here: every follower looks again.
    for (const set of this.listeners.values()) this.wake(set);
  }

  private wake(set: Set<() => void> | undefined): void {
    for (const listener of set ?? []) listener();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (!subscriber) return;
    try {
      await subscriber.quit();
    } catch {
      subscriber.disconnect();
    }
  }
}
