import { randomBytes } from 'node:crypto';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';
import { INSTANCE_ID } from '../storage/paths.ts';
import { fleetDuplicateFetches, fleetLeasesLost } from '../metrics/metrics.ts';
import { RegistryError } from '../registry/errors.ts';
import { unfencedLease, type BlobClaim, type BlobLease, type FillCoordinator, type FillHolder, type HolderState } from './fill-coordinator.ts';
import { FillEvents, fillEventsChannel } from './fill-events.ts';
import { parseFillFailure } from './fill-failure.ts';

/*
 * Keys (after the connection's `pullmirror:` prefix; the {…} hash tag keeps a blob's keys in
 * one Cluster slot so one script can touch both):
 *
 *   fill:{<digest>}         "<instance> <epoch> <json {started,size}>"  the download's claim, PX lease, renewed by its holder
 *   fillepoch:{<digest>}    counter                           the last epoch handed out for the digest (a day)
 *   fillfailed:{<digest>}   json FillFailure                  a holder's failure, for its followers (30 s)
 *   lookup:{<key>}          "<digest>"                        a lookup's answer, PX freshness window (tags only)
 *   lookuplease:{<key>}     "<owner>"                         a lookup in flight, PX lease
 *   lookupdone:{<key>}      "<owner> <digest>"                its answer, for instances that waited on it
 *
 * A lookup's key is `<ns>/<name>:<tag>` for a tag's check, `<ns>/<name>@<digest>` for a
 * manifest's fetch.
 *
 * Channel (pub/sub, named under the same prefix by hand: see FillEvents):
 *
 *   fills                   "<digest>"                        a download's claim changed (started, released, failed)
 *                           "lookup:<key>"                    a lookup's lease was released (its answer is in lookupdone)
 */

/** Runs `body` when the key still holds this owner's claim (compare-and-act, atomically). */
const IF_OWNER = (body: string) => `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  ${body}
  return 1
end
return 0`;

/**
 * Tells the followers of a download that its claim changed, in the script that changes it: the
 * last two arguments are the channel and the digest. A renewal publishes nothing (followers
 * need no word of a holder that goes on), nor does an expiry (followers look at the claim when
 * it would expire: HolderState's expiresInMs).
 */
const NOTIFY = `redis.call('PUBLISH', ARGV[#ARGV - 1], ARGV[#ARGV])`;

const RENEW = IF_OWNER(`redis.call('PEXPIRE', KEYS[1], ARGV[2])`);
const PUBLISH = IF_OWNER(`redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2]) ${NOTIFY}`);
const RELEASE_FILL = IF_OWNER(`redis.call('DEL', KEYS[1]) ${NOTIFY}`);
const FAIL = IF_OWNER(`redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[2], ARGV[2], 'PX', 30000) ${NOTIFY}`);
const RELEASE_LOOKUP = IF_OWNER(`redis.call('DEL', KEYS[1]) ${NOTIFY}`);

/**
 * Claims a blob's download: when no one holds it, the next epoch of the digest and a claim
 * naming this instance and that epoch; else the claim as it stands (its holder, for followers).
 * The epoch outlives the claims by a day, so a holder paused for less never meets its epoch again.
 * A claim without an expiry was written by no instance (they all set one): it gets the lease's,
 * so a stray key cannot hold a blob's download forever.
 */
const CLAIM = `
local held = redis.call('GET', KEYS[1])
if held then
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return held
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch .. ' {}', 'PX', ARGV[2])
return epoch`;

/** A claim as read from Redis: the holder's name and epoch, then what it published. */
const CLAIM_VALUE = /^(\S{1,100}) ([1-9][0-9]{0,15}) (\{.{0,200}\})$/;

