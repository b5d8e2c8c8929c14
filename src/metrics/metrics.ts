import { watermarkBytes } from '../eviction/plan.ts';
import { readdirSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/*
 * Every Prometheus metric of the mirror, in one registry. Metrics are module singletons so
 * any module (the upstream client, the token cache, the eviction sweep) can import the one it
 * moves without plumbing; figures that already live in an object (fills in flight, Docker
 * Hub's allowance, the store's size) are read at scrape time through `bindSources`.
 */
export const metricsRegistry = new Registry();

/** One series of a tallied counter: its label values and a plain number the hot path bumps. */
export interface TallyCell {
  readonly labels: Record<string, string>;
  value: number;
}

/**
 * A counter for the per-request path: callers keep a cell per label set and add to its plain
 * `value`; prom-client sees the totals only when Prometheus scrapes. (prom-client's own inc()
 * hashes and validates the labels on every call, which the warm blob path should not pay.)
 */
export class Tally {
  private readonly cells = new Map<string, TallyCell>();
  private readonly labelNames: readonly string[];

  constructor(options: { name: string; help: string; labelNames: readonly string[] }) {
    this.labelNames = options.labelNames;
    const cells = this.cells;
    new Counter({
      name: options.name,
      help: options.help,
      labelNames: options.labelNames,
      registers: [metricsRegistry],
      collect() {
        this.reset();
        for (const cell of cells.values()) this.inc(cell.labels, cell.value);
      },
    });
  }

  /** The cell of one label set (values in labelNames order); keep it and add to `value`. */
  cell(...values: string[]): TallyCell {
    const key = values.join('\u0000');
    let cell = this.cells.get(key);
    if (!cell) {
      cell = { labels: Object.fromEntries(this.labelNames.map((name, i) => [name, values[i]])), value: 0 };
      this.cells.set(key, cell);
    }
    return cell;
  }
}

/** Responses, by route of the registry API (or ops endpoint), method and status. */
export const httpRequests = new Tally({
  name: 'pullmirror_http_requests_total',
  help: 'HTTP responses by route, method and status',
  labelNames: ['route', 'method', 'status'],
});

/** Blob and manifest responses by how they were served (X-Pullmirror-Cache). */
export const cacheResults = new Tally({
  name: 'pullmirror_cache_requests_total',
  help: 'Blob and manifest responses by kind, cache result (hit, miss, stale) and registry (its namespace)',
  labelNames: ['kind', 'result', 'registry'],
});

/** Body bytes sent to clients, by where they came from: the local store or a fill from upstream. */
export const servedBytes = new Tally({
  name: 'pullmirror_served_bytes_total',
  help: 'Blob and manifest body bytes sent to clients, by source (cache or upstream)',
  labelNames: ['source'],
});

/**
 * Bytes of blobs being downloaded sent to clients, by where the send took them: `memory` (the
 * fill's chunks as they arrived: the client kept up) or `file` (read back from the temporary
 * file: the client fell behind, or joined late).
 */
export const fillSentBytes = new Tally({
  name: 'pullmirror_fill_sent_bytes_total',
  help: 'Bytes of blobs being downloaded sent to clients, by where they were taken from (memory: as they arrived; file: read back from the temporary file)',
  labelNames: ['from'],
});

/** Time from sending an upstream request to its response headers. */
export const upstreamDuration = new Histogram({
  name: 'pullmirror_upstream_request_duration_seconds',
  help: 'Upstream registry requests: time to response headers, by registry (its namespace), method and status',
  labelNames: ['registry', 'method', 'status'] as const,
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [metricsRegistry],
});

/** Bearer tokens fetched from the upstream's token server (cached ones are not counted). */
export const tokensFetched = new Counter({
  name: 'pullmirror_upstream_tokens_fetched_total',
  help: 'Bearer tokens fetched from the upstream token server',
  registers: [metricsRegistry],
});

/**
 * Client logins refused: `failed` (wrong user or password), `throttled` (too many failures from
 * the address or for the user name, auth.htpasswd.throttle), `busy` (the bcrypt queue was full).
 */
export const loginRefusals = new Counter({
  name: 'pullmirror_login_refusals_total',
  help: 'Client logins refused, by reason (failed, throttled, busy)',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});

/**
 * Content removed from the store by eviction (TTL, size cap); the eviction sweep increments
 * it with the kind it removed (blob, manifest, tag) and the bytes freed.
 */
export const evictions = new Counter({
  name: 'pullmirror_evictions_total',
  help: 'Items evicted from the store, by kind',
  labelNames: ['kind'] as const,
  registers: [metricsRegistry],
});

/** Bytes freed by eviction. */
export const evictedBytes = new Counter({
  name: 'pullmirror_evicted_bytes_total',
  help: 'Bytes freed by eviction',
  registers: [metricsRegistry],
});

/**
 * Manifests checked against a signature policy (proxy.signatures), by registry and result:
 * `verified`, `refused` (enforce), `warned` (warn mode let through what enforce would refuse).
 */
export const signatureChecks = new Counter({
  name: 'pullmirror_signature_checks_total',
  help: 'Manifests checked against a signature policy, by registry (its namespace) and result (verified, refused, warned)',
  labelNames: ['registry', 'result'] as const,
  registers: [metricsRegistry],
});

/**
 * Storage driver operations (src/storage/driver/metered-driver.ts), for every driver alike: by
 * driver (filesystem, s3), operation (getContent, commitFile, open, send, walk, …) and result
 * (`ok`, or the fault: unavailable, denied, full, missing-store, invalid-key, too-large).
 */
export const storageOperations = new Tally({
  name: 'pullmirror_storage_operations_total',
  help: 'Storage driver operations by driver, operation and result (ok or the fault)',
  labelNames: ['driver', 'operation', 'result'],
});

/** How long storage driver operations take (a listing: the whole walk; send: the whole body). */
export const storageOperationSeconds = new Histogram({
  name: 'pullmirror_storage_operation_seconds',
  help: 'Storage driver operations: time taken, by driver and operation',
  labelNames: ['driver', 'operation'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
  registers: [metricsRegistry],
});

/**
 * HTTP requests the s3 driver sent, by S3 request (GetObject, PutObject, UploadPart, …), retries
 * included: what a warm pull costs in requests (about one GetObject per blob).
 */
export const s3Requests = new Tally({
  name: 'pullmirror_s3_requests_total',
  help: 'HTTP requests sent to S3 by the s3 storage driver, by request (retries included)',
  labelNames: ['request'],
});

/** Figures that live elsewhere and are read when Prometheus scrapes. */
export interface MetricSources {
  fillsInFlight: () => number;
  rateLimit(): { remaining: number; limit?: number; windowS: number } | undefined;
  /** The store's figures as the serving process keeps them (never a disk walk per scrape). */
  store(): { blobs: number; bytes: number };
}

let sources: MetricSources | undefined;

let credentialsSource: (() => { state: string }) | undefined;

/** Connects the credentials gauge to the upstream whose credentials it reports. */
export function bindCredentialsSource(next: () => { state: string }): void {
  credentialsSource = next;
}

/** Connects the scrape-time gauges to a running mirror (the last one bound wins). */
export function bindSources(next: MetricSources): void {
  sources = next;
}

new Gauge({
  name: 'pullmirror_blob_fills_in_flight',
  help: 'Blob downloads from upstream in progress (each shared by every client that wants the blob)',
  registers: [metricsRegistry],
  collect() {
    this.set(sources?.fillsInFlight() ?? 0);
  },
});

new Gauge({
  name: 'pullmirror_upstream_credentials_refused',
  help: "1 while the upstream refuses the mirror's credentials (pulls go anonymously meanwhile), else 0",
  registers: [metricsRegistry],
  collect() {
    this.set(credentialsSource?.().state === 'refused' ? 1 : 0);
  },
});

new Gauge({
  name: 'pullmirror_upstream_ratelimit_remaining',
  help: 'Pulls Docker Hub said remain (ratelimit-remaining), labelled with its window in seconds; absent until seen',
  labelNames: ['window'] as const,
  registers: [metricsRegistry],
  collect() {
    this.reset();
    const limit = sources?.rateLimit();
    if (limit) this.labels(String(limit.windowS)).set(limit.remaining);
  },
});

new Gauge({
  name: 'pullmirror_upstream_ratelimit_limit',
  help: 'Pulls Docker Hub allows (ratelimit-limit), labelled with its window in seconds; absent until seen',
  labelNames: ['window'] as const,
  registers: [metricsRegistry],
  collect() {
    this.reset();
    const limit = sources?.rateLimit();
    if (limit?.limit !== undefined) this.labels(String(limit.windowS)).set(limit.limit);
  },
});

new Gauge({
  name: 'pullmirror_store_bytes',
  help: 'Bytes of verified content in the store (kept current as blobs are stored and evicted; during the first walk after start, what it counted so far)',
  registers: [metricsRegistry],
  collect() {
    if (sources) this.set(sources.store().bytes);
  },
});

new Gauge({
  name: 'pullmirror_store_blobs',
  help: 'Blobs (layers, configs, manifests) in the store (kept current as blobs are stored and evicted)',
  registers: [metricsRegistry],
  collect() {
    if (sources) this.set(sources.store().blobs);
  },
});

let processOn = false;

/**
 * Process figures (CPU, memory, open files, start time) read at scrape time. prom-client's
 * collectDefaultMetrics is not used: its GC observer and event-loop monitor run all the time,
 * and the warm blob path is benchmarked.
 */
export function collectProcessMetrics(): void {
  if (processOn) return;
  processOn = true;
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'User and system CPU time spent, in seconds',
    registers: [metricsRegistry],
    collect() {
      const usage = process.cpuUsage();
      this.reset();
      this.inc((usage.user + usage.system) / 1e6);
    },
  });
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes',
    registers: [metricsRegistry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'nodejs_heap_used_bytes',
    help: 'V8 heap in use, in bytes',
    registers: [metricsRegistry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: 'process_open_fds',
    help: 'Open file descriptors (Linux)',
    registers: [metricsRegistry],
    collect() {
      try {
        this.set(readdirSync('/proc/self/fd').length);
      } catch {
        // not Linux: left out
      }
    },
  });
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since the epoch, in seconds',
    registers: [metricsRegistry],
    collect() {
      this.set(startSeconds);
    },
  });
}

