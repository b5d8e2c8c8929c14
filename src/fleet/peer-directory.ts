import { parsePeerAddress, type PeerAddress } from '../config/addr.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { INSTANCE_ID } from '../storage/paths.ts';
import { liveRecord, liveRecords } from './heartbeat.ts';

/** What a store id is (storage/store-id.ts): anything else read from Redis names no store. */
export const STORE_ID = /^[0-9a-f]{16}$/;

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

  /**
   * The store a live instance serves, as its heartbeat says (a store id, checked); undefined for
   * an instance gone, unknown, or that names none (a version before heartbeats named stores), and
   * when Redis cannot be asked.
   */
  async storeOf(instance: string): Promise<string | undefined> {
    if (!INSTANCE_ID.test(instance) || !this.redis.available) return undefined;
    try {
      const storeId = (await liveRecord(this.redis, instance))?.storeId;
      return typeof storeId === 'string' && STORE_ID.test(storeId) ? storeId : undefined;
    } catch (error) {
      this.redis.failed(error as Error);
      return undefined;
    }
  }

  /**
   * The live instances (other than this one) that serve one of `storeIds` and have a peer
   * listener, each with the store it serves, in the order of `storeIds`. Only names: dialing goes
   * through addressOf, which looks at the heartbeat again. Empty when Redis cannot be asked.
   */
  async serving(storeIds: string[]): Promise<{ instance: string; storeId: string }[]> {
    if (storeIds.length === 0 || !this.redis.available) return [];
    let records;
    try {
      records = await liveRecords(this.redis);
    } catch (error) {
      this.redis.failed(error as Error);
      return [];
    }
    const found: { instance: string; storeId: string }[] = [];
    for (const storeId of storeIds) {
      for (const [instance, record] of records) {
        if (instance === this.self || !INSTANCE_ID.test(instance) || record.storeId !== storeId || typeof record.peerAddress !== 'string') continue;
        found.push({ instance, storeId });
      }
    }
    return found;
  }
}
