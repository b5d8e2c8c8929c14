import { parsePeerAddress, type PeerAddress } from '../config/addr.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { INSTANCE_ID } from '../storage/paths.ts';
import { liveRecord } from './heartbeat.ts';

/**
 * The only way this instance learns where another one is (redis.fleet.peers): from the live
 * heartbeat of the instance a lease names. Anyone who can write to Redis can write an address
 * there, so an address is dialed only when
 * - the instance's name is one an instance gives itself (INSTANCE_ID),
 * - its alive key exists and its record does not say it stopped (a dead instance's address may
 *   since belong to anything),
 * - the address parses as a peer address (host:port, no scheme, user or path, not 0.0.0.0).
 * Never this instance itself. A Redis that cannot be asked names no one.
 */
export class PeerDirectory {
  private readonly redis: RedisConnection;
  private readonly self: string;

  constructor(options: { redis: RedisConnection; self: string }) {
    this.redis = options.redis;
    this.self = options.self;
  }

  /** Where `instance`'s peer listener is, when a live heartbeat says so; undefined otherwise. */
  async addressOf(instance: string): Promise<PeerAddress | undefined> {
    if (instance === this.self || !INSTANCE_ID.test(instance) || !this.redis.available) return undefined;
    let record;
    try {
      record = await liveRecord(this.redis, instance);
    } catch (error) {
      this.redis.failed(error as Error);
      return undefined;
    }
    const advertised = record?.peerAddress;
    return typeof advertised === 'string' ? parsePeerAddress(advertised) : undefined;
  }
}
