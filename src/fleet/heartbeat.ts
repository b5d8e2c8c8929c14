import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';

/** What an instance says of itself every beat. */
export interface InstanceRecord {
  id: string;
  hostname: string;
  pid: number;
  /** The address it listens on (host:port as bound). */
  address: string;
  /**
   * Where other instances reach its peer listener (redis.fleet.peers.advertise), when it has
   * one. Read back only through peerRecord(): never dialed unless its instance is alive.
   */
  peerAddress?: string;
  /**
   * The id of the store it serves (storage/store-id.ts): instances of a named fleet on disks of
   * their own tell by it whether a holder's download lands in their store or must be copied.
   */
  storeId?: string;
  version: string;
  startedAt: number;
  fillsInFlight: number;
  /** Its own traffic since it started (the status page's fleet panel breaks the overview down by instance). */
  traffic?: InstanceTraffic;
  lastSeen: number;
  /** Set by an instance that stopped cleanly: gone at once, not after the expiry. */
  stoppedAt?: number;
}

export interface InstanceTraffic {
  pulls: number;
  /** Hits and stale answers: served from the cache. */
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

export interface InstanceView extends InstanceRecord {
  state: 'alive' | 'gone';
  uptimeS: number;
  /** This very instance (the one answering). */
  self: boolean;
}

export interface FleetView {
  /** 'none': no Redis configured; 'unavailable': configured but unreachable now (others unknown). */
  redis: 'ok' | 'none' | 'unavailable';
  intervalMs: number;
  expiryMs: number;
  instances: InstanceView[];
}

/*
 * Keys (under the connection's prefix `pullmirror:<store id>:`): one hash of every instance's
 * last record, and one key per live instance that expires unless renewed. The hash tag
 * `{fleet}` keeps both in one Redis Cluster slot.
 */
const RECORDS = 'fleet:{fleet}:instances';
const aliveKey = (id: string) => `fleet:{fleet}:alive:${id}`;
/** How soon a change is published after it happens (changes within it go out in one write). */
const NUDGE_MS = 150;

/**
 * The fleet at a glance: every instance sharing a Redis renews a key with a short expiry
 * every `intervalMs` and writes its record (address, version, fills in flight) to a shared
 * hash; a record without its key is an instance gone (stopped, killed, cut off), shown as
 * such for `goneKeepMs` after it was last seen, then forgotten.
 *
 * Like every Redis use here it only informs: a beat is skipped while the connection's circuit
 * is open, a failure is reported to the connection and never thrown, and nothing a request
 * waits on goes through it.
 */
export class FleetHeartbeat {
  readonly id: string;
  private readonly storeId?: string;
  private readonly redis?: RedisConnection;
  private readonly logger: Logger;
  private readonly version: string;
  private readonly fillsInFlight: () => number;
  private readonly traffic?: () => InstanceTraffic;
  private readonly startedAt = Date.now();
  /** For this instance's own uptime: a monotonic clock, which a wall-clock step does not move. */
  private readonly startedMono = performance.now();
  readonly intervalMs: number;
  readonly expiryMs: number;
  private readonly goneKeepMs: number;
  private address = '';
  private peerAddress?: string;
  private timer?: NodeJS.Timeout;
  private nudged?: NodeJS.Timeout;
  private stopped = false;