/*
 * Figures the alert rules and the dashboard (deploy/prometheus, deploy/grafana) need that the
 * metrics above do not give: whether an upstream answers at all, whether fills fail, and the
 * store's cap, so "past the high watermark" is one comparison in PromQL.
 */

/**
 * 1 while the last exchange with a registry's upstream (a request, or a readiness probe, which
 * a load balancer or kubelet keeps asking) got an HTTP answer of any status; 0 after a network
 * error or timeout. Absent until that upstream was first asked.
 */
export const upstreamReachable = new Gauge({
  name: 'pullmirror_upstream_reachable',
  help: 'Whether the last request to the upstream (by registry, its namespace) got an HTTP answer (1) or failed to connect or timed out (0)',
  labelNames: ['registry'] as const,
  registers: [metricsRegistry],
});

/**
 * Blob downloads from upstream that ended, by result: `committed` (verified and stored) or
 * `failed`. A download counts once upstream answered it (a BlobFill); one refused before that is
 * an upstream error (pullmirror_upstream_reachable, the request-duration statuses).
 */
export const blobFills = new Counter({
  name: 'pullmirror_blob_fills_total',
  help: 'Blob downloads from upstream that ended, by result (committed: verified and stored; failed: cut off for good, digest mismatch or store failure)',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
// Both series exist from the start, so rate() over them has a baseline before the first failure.
blobFills.labels('committed').inc(0);
blobFills.labels('failed').inc(0);

/**
 * Fleet leases on blob downloads this instance held and lost: Redis gave the download to
 * another instance (this one was paused, or cut off from Redis past redis.fleet.lease, or the
 * lease vanished in a Redis failover). The download went on for this instance's clients, who
 * get verified bytes, and was not committed: each is one more upstream fetch of the blob's rest.
 */
export const fleetLeasesLost = new Counter({
  name: 'pullmirror_fleet_leases_lost_total',
  help: 'Blob download leases this instance lost to another instance (paused, cut off from Redis past the lease, or a Redis failover); the download went on for its own clients, uncommitted: a duplicate upstream fetch',
  registers: [metricsRegistry],
});

/**
 * Upstream fetches of a blob another instance was downloading already: the uplink carried
 * (part of) it twice. By reason: `peer_unreachable` (the holder's peer listener not reached
 * within redis.fleet.peers.fallback), `peer_refused` (it answered 401: a secret not shared),
 * `peer_failed` (its stream broke: the holder died or the link did), `peer_stalled` (no byte
 * within redis.fleet.peers.timeout), `peer_bad_bytes` (what it sent did not match the digest),
 * `lease_lost` (this instance lost its lease and finished its download uncommitted, while the
 * new holder fetches it again; or, on a store of its own, committed it while an instance on
 * another store holds the claim and fetches it again).
 */
export const fleetDuplicateFetches = new Counter({
  name: 'pullmirror_fleet_duplicate_fetches_total',
  help: 'Upstream fetches of a blob another instance of the fleet was downloading already, by reason (peer_unreachable, peer_refused, peer_failed, peer_stalled, peer_bad_bytes, lease_lost)',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});
for (const reason of ['peer_unreachable', 'peer_refused', 'peer_failed', 'peer_stalled', 'peer_bad_bytes', 'lease_lost']) fleetDuplicateFetches.labels(reason).inc(0);

/** Requests to the peer listener (redis.fleet.peers) refused for their credentials. */
export const peerAuthFailures = new Counter({
  name: 'pullmirror_peer_auth_failures_total',
  help: 'Requests to the peer listener refused with 401, by reason (missing, malformed, expired, forged)',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});
for (const reason of ['missing', 'malformed', 'expired', 'forged']) peerAuthFailures.labels(reason).inc(0);

let storeLimits: { maxBytes: number; highWatermarkBytes: number } | undefined;

/** Connects the store-cap gauges to the eviction settings (storage.eviction.maxsize and highwatermark). */
export function bindStoreLimits(eviction: { maxsize: number; highwatermark: number }): void {
  storeLimits = { maxBytes: eviction.maxsize, highWatermarkBytes: watermarkBytes(eviction.maxsize, eviction.highwatermark) };
}

new Gauge({
  name: 'pullmirror_store_max_bytes',
  help: 'The size cap of the store (storage.eviction.maxsize); 0 when there is none',
  registers: [metricsRegistry],
  collect() {
    this.set(storeLimits?.maxBytes ?? 0);
  },
});

new Gauge({
  name: 'pullmirror_store_high_watermark_bytes',
  help: 'Bytes past which eviction removes least recently used images (highwatermark percent of maxsize); 0 without a cap',
  registers: [metricsRegistry],
  collect() {
    this.set(storeLimits?.highWatermarkBytes ?? 0);
  },
});
