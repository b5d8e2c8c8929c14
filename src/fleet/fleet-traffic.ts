import type { Logger } from '../logging/logger.ts';
import type { CacheResult, MinuteCounters, PullRecord, TrafficSink, TrafficSnapshot } from '../metrics/traffic.ts';
import type { RedisConnection } from '../redis/redis-connection.ts';

/*
 * Keys (under the connection's prefix `pullmirror:<store id>:`, so a fleet is the instances on
 * one store): the totals since the first instance counted, one hash per minute (kept as long
 * as an instance's own ring), the pulls per repository, and the latest pulls. The hash tag
 * `{traffic}` keeps them in one Redis Cluster slot, so one MULTI writes them all.
 */
const TOTALS = 'traffic:{traffic}:totals';
const TOP = 'traffic:{traffic}:top';
const RECENT = 'traffic:{traffic}:recent';
const minuteKey = (minute: number) => `traffic:{traffic}:minute:${minute}`;
const MINUTE_TTL_MS = 3 * 3_600_000;
const RECENT_PULLS = 50;
const TOP_REPOSITORIES = 10;
/** Repositories whose pull count is kept; beyond it the least pulled go (as in TrafficRecorder). */
const REPOSITORIES_TRACKED = 5_000;
const COUNTERS = ['requests', 'hits', 'misses', 'stale', 'bytesFromCache', 'bytesFromUpstream', 'pulls'] as const;
const MINUTE_COUNTERS = ['requests', 'hits', 'misses', 'bytesFromCache', 'bytesFromUpstream'] as const;

type Counters = Record<(typeof COUNTERS)[number], number>;
type Minute = Record<(typeof MINUTE_COUNTERS)[number], number>;

interface Pending {
  totals: Counters;
  minutes: Map<number, Minute>;
  pullsByRepository: Map<string, number>;
  pulls: PullRecord[];
  empty: boolean;
}

const zeroCounters = (): Counters => ({ requests: 0, hits: 0, misses: 0, stale: 0, bytesFromCache: 0, bytesFromUpstream: 0, pulls: 0 });
const zeroMinute = (): Minute => ({ requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 });
const nothing = (): Pending => ({ totals: zeroCounters(), minutes: new Map(), pullsByRepository: new Map(), pulls: [], empty: true });

/** A count read back from Redis: a whole number ≥ 0, else 0 (a key someone else wrote is not trusted). */
const count = (value: unknown): number => {
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
};

const CACHE_RESULTS = new Set<string>(['hit', 'miss', 'stale']);

/** A pull record read back from Redis, or undefined when it is not one (it is shown as text, never followed). */
function pullRecord(json: string): PullRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { at, repository, reference, digest, cache, instance } = value as Record<string, unknown>;
  if (typeof at !== 'number' || typeof repository !== 'string' || typeof reference !== 'string' || typeof cache !== 'string' || !CACHE_RESULTS.has(cache)) return undefined;
  return {
    at,
    repository: repository.slice(0, 512),
    reference: reference.slice(0, 256),
    ...(typeof digest === 'string' ? { digest: digest.slice(0, 100) } : {}),
    cache: cache as CacheResult,
    ...(typeof instance === 'string' ? { instance: instance.slice(0, 100) } : {}),
  };
}

/**
 * The traffic of every instance sharing the Redis, for the status page's overview: each
 * instance adds what it served to shared counters (batched, one MULTI a second at most, off
 * the request path), and any instance reads the sums. Like every Redis use here it only
 * informs: while Redis is unreachable the figures of that time are dropped (each instance's
 * own figures stay in its fleet panel row) and the overview says it shows this instance only.
 */
export class FleetTraffic implements TrafficSink {
  private readonly redis: RedisConnection;
  private readonly logger: Logger;
  private readonly address: () => string;
  private readonly flushMs: number;
  private pending = nothing();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(options: { redis: RedisConnection; logger: Logger; address: () => string; flushMs?: number }) {
    this.redis = options.redis;
    this.logger = options.logger;
    this.address = options.address;
    this.flushMs = options.flushMs ?? 1_000;
  }

  response(cache: CacheResult | undefined, bytes: number, now: number): void {
    const p = this.pending;
    p.empty = false;
    const minuteStart = now - (now % 60_000);
    let minute = p.minutes.get(minuteStart);
    if (!minute) p.minutes.set(minuteStart, (minute = zeroMinute()));
    p.totals.requests++;
    minute.requests++;
    if (cache === undefined) return;
    if (cache === 'miss') {
      p.totals.misses++;
      minute.misses++;
      p.totals.bytesFromUpstream += bytes;
      minute.bytesFromUpstream += bytes;
    } else {
      if (cache === 'hit') p.totals.hits++;
      else p.totals.stale++;
      minute.hits++;
      p.totals.bytesFromCache += bytes;
      minute.bytesFromCache += bytes;
    }
  }

