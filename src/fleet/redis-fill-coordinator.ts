import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import type { BlobClaim, BlobLease, FillCoordinator, HolderState } from './fill-coordinator.ts';
import { parseFillFailure } from './fill-failure.ts';

/*
 * Keys (after the connection's `pullmirror:` prefix; the {…} hash tag keeps a blob's keys in
 * one Cluster slot so one script can touch both):
 *
 *   fill:{<digest>}         "<owner> <json {tempPath,size}>"  the download's claim, PX lease, renewed by its holder
 *   fillfailed:{<digest>}   json FillFailure                  a holder's failure, for its followers (30 s)
 *   lookup:{<key>}          "<digest>"                        a lookup's answer, PX freshness window (tags only)
 *   lookuplease:{<key>}     "<owner>"                         a lookup in flight, PX lease
 *   lookupdone:{<key>}      "<owner> <digest>"                its answer, for instances that waited on it
 *
 * A lookup's key is `<ns>/<name>:<tag>` for a tag's check, `<ns>/<name>@<digest>` for a
 * manifest's fetch.
 */

/** Runs `body` when the key still holds this owner's claim (compare-and-act, atomically). */
const IF_OWNER = (body: string) => `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  ${body}
  return 1
end
return 0`;

const RENEW = IF_OWNER(`redis.call('PEXPIRE', KEYS[1], ARGV[2])`);
const PUBLISH = IF_OWNER(`redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2])`);
const RELEASE = IF_OWNER(`redis.call('DEL', KEYS[1])`);
const FAIL = IF_OWNER(`redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[2], ARGV[2], 'PX', 30000)`);

/** A download's temp file relative to the store root: `_tmp/<instance>/<file>`, nothing else. */
const TEMP_PATH = /^_tmp\/[A-Za-z0-9._-]+\/[A-Za-z0-9-]+$/;

/** How often an instance waiting on another's lookup looks for its answer. */
const POLL_MS = 25;

/**
 * Fleet coordination through Redis leases. A claim is `SET NX PX lease`, renewed every third
 * of the lease while its holder works; a holder that dies stops renewing and its claim
 * expires, so another instance takes the work over. Redis unreachable: every claim is ours
 * (instances work alone, as without a fleet) and the outage is logged once by the connection.
 */
export class RedisFillCoordinator implements FillCoordinator {
  private readonly redis: RedisConnection;
  private readonly leaseMs: number;
  private readonly logger: Logger;
  private readonly instance = randomBytes(6).toString('hex');
  private readonly renewals = new Set<NodeJS.Timeout>();

  constructor(options: { redis: RedisConnection; leaseMs: number; logger: Logger }) {
    this.redis = options.redis;
    this.leaseMs = options.leaseMs;
    this.logger = options.logger;
  }

  private owner(): string {
    return `${this.instance}.${randomBytes(6).toString('hex')} `;
  }

  async claimBlob(digest: string): Promise<BlobClaim> {
    const local: BlobClaim = { kind: 'mine', lease: { publish: async () => {}, release: async () => {} } };
    if (!this.redis.available) return local;
    const owner = this.owner();
    const key = `fill:{${digest}}`;
    try {
      const won = await this.redis.client.set(key, `${owner}{}`, 'PX', this.leaseMs, 'NX');
      if (won === null) return { kind: 'theirs' };
    } catch (error) {
      this.redis.failed(error as Error);
      return local;
    }
    return { kind: 'mine', lease: this.lease(digest, key, owner) };
  }

  private lease(digest: string, key: string, owner: string): BlobLease {
    const run = async (script: string, keys: string[], args: (string | number)[]): Promise<void> => {
      if (!this.redis.available) return;
      try {
        await this.redis.client.eval(script, keys.length, ...keys, owner, ...args);
      } catch (error) {
        this.redis.failed(error as Error);
      }
    };
    const timer = setInterval(() => void run(RENEW, [key], [this.leaseMs]), Math.max(50, Math.floor(this.leaseMs / 3)));
    timer.unref();
    this.renewals.add(timer);
    const stop = () => {
      clearInterval(timer);
      this.renewals.delete(timer);
    };
    return {
      publish: (tempPath, size) => run(PUBLISH, [key], [this.leaseMs, JSON.stringify({ tempPath, size })]),
      release: async (outcome) => {
        stop();
        if (typeof outcome === 'object') {
          await run(FAIL, [key, `fillfailed:{${digest}}`], [JSON.stringify(outcome.failed)]);
        } else {
          await run(RELEASE, [key], []);
        }
      },
    };
  }