/** How long after a lookup lease's expiry a waiting instance looks at it (a renewal may be in flight). */
const EXPIRY_MARGIN_MS = 50;

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
  /** This instance's name in claims (its temp area's, see TempArea): followers find its files by it. */
  private readonly instance: string;
  private readonly renewals = new Set<NodeJS.Timeout>();
  /** The subscription to the fleet's download events, opened at the first follow (never by gc). */
  private events?: FillEvents;

  constructor(options: { redis: RedisConnection; leaseMs: number; logger: Logger; instance: string }) {
    if (!INSTANCE_ID.test(options.instance)) throw new Error(`not an instance name: ${options.instance}`);
    this.instance = options.instance;
    this.redis = options.redis;
    this.leaseMs = options.leaseMs;
    this.logger = options.logger;
  }

  private owner(): string {
    return `${this.instance}.${randomBytes(6).toString('hex')} `;
  }

  async claimBlob(digest: string): Promise<BlobClaim> {
    if (!this.redis.available) return { kind: 'mine', lease: unfencedLease() };
    const key = `fill:{${digest}}`;
    const asked = performance.now();
    let answer: unknown;
    try {
      answer = await this.redis.client.eval(CLAIM, 2, key, `fillepoch:{${digest}}`, this.instance, this.leaseMs);
    } catch (error) {
      this.redis.failed(error as Error);
      return { kind: 'mine', lease: unfencedLease() };
    }
    if (typeof answer === 'string') return { kind: 'theirs', holder: parseClaim(answer)?.holder };
    return { kind: 'mine', lease: this.lease(digest, key, Number(answer), asked) };
  }

  /**
   * A claim this instance won at `claimedAt`, with the epoch `epoch`. Renewed every third of
   * the lease; a renewal Redis refuses means another instance holds the claim now, and the
   * lease is lost for good. While Redis cannot be asked the lease is kept (no other instance
   * can claim through Redis either), but the commit's fence refuses once the last answer is
   * older than the lease: by then another instance may hold it. A lost lease harms no other
   * download: each holder writes its own file (a takeover copies, see resumeWriter).
   */
  private lease(digest: string, key: string, epoch: number, claimedAt: number): BlobLease {
    // The claim's value starts with this; the scripts act only while it still does.
    const owner = `${this.instance} ${epoch} `;
    const lost = new AbortController();
    /** When the last request Redis confirmed the claim with was sent (the lease ran from then). */
    let confirmedAt = claimedAt;
    /** Whether the fence refused a commit already (its duplicate fetch counted). */
    let refusedOnce = false;
    /** Runs an owner-checked script: true or false as Redis answers, undefined when it cannot be asked. */
    const run = async (script: string, keys: string[], args: (string | number)[]): Promise<boolean | undefined> => {
      if (!this.redis.available) return undefined;
      const sent = performance.now();
      try {
        const held = (await this.redis.client.eval(script, keys.length, ...keys, owner, ...args)) === 1;
        if (held) confirmedAt = Math.max(confirmedAt, sent);
        return held;
      } catch (error) {
        this.redis.failed(error as Error);
        return undefined;
      }
    };
    const loseIt = () => {
      if (lost.signal.aborted) return;
      stop();
      fleetLeasesLost.inc();
      this.logger.warn('blob download lease lost to another instance; finishing it for this instance\'s clients, without committing', { digest, epoch });
      lost.abort(new RegistryError('UNAVAILABLE', "the blob's download was taken over by another instance"));
    };
    /** Extends the lease: false once Redis says it is not ours. */
    const renew = async (): Promise<boolean> => {
      const held = lost.signal.aborted ? false : await run(RENEW, [key], [this.leaseMs]);
      if (held === false) loseIt();
      return held !== false;
    };
    const timer = setInterval(() => void renew(), Math.max(50, Math.floor(this.leaseMs / 3)));
    timer.unref();
    this.renewals.add(timer);
    const stop = () => {
      clearInterval(timer);
      this.renewals.delete(timer);
    };
    return {
      epoch,
      lost: lost.signal,
      publish: async (size) => {
        if ((await run(PUBLISH, [key], [this.leaseMs, JSON.stringify({ started: true, size }), this.channel, digest])) === false) loseIt();
      },
      stillHeld: async () => {
        // Counted when the fence refuses, not when the lease is lost: only a download that ends
        // uncommitted is fetched again by another instance. A lease that vanished in a Redis
        // failover, whose verified bytes still go into a store of this instance's own (the
        // fence of BlobDownloads.ownStoreFence), costs no second fetch.
        const held = (await renew()) && performance.now() - confirmedAt < this.leaseMs;
        if (!held && !refusedOnce) fleetDuplicateFetches.labels('lease_lost').inc();
        refusedOnce ||= !held;
        return held;
      },
      release: async (outcome) => {
        stop();
        if (typeof outcome === 'object') {
          await run(FAIL, [key, `fillfailed:{${digest}}`], [JSON.stringify({ ...outcome.failed, epoch }), this.channel, digest]);
        } else {
          await run(RELEASE_FILL, [key], [this.channel, digest]);
        }
      },
    };
  }

  async blobHolder(digest: string): Promise<HolderState> {
    if (!this.redis.available) return { kind: 'unknown' };
    try {
      const key = `fill:{${digest}}`;
      const [[, claim], [, ttl], [, failed]] = (await this.redis.client.multi().get(key).pttl(key).get(`fillfailed:{${digest}}`).exec()) as [unknown, unknown][];
      if (typeof claim === 'string') {
        const expiresInMs = typeof ttl === 'number' && ttl >= 0 ? ttl : undefined;
        return { kind: 'held', started: false, ...parseClaim(claim), ...(expiresInMs === undefined ? {} : { expiresInMs }) };
      }
      return { kind: 'free', failure: typeof failed === 'string' ? parseFillFailure(failed) : undefined };
    } catch (error) {
      this.redis.failed(error as Error);
      return { kind: 'unknown' };
    }
  }

  async lookupOnce(key: string, freshnessMs: number, lookup: () => Promise<string | undefined>): Promise<string | undefined> {
    const client = this.redis.client;
    const deadline = performance.now() + this.leaseMs;
    let claimed: string | undefined;
    try {
      while (this.redis.available && performance.now() < deadline && !claimed) {
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
        if (holder) {
          const answer = await this.awaitLookup(key, holder, deadline);
          if (answer !== undefined) return answer;
        }
      }
    } catch (error) {
      this.redis.failed(error as Error);
    }
    // Ours to run: we hold the claim, or Redis cannot coordinate (then we run it alone).
    return claimed ? this.lookupAsHolder(key, claimed, freshnessMs, lookup) : lookup();
  }

  /**
   * Waits for `holder`'s answer to the lookup `key`: looks when it releases its lease (an event)
   * and else when the lease would expire (a holder that dies publishes nothing); the answer, or
   * undefined once the lease went away without one or at `deadline`. Throws what Redis throws.
   */
  private async awaitLookup(key: string, holder: string, deadline: number): Promise<string | undefined> {
    let wakes = 0;
    let wake: (() => void) | undefined;
    const stop = this.watchBlob(`lookup:${key}`, () => {
      wakes++;
      wake?.();
    });
    try {
      while (performance.now() < deadline) {
        const mark = wakes;
        const [[, done], [, still], [, ttl]] = (await this.redis.client.multi().get(`lookupdone:{${key}}`).get(`lookuplease:{${key}}`).pttl(`lookuplease:{${key}}`).exec()) as [
          unknown,
          unknown,
        ][];
        if (typeof done === 'string' && done.startsWith(holder)) return done.slice(holder.length);
        if (still !== holder) return undefined;
        const waitMs = Math.min(typeof ttl === 'number' && ttl >= 0 ? ttl + EXPIRY_MARGIN_MS : this.leaseMs, deadline - performance.now());
        if (wakes === mark && waitMs > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resume, waitMs);
            function resume(): void {
              clearTimeout(timer);
              resolve();
            }
            wake = resume;
          });
          wake = undefined;
        }
      }
      return undefined;
    } finally {
      stop();
    }
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
        // Those waiting on it wake (after the answer is written: they read it then).
        await this.redis.client.eval(RELEASE_LOOKUP, 1, `lookuplease:{${key}}`, owner, this.channel, `lookup:${key}`);
      } catch (error) {
        this.redis.failed(error as Error);
      }
    }
  }

  watchBlob(digest: string, onChange: () => void): () => void {
    this.events ??= new FillEvents({ redis: this.redis, logger: this.logger });
    return this.events.watch(digest, onChange);
  }

  /** The channel the scripts publish on (FillEvents subscribes to it). */
  private get channel(): string {
    return fillEventsChannel(this.redis);
  }

  async close(): Promise<void> {
    for (const timer of this.renewals) clearInterval(timer);
    this.renewals.clear();
    await this.events?.close();
    this.logger.debug('fleet coordinator closed');
  }
}

/**
 * A claim's holder and what it published, checked field by field: an instance name other than
 * one an instance gives itself, or an epoch that is not a positive integer, leaves the holder
 * unknown (followed by no file); undefined when the value is not a claim at all.
 */
function parseClaim(value: string): { holder?: FillHolder; started: boolean; size?: number } | undefined {
  const match = CLAIM_VALUE.exec(value);
  if (!match) return undefined;
  const [, instance, epochText, published] = match;
  const epoch = Number(epochText);
  const holder = INSTANCE_ID.test(instance) && Number.isSafeInteger(epoch) ? { instance, epoch } : undefined;
  let info: unknown;
  try {
    info = JSON.parse(published);
  } catch {
    return { holder, started: false };
  }
  const { started, size } = (typeof info === 'object' && info !== null ? info : {}) as { started?: unknown; size?: unknown };
  return {
    holder,
    started: started === true,
    size: typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : undefined,
  };
}
