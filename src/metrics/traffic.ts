/*
 * In-memory traffic figures for the status page: totals since start, a ring of per-minute
 * counters, the most pulled repositories and the latest pulls. Recording is a few additions
 * per response; nothing here touches the disk.
 */

export type CacheResult = 'hit' | 'miss' | 'stale';

export interface MinuteCounters {
  /** Start of the minute, ms since the epoch. */
  minute: number;
  requests: number;
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

export interface PullRecord {
  at: number;
  repository: string;
  reference: string;
  digest?: string;
  cache: CacheResult;
  /** The instance that served it (its address), in the fleet's figures (src/fleet/fleet-traffic.ts). */
  instance?: string;
}

export interface TrafficSnapshot {
  since: number;
  totals: {
    requests: number;
    hits: number;
    misses: number;
    stale: number;
    /** hits (and stale answers) over all blob and manifest responses; null before the first. */
    hitRatio: number | null;
    bytesFromCache: number;
    bytesFromUpstream: number;
    pulls: number;
  };
  minutes: MinuteCounters[];
  topRepositories: { repository: string; pulls: number }[];
  recentPulls: PullRecord[];
}

/** Told of every response and pull the recorder counts (src/fleet/fleet-traffic.ts adds them up across a fleet). */
export interface TrafficSink {
  response(cache: CacheResult | undefined, bytes: number, now: number): void;
  pull(record: PullRecord): void;
}

const MINUTES_KEPT = 180;
const RECENT_PULLS = 50;
const TOP_REPOSITORIES = 10;
/** Repositories whose pull count is tracked; beyond it the least pulled are dropped. */
const REPOSITORIES_TRACKED = 5_000;

export class TrafficRecorder {
  private readonly since = Date.now();
  private readonly totalsSinceStart = { requests: 0, hits: 0, misses: 0, stale: 0, bytesFromCache: 0, bytesFromUpstream: 0, pulls: 0 };
  private readonly ring: (MinuteCounters | undefined)[] = new Array<MinuteCounters | undefined>(MINUTES_KEPT);
  private readonly pullsByRepository = new Map<string, number>();
  private readonly recent: PullRecord[] = [];
  private readonly sinks: TrafficSink[] = [];

  /** Also tells `sink` of everything counted from now on. */
  addSink(sink: TrafficSink): void {
    this.sinks.push(sink);
  }

  private current(now: number): MinuteCounters {
    const minute = now - (now % 60_000);
    const slot = Math.floor(minute / 60_000) % MINUTES_KEPT;
    let counters = this.ring[slot];
    if (!counters || counters.minute !== minute) {
      counters = { minute, requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 };
      this.ring[slot] = counters;
    }
    return counters;
  }

  /** One blob or manifest response; `bytes` is the body actually sent (0 for HEAD, 304, errors). */
  response(cache: CacheResult | undefined, bytes: number, now = Date.now()): void {
    for (const sink of this.sinks) sink.response(cache, bytes, now);
    const minute = this.current(now);
    this.totalsSinceStart.requests++;
    minute.requests++;
    if (cache === undefined) return;
    if (cache === 'miss') {
      this.totalsSinceStart.misses++;
      minute.misses++;
      this.totalsSinceStart.bytesFromUpstream += bytes;
      minute.bytesFromUpstream += bytes;
    } else {
      if (cache === 'hit') this.totalsSinceStart.hits++;
      else this.totalsSinceStart.stale++;
      minute.hits++;
      this.totalsSinceStart.bytesFromCache += bytes;
      minute.bytesFromCache += bytes;
    }
  }

  /** A pull: a successful manifest request by tag (what `docker pull IMAGE:TAG` starts with). */
  pull(record: PullRecord): void {
    for (const sink of this.sinks) sink.pull(record);
    this.totalsSinceStart.pulls++;
    this.recent.unshift(record);
    if (this.recent.length > RECENT_PULLS) this.recent.pop();
    const count = (this.pullsByRepository.get(record.repository) ?? 0) + 1;
    this.pullsByRepository.set(record.repository, count);
    if (this.pullsByRepository.size > REPOSITORIES_TRACKED) {
      let least: string | undefined;
      let leastCount = Infinity;
      for (const [repository, pulls] of this.pullsByRepository) {
        if (pulls < leastCount && repository !== record.repository) [least, leastCount] = [repository, pulls];
      }
      if (least) this.pullsByRepository.delete(least);
    }
  }

  /** The totals since start (cheap: no minutes, no ranking). */
  totals(): Omit<TrafficSnapshot['totals'], 'hitRatio'> {
    return { ...this.totalsSinceStart };
  }

  /** The figures for the status page; `minutes` covers the last `window` minutes, oldest first. */
  snapshot(window = 60, now = Date.now()): TrafficSnapshot {
    const thisMinute = now - (now % 60_000);
    const minutes: MinuteCounters[] = [];
    for (let i = Math.min(window, MINUTES_KEPT) - 1; i >= 0; i--) {
      const minute = thisMinute - i * 60_000;
      const counters = this.ring[Math.floor(minute / 60_000) % MINUTES_KEPT];
      minutes.push(counters && counters.minute === minute ? { ...counters } : { minute, requests: 0, hits: 0, misses: 0, bytesFromCache: 0, bytesFromUpstream: 0 });
    }
    const answered = this.totalsSinceStart.hits + this.totalsSinceStart.misses + this.totalsSinceStart.stale;
    const topRepositories = [...this.pullsByRepository]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .slice(0, TOP_REPOSITORIES)
      .map(([repository, pulls]) => ({ repository, pulls }));
    return {
      since: this.since,
      totals: { ...this.totalsSinceStart, hitRatio: answered === 0 ? null : (this.totalsSinceStart.hits + this.totalsSinceStart.stale) / answered },
      minutes,
      topRepositories,
      recentPulls: this.recent.map((pull) => ({ ...pull })),
    };
  }
}