  pull(record: PullRecord): void {
    const p = this.pending;
    p.empty = false;
    p.totals.pulls++;
    p.pullsByRepository.set(record.repository, (p.pullsByRepository.get(record.repository) ?? 0) + 1);
    p.pulls.push(record);
    if (p.pulls.length > RECENT_PULLS) p.pulls.shift();
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  /** Sends what was counted since the last flush (one MULTI); dropped when Redis is unreachable. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = this.pending;
    if (batch.empty) return Promise.resolve();
    this.pending = nothing();
    if (!this.redis.available) return Promise.resolve();
    this.flushing = this.send(batch).finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async send(batch: Pending): Promise<void> {
    const multi = this.redis.client.multi();
    multi.hsetnx(TOTALS, 'since', String(Date.now()));
    for (const field of COUNTERS) if (batch.totals[field] > 0) multi.hincrby(TOTALS, field, batch.totals[field]);
    for (const [minute, counters] of batch.minutes) {
      for (const field of MINUTE_COUNTERS) if (counters[field] > 0) multi.hincrby(minuteKey(minute), field, counters[field]);
      multi.pexpire(minuteKey(minute), MINUTE_TTL_MS);
    }
    for (const [repository, pulls] of batch.pullsByRepository) multi.zincrby(TOP, pulls, repository);
    if (batch.pullsByRepository.size > 0) multi.zremrangebyrank(TOP, 0, -(REPOSITORIES_TRACKED + 1));
    if (batch.pulls.length > 0) {
      const instance = this.address();
      multi.lpush(RECENT, ...batch.pulls.map((pull) => JSON.stringify({ ...pull, instance })));
      multi.ltrim(RECENT, 0, RECENT_PULLS - 1);
    }
    try {
      await multi.exec();
    } catch (error) {
      this.redis.failed(error as Error);
    }
  }

  /**
   * The fleet's figures in the shape of one instance's TrafficRecorder snapshot (pulls carry
   * the instance that served them); undefined when Redis cannot be asked now.
   */
  async snapshot(window = 60, now = Date.now()): Promise<TrafficSnapshot | undefined> {
    if (!this.redis.available) return undefined;
    // What this instance counted in the last second is sent first, so its own pulls show at once.
    await this.flush();
    const thisMinute = now - (now % 60_000);
    const minutes = Array.from({ length: window }, (_, i) => thisMinute - (window - 1 - i) * 60_000);
    let replies: [Error | null, unknown][];
    try {
      const multi = this.redis.client.multi().hgetall(TOTALS).zrevrange(TOP, 0, TOP_REPOSITORIES - 1, 'WITHSCORES').lrange(RECENT, 0, RECENT_PULLS - 1);
      for (const minute of minutes) multi.hgetall(minuteKey(minute));
      replies = (await multi.exec()) ?? [];
    } catch (error) {
      this.redis.failed(error as Error);
      return undefined;
    }
    if (replies.some(([error]) => error)) {
      this.logger.warn('could not read the fleet traffic', { error: replies.find(([error]) => error)?.[0]?.message });
      return undefined;
    }
    const [totalsReply, topReply, recentReply, ...minuteReplies] = replies.map(([, value]) => value);
    const totals = (totalsReply ?? {}) as Record<string, string>;
    const figures = Object.fromEntries(COUNTERS.map((field) => [field, count(totals[field])])) as Counters;
    const answered = figures.hits + figures.misses + figures.stale;
    const top = Array.isArray(topReply) ? (topReply as string[]) : [];
    const topRepositories: { repository: string; pulls: number }[] = [];
    for (let i = 0; i + 1 < top.length; i += 2) topRepositories.push({ repository: String(top[i]).slice(0, 512), pulls: count(top[i + 1]) });
    const recentPulls = (Array.isArray(recentReply) ? (recentReply as string[]) : []).flatMap((json) => pullRecord(json) ?? []);
    return {
      since: count(totals.since) || now,
      totals: { ...figures, hitRatio: answered === 0 ? null : (figures.hits + figures.stale) / answered },
      minutes: minutes.map((minute, i): MinuteCounters => {
        const m = (minuteReplies[i] ?? {}) as Record<string, string>;
        return { minute, requests: count(m.requests), hits: count(m.hits), misses: count(m.misses), bytesFromCache: count(m.bytesFromCache), bytesFromUpstream: count(m.bytesFromUpstream) };
      }),
      topRepositories,
      recentPulls,
    };
  }

  /** Sends what is left (a clean stop), bounded by the connection's command timeout. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
