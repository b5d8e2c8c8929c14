import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { RedisConnection } from '../redis/redis-connection.ts';

/*
 * Keys (after the connection's `pullmirror:<store id>:` prefix):
 *
 *   evictionpass   "<owner> <started ms>"   the pass running in the fleet, PX lease, renewed by its owner
 */
const KEY = 'evictionpass';

/** How long a pass holds the fleet's lock without renewing it (a pass that dies frees it then). */
export const PASS_LEASE_MS = 30_000;

/** Another instance (or `gc`) runs a pass now: this one does not start. */
export class PassHeldElsewhere extends Error {
  readonly holder: string;
  readonly since: number | undefined;

  constructor(holder: string, since: number | undefined) {
    super(`another eviction pass runs in the fleet (${holder}${since ? ` since ${new Date(since).toISOString()}` : ''})`);
    this.name = 'PassHeldElsewhere';
    this.holder = holder;
    this.since = since;
  }
}

/** What a running pass holds. */
export interface PassLease {
  /**
   * The fence, asked before each deletion: whether the lock is still this pass's. False when
   * Redis says another holds it, or when Redis cannot be asked and its last word is older than
   * the lease (another pass may have started since).
   */
  stillHeld(): Promise<boolean>;
  release(): Promise<void>;
}

/** One eviction pass at a time: in the process (no fleet), or across the fleet (Redis). */
export interface PassLock {
  /** The lease for a pass, or PassHeldElsewhere thrown when another pass holds it. */
  acquire(): Promise<PassLease>;
}

/** No fleet: the scheduler already runs one pass at a time in this process. */
export const localPassLock: PassLock = {
  acquire: async () => ({ stillHeld: async () => true, release: async () => {} }),
};

const RENEW = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`;

/** A holder as read from Redis, shown in a message only: bounded and printable. */
const HOLDER = /^([\x21-\x7e]{1,120}) ([0-9]{1,15})$/;

/**
 * The fleet's eviction lock in Redis: `SET NX PX` with an owner token, renewed every third of
 * the lease while the pass runs, and checked (the fence) before each deletion, as a fill's
 * lease is (src/fleet/redis-fill-coordinator.ts). A second pass while one runs does not wait:
 * it is skipped (the scheduler's next tick, or the operator, runs it later).
 *
 * Without Redis no pass runs at all in a fleet (the access clock is in Redis too), so there is
 * no "every instance alone" fallback here: acquire throws when Redis cannot be asked.
 */
export class RedisPassLock implements PassLock {
  private readonly redis: RedisConnection;
  private readonly leaseMs: number;
  private readonly name: string;

  /** `name`: who holds it, as other instances' logs and `gc` say (an instance id, or `gc@host`). */
  constructor(options: { redis: RedisConnection; name?: string; leaseMs?: number }) {
    this.redis = options.redis;
    this.leaseMs = options.leaseMs ?? PASS_LEASE_MS;
    this.name = (options.name ?? `${hostname()}-${process.pid}`).replace(/[^\x21-\x7e]/g, '_').slice(0, 100);
  }

  async acquire(): Promise<PassLease> {
    if (!this.redis.available) throw new Error('redis is unreachable: no eviction pass runs without the fleet\'s lock');
    const owner = `${this.name}.${randomBytes(6).toString('hex')}`;
    const started = Date.now();
    let answer: string | null;
    try {
      answer = await this.redis.client.set(KEY, `${owner} ${started}`, 'PX', this.leaseMs, 'NX');
    } catch (error) {
      this.redis.failed(error as Error);
      throw new Error(`redis did not answer for the fleet's eviction lock: ${(error as Error).message}`, { cause: error });
    }
    if (answer === null) {
      const held = await this.redis.client.get(KEY).catch(() => null);
      const match = held ? HOLDER.exec(held) : null;
      // The holder's name without the random token that tells its passes apart.
      throw new PassHeldElsewhere(match ? match[1].replace(/\.[0-9a-f]{12}$/, '') : 'unknown holder', match ? Number(match[2]) : undefined);
    }
    return this.lease(`${owner} `, performance.now());
  }

  /** `asked`: performance.now() when the lock was asked for (the lease ran from then; intervals only). */
  private lease(owner: string, asked: number): PassLease {
    let confirmedAt = asked;
    let lost = false;
    const renew = async (): Promise<boolean | undefined> => {
      if (lost) return false;
      if (!this.redis.available) return undefined;
      const sent = performance.now();
      try {
        const held = (await this.redis.client.eval(RENEW, 1, KEY, owner, this.leaseMs)) === 1;
        if (held) confirmedAt = Math.max(confirmedAt, sent);
        else lost = true;
        return held;
      } catch (error) {
        this.redis.failed(error as Error);
        return undefined;
      }
    };
    const timer = setInterval(() => void renew(), Math.floor(this.leaseMs / 3));
    timer.unref();
    return {
      stillHeld: async () => {
        if (lost) return false;
        // Confirmed lately: no request per deletion.
        if (performance.now() - confirmedAt < this.leaseMs / 3) return true;
        if ((await renew()) === false) return false;
        return performance.now() - confirmedAt < this.leaseMs;
      },
      release: async () => {
        clearInterval(timer);
        if (lost || !this.redis.available) return;
        try {
          await this.redis.client.eval(RELEASE, 1, KEY, owner);
        } catch (error) {
          this.redis.failed(error as Error);
        }
      },
    };
  }
}