  constructor(options: {
    redis?: RedisConnection;
    logger: Logger;
    version: string;
    fillsInFlight: () => number;
    traffic?: () => InstanceTraffic;
    intervalMs?: number;
    expiryMs?: number;
    goneKeepMs?: number;
    /** Its name in the fleet: the one its download leases give (TempArea.id), so a lease's holder is found here. */
    id?: string;
    /** The id of the store it serves, when it has one. */
    storeId?: string;
  }) {
    this.storeId = options.storeId;
    this.redis = options.redis;
    this.logger = options.logger;
    this.version = options.version;
    this.fillsInFlight = options.fillsInFlight;
    this.traffic = options.traffic;
    this.intervalMs = options.intervalMs ?? 5_000;
    this.expiryMs = options.expiryMs ?? 15_000;
    this.goneKeepMs = options.goneKeepMs ?? 5 * 60_000;
    this.id = options.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  /** The address this instance listens on (empty until it does). */
  get listenAddress(): string {
    return this.address;
  }

  /** Starts beating once the address is known (the server listens); `peerAddress` once the peer listener does. */
  start(address: string, peerAddress?: string): void {
    this.address = address;
    this.peerAddress = peerAddress;
    if (!this.redis || this.stopped || this.timer) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Something the panels show changed (a download started or ended, a pull was served): the
   * record goes out within NUDGE_MS instead of at the next beat, several changes in one write.
   */
  nudge(): void {
    if (!this.timer || this.stopped || this.nudged) return;
    this.nudged = setTimeout(() => {
      this.nudged = undefined;
      void this.beat();
    }, NUDGE_MS);
    this.nudged.unref();
  }

  private record(): InstanceRecord {
    return {
      id: this.id,
      hostname: hostname(),
      pid: process.pid,
      address: this.address,
      ...(this.peerAddress ? { peerAddress: this.peerAddress } : {}),
      ...(this.storeId ? { storeId: this.storeId } : {}),
      version: this.version,
      startedAt: this.startedAt,
      fillsInFlight: this.fillsInFlight(),
      ...(this.traffic ? { traffic: this.traffic() } : {}),
      lastSeen: Date.now(),
    };
  }

  private async beat(): Promise<void> {
    const redis = this.redis;
    if (!redis?.available || this.stopped) return;
    const record = this.record();
    try {
      await redis.client.multi().set(aliveKey(this.id), String(record.lastSeen), 'PX', this.expiryMs).hset(RECORDS, this.id, JSON.stringify(record)).exec();
    } catch (error) {
      redis.failed(error as Error);
    }
  }

  /**
   * Stops beating and says so: the key goes and the record is marked stopped, so every panel
   * shows this instance gone at once. Bounded by the connection's command timeout.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.nudged);
    const redis = this.redis;
    if (!redis?.available || !this.timer) return;
    const record = { ...this.record(), stoppedAt: Date.now() };
    try {
      await redis.client.multi().del(aliveKey(this.id)).hset(RECORDS, this.id, JSON.stringify(record)).exec();
    } catch (error) {
      this.logger.warn('could not withdraw the fleet heartbeat; others see this instance gone after the expiry', { error: (error as Error).message });
    }
  }

  /** Every instance known: the live ones, and those gone within goneKeepMs. This one always. */
  async list(): Promise<FleetView> {
    const now = Date.now();
    const self = (): InstanceView => ({ ...this.record(), state: 'alive', uptimeS: Math.round((performance.now() - this.startedMono) / 1000), self: true });
    const base = { intervalMs: this.intervalMs, expiryMs: this.expiryMs };
    const redis = this.redis;
    if (!redis) return { ...base, redis: 'none', instances: [self()] };
    if (!redis.available) return { ...base, redis: 'unavailable', instances: [self()] };
    let records: Record<string, string>;
    let alive: (number | null)[];
    try {
      records = await redis.client.hgetall(RECORDS);
      const ids = Object.keys(records);
      const replies = ids.length > 0 ? ((await redis.client.multi(ids.map((id) => ['exists', aliveKey(id)])).exec()) ?? []) : [];
      alive = replies.map(([error, value]) => (error ? null : Number(value)));
    } catch (error) {
      redis.failed(error as Error);
      return { ...base, redis: 'unavailable', instances: [self()] };
    }
    const instances: InstanceView[] = [];
    const forget: string[] = [];
    Object.entries(records).forEach(([id, json], i) => {
      if (id === this.id) return;
      let record: InstanceRecord;
      try {
        record = JSON.parse(json) as InstanceRecord;
      } catch {
        forget.push(id);
        return;
      }
      const live = alive[i] === 1 && record.stoppedAt === undefined;
      if (!live && now - record.lastSeen > this.goneKeepMs) {
        forget.push(id);
        return;
      }
      const traffic = trafficOf(record.traffic);
      instances.push({ ...record, traffic, id, state: live ? 'alive' : 'gone', uptimeS: live ? Math.round((now - record.startedAt) / 1000) : 0, self: false });
    });
    // Records gone for longer than goneKeepMs leave the hash (any instance may do it; idempotent).
    if (forget.length > 0) redis.client.hdel(RECORDS, ...forget).catch(() => {});
    instances.push(self());
    instances.sort((a, b) => (a.state === b.state ? a.address.localeCompare(b.address) : a.state === 'alive' ? -1 : 1));
    return { ...base, redis: 'ok', instances };
  }
}

/** Another instance's traffic figures as read from Redis: whole numbers ≥ 0, or none at all. */
function trafficOf(value: unknown): InstanceTraffic | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const fields = ['pulls', 'hits', 'misses', 'bytesFromCache', 'bytesFromUpstream'] as const;
  const figures = value as Record<string, unknown>;
  if (!fields.every((field) => Number.isSafeInteger(figures[field]) && (figures[field] as number) >= 0)) return undefined;
  return Object.fromEntries(fields.map((field) => [field, figures[field]])) as unknown as InstanceTraffic;
}

/**
 * What a live instance says of itself: its record, only while its alive key exists and it did not
 * say it stopped (read in one round trip, both keys in one Cluster slot). Undefined for an instance
 * gone, unknown, or whose record is not JSON; throws when Redis cannot be asked. The record is
 * as the instance wrote it: every field is checked by whoever uses it.
 */
export async function liveRecord(redis: RedisConnection, id: string): Promise<Partial<InstanceRecord> | undefined> {
  const replies = await redis.client.multi().exists(aliveKey(id)).hget(RECORDS, id).exec();
  if (!replies) return undefined;
  const [[aliveError, alive], [recordError, json]] = replies;
  if (aliveError) throw aliveError;
  if (recordError) throw recordError;
  if (Number(alive) !== 1 || typeof json !== 'string') return undefined;
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null || (record as InstanceRecord).stoppedAt !== undefined) return undefined;
  return record;
}

/**
 * Every live instance's record (as liveRecord tells one): for finding the instances that serve
 * a store (src/fleet/peer-directory.ts). Two round trips whatever the fleet's size; throws when
 * Redis cannot be asked. Each record is as its instance wrote it: checked by whoever uses it.
 */
export async function liveRecords(redis: RedisConnection): Promise<Map<string, Partial<InstanceRecord>>> {
  const records = await redis.client.hgetall(RECORDS);
  const ids = Object.keys(records);
  const live = new Map<string, Partial<InstanceRecord>>();
  if (ids.length === 0) return live;
  const replies = (await redis.client.multi(ids.map((id) => ['exists', aliveKey(id)])).exec()) ?? [];
  ids.forEach((id, i) => {
    const [error, alive] = replies[i] ?? [];
    if (error || Number(alive) !== 1) return;
    let record: unknown;
    try {
      record = JSON.parse(records[id]);
    } catch {
      return;
    }
    if (typeof record === 'object' && record !== null && (record as InstanceRecord).stoppedAt === undefined) live.set(id, record);
  });
  return live;
}
