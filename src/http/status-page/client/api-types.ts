/*
 * The part of each /api answer the page reads. The server's own types live in modules that
 * import Node (src/http/ops-router.ts statusDocument, src/browse/*, src/fleet/heartbeat.ts),
 * which this browser program cannot include; the e2e suites in a real browser hold the two
 * together.
 */

export interface RateLimit {
  remaining: number;
  limit?: number;
}

export interface Credentials {
  state: string;
  realm?: string;
}

export interface MinuteCounters {
  minute: number;
  requests: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

export interface PullRecord {
  at: number;
  repository: string;
  reference: string;
  digest?: string;
  cache: 'hit' | 'miss' | 'stale';
  /** The instance that served it (fleet-wide figures only). */
  instance?: string;
}

export interface Totals {
  hits: number;
  misses: number;
  stale: number;
  hitRatio: number | null;
  bytesFromUpstream: number;
  bytesSaved: number;
  pulls: number;
}

export interface Capacity {
  bytes: number;
  maxSize: number;
  highWatermark: number;
  lowWatermark: number;
  highBytes: number | null;
  lowBytes: number | null;
  disk: { free: number; total: number } | null;
  minFree: number;
  driver: string;
}

/** Whether a registry answered its last request or probe (src/upstream/upstream-registry.ts). */
export interface Reachability {
  state: 'unknown' | 'reachable' | 'unreachable';
  since: number;
  error?: string;
}

/** A registry's signature policy (proxy.signatures) and what it decided since start. */
export interface SignaturePolicy {
  rules: { name: string; repositories: string[]; mode: 'enforce' | 'warn'; keys: string[] }[];
  verified: number;
  refused: number;
  warned: number;
  lastRefusal: { repository: string; digest: string; reason: string; mode: 'enforce' | 'warn'; at: number } | null;
}

export interface StatusDocument {
  now: number;
  upstream: { url: string; rateLimit: RateLimit | null; credentials?: Credentials; reachability?: Reachability };
  registries?: { namespace: string; default: boolean; store: { repositories: number }; credentials?: Credentials; reachability?: Reachability; signatures?: SignaturePolicy | null }[];
  store: { bytes: number; blobs: number; repositories: number };
  capacity?: Capacity;
  eviction?: { scheduled: boolean; reason?: string; nextRun: number | null; running: boolean; lastPass: { startedAt: number; freed: number } | null };
  fillsInFlight: number;
  totals: Totals;
  minutes: MinuteCounters[];
  topRepositories: { repository: string; pulls: number }[];
  recentPulls: PullRecord[];
  /** Whose traffic the figures are: this instance's, or every instance's on the Redis. */
  scope: { kind: 'instance' } | { kind: 'fleet'; instances: number } | { kind: 'unavailable'; reason: string };
}

export interface InstanceView {
  id: string;
  state: 'alive' | 'gone';
  address: string;
  self: boolean;
  hostname: string;
  pid: number;
  version: string;
  uptimeS: number;
  fillsInFlight: number;
  lastSeen: number;
  stoppedAt?: number;
  /** The instance's own traffic since it started (absent from an older version's record). */
  traffic?: { pulls: number; hits: number; misses: number; bytesFromCache: number; bytesFromUpstream: number };
}

export interface FleetView {
  redis: 'ok' | 'none' | 'unavailable';
  intervalMs: number;
  expiryMs: number;
  instances: InstanceView[];
}

export interface Lifetime {
  lastAccess: number;
  expiresAt: number | null;
  expiry: 'ttl' | 'never' | 'pinned';
  pinnedBy?: { pattern: string; via: string };
}

export interface Platform {
  os?: string;
  architecture?: string;
  variant?: string;
}

export interface Page<T> {
  total: number;
  items: T[];
  next: string | null;
}

export interface RegistryRow {
  namespace: string;
  default: boolean;
  url: string;
  repositories: number;
}

export interface RepositoryRow {
  name: string;
  tags: number;
  manifests: number;
}

export interface TagRow {
  tag: string;
  digest?: string;
  manifest?: { kind: string; mediaType: string; size: number; platforms: Platform[] };
  tagLifetime: Lifetime;
  lifetime?: Lifetime;
}

export interface TagPage extends Page<TagRow> {
  untagged: number;
  ttlMs: number;
}

export interface BlobSummary {
  digest: string;
  size: number;
  stored: boolean;
}

export interface ManifestSummary {
  kind: 'index' | 'image' | 'unknown';
  mediaType: string;
  size: number;
  platform?: Platform;
  config?: BlobSummary;
  layers: BlobSummary[];
  platforms?: { platform: Platform; digest: string; size: number; stored: boolean; layers: BlobSummary[] }[];
}

export interface ManifestView {
  digest: string;
  tags: string[];
  summary: ManifestSummary;
  lifetime: Lifetime;
  platforms: { digest: string; lifetime: Lifetime; linked: boolean }[];
}

export interface PassRecord {
  startedAt: number;
  durationMs: number;
  outcome: 'done' | 'failed';
  error?: string;
  removed: { tags: number; manifests: number; blobs: number };
  first: { tags: string[]; manifests: string[]; blobs: string[] };
  freed: number;
}

export interface EvictionView {
  scheduled: boolean;
  schedule: string;
  reason?: string;
  nextRun: number | null;
  running: boolean;
  passes: PassRecord[];
}

export interface EvictionPreview {
  computedAt: number;
  durationMs: number;
  counts: { tags: number; manifests: number; blobs: number };
  bytesToFree: number;
  sizeBefore: number;
  sizeAfter: number;
  capUnreached: boolean;
  truncated: boolean;
  note?: string;
  graceHeld?: { tags: number; links: number; blobs: number; bytes: number; until?: number };
  tags: { repository: string; tag: string; reason: string }[];
  manifests: { repository: string; digest: string; reason: string; lastAccess: number }[];
  blobs: { digest: string; size: number }[];
  pinned: { repository: string; tag?: string; digest?: string; pattern: string }[];
  pinnedCounts: { tags: number; manifests: number };
}
