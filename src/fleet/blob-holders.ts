import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { STORE_ID, type PeerDirectory } from './peer-directory.ts';

/*
 * Keys (under the fleet's prefix, `pullmirror:fleet:<name>:` with redis.fleet.name):
 *
 *   holders:{<digest>}      set of store ids            the stores that committed the blob and have not evicted it since
 */
const holdersKey = (digest: string) => `holders:{${digest}}`;

/** A live instance that serves a store the record names for a blob: whom to ask for it. */
export interface RecordedHolder {
  instance: string;
  storeId: string;
}

/**
 * Who holds what (issue 24, instances on disks of their own): per blob, the stores that
 * committed it, kept on commit and on eviction. An instance missing a blob that no one is
 * filling asks it before going upstream, and streams the blob from an instance serving one of
 * those stores (BlobDownloads).
 *
 * Only a hint, like every Redis use here: an entry may be stale (a write lost in a failover, an
 * instance that evicted while Redis was down, a store no instance serves any more). A stale
 * entry costs one 404 from that peer (and is dropped then), or nothing at all when no live
 * heartbeat names an instance serving the store; then the next holder, then upstream. Nothing
 * from the record is dialed: it names stores, and instances are found by their live heartbeats
 * (PeerDirectory). Failures are reported to the connection and never thrown.
 */
export class BlobHolders {
  private readonly redis: RedisConnection;
  private readonly storeId: string;
  private readonly directory: PeerDirectory;
  private readonly logger: Logger;

  constructor(options: { redis: RedisConnection; storeId: string; directory: PeerDirectory; logger: Logger }) {
    if (!STORE_ID.test(options.storeId)) throw new Error(`not a store id: ${options.storeId}`);
    this.redis = options.redis;
    this.storeId = options.storeId;
    this.directory = options.directory;
    this.logger = options.logger;
  }

  /** This instance's store committed `digest`. */
  async committed(digest: string): Promise<void> {
    await this.run((client) => client.sadd(holdersKey(digest), this.storeId));
  }

  /** `storeId` (this instance's store when not given) no longer holds `digest`: evicted, or a peer serving it said 404. */
  async removed(digest: string, storeId = this.storeId): Promise<void> {
    await this.run((client) => client.srem(holdersKey(digest), storeId));
  }

  /**
   * The live instances serving a store the record names for `digest`, other than this one's
   * store; empty when none or when Redis cannot be asked.
   */
  async holders(digest: string): Promise<RecordedHolder[]> {
    const members = await this.run((client) => client.smembers(holdersKey(digest)));
    const stores = (members ?? []).filter((id) => id !== this.storeId && STORE_ID.test(id));
    if (stores.length === 0) return [];
    const found = await this.directory.serving(stores);
    if (found.length === 0) this.logger.debug('no live instance serves a store that holds the blob', { digest, stores: stores.length });
    return found;
  }

  private async run<T>(command: (client: RedisConnection['client']) => Promise<T>): Promise<T | undefined> {
    if (!this.redis.available) return undefined;
    try {
      return await command(this.redis.client);
    } catch (error) {
      this.redis.failed(error as Error);
      return undefined;
    }
  }
}