  async blobHolder(digest: string): Promise<HolderState> {
    if (!this.redis.available) return { kind: 'unknown' };
    try {
      const [[, claim], [, failed]] = (await this.redis.client.multi().get(`fill:{${digest}}`).get(`fillfailed:{${digest}}`).exec()) as [unknown, string | null][];
      if (typeof claim === 'string') {
        const info = JSON.parse(claim.slice(claim.indexOf(' ') + 1)) as { tempPath?: unknown; size?: unknown };
        // Only a file in a temp area of the store is ever read or adopted, whatever Redis says.
        const tempPath = typeof info.tempPath === 'string' && TEMP_PATH.test(info.tempPath) ? info.tempPath : undefined;
        const size = typeof info.size === 'number' && Number.isSafeInteger(info.size) && info.size >= 0 ? info.size : undefined;
        return { kind: 'held', tempPath, size };
      }
      return { kind: 'free', failure: typeof failed === 'string' ? parseFillFailure(failed) : undefined };
    } catch (error) {
      this.redis.failed(error as Error);
      return { kind: 'unknown' };
    }
  }

  async lookupOnce(key: string, freshnessMs: number, lookup: () => Promise<string | undefined>): Promise<string | undefined> {
    const client = this.redis.client;
    const deadline = Date.now() + this.leaseMs;
    let claimed: string | undefined;
    try {
      while (this.redis.available && Date.now() < deadline && !claimed) {
        if (freshnessMs > 0) {
          const fresh = await client.get(`lookup:{${key}}`);
          if (fresh) return fresh;
        }
        const owner = this.owner();
        if ((await client.set(`lookuplease:{${key}}`, owner, 'PX', this.leaseMs, 'NX')) !== null) {
          claimed = owner;
          break;
        }
        // Another instance is at it: wait for its answer, or for its claim to go away.
        const holder = await client.get(`lookuplease:{${key}}`);
        while (holder && Date.now() < deadline) {
          await delay(POLL_MS);
          const [[, done], [, still]] = (await client.multi().get(`lookupdone:{${key}}`).get(`lookuplease:{${key}}`).exec()) as [unknown, string | null][];
          if (typeof done === 'string' && done.startsWith(holder)) return done.slice(holder.length);
          if (still !== holder) break;
        }
      }
    } catch (error) {
      this.redis.failed(error as Error);
    }
    // Ours to run: we hold the claim, or Redis cannot coordinate (then we run it alone).
    return claimed ? this.lookupAsHolder(key, claimed, freshnessMs, lookup) : lookup();
  }

  private async lookupAsHolder(key: string, owner: string, freshnessMs: number, lookup: () => Promise<string | undefined>): Promise<string | undefined> {
    let digest: string | undefined;
    try {
      digest = await lookup();
      return digest;
    } finally {
      try {
        const multi = this.redis.client.multi();
        if (digest) {
          multi.set(`lookupdone:{${key}}`, `${owner}${digest}`, 'PX', this.leaseMs);
          if (freshnessMs > 0) multi.set(`lookup:{${key}}`, digest, 'PX', freshnessMs);
        }
        await multi.exec();
        await this.redis.client.eval(RELEASE, 1, `lookuplease:{${key}}`, owner);
      } catch (error) {
        this.redis.failed(error as Error);
      }
    }
  }

  async close(): Promise<void> {
    for (const timer of this.renewals) clearInterval(timer);
    this.renewals.clear();
    this.logger.debug('fleet coordinator closed');
  }
}
