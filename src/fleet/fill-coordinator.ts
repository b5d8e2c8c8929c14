/**
 * Coordination of upstream work between the instances of a fleet that share one store: who
 * downloads a cold blob, who checks a tag or fetches a manifest. Within one instance the proxy
 * stores already run one fill per blob and one lookup per tag or manifest; this extends that to
 * every instance.
 *
 * The local implementation (no Redis) always answers "yours": each instance works alone.
 * The Redis one (redis-fill-coordinator.ts) hands out leases.
 */
export interface FillCoordinator {
  /** Claims the fleet-wide download of a blob: ours to fetch, or another instance's to follow. */
  claimBlob(digest: string): Promise<BlobClaim>;
  /** What the holder of a blob's download has published, as a follower reads it. */
  blobHolder(digest: string): Promise<HolderState>;
  /**
   * Calls `onChange` when the holder of `digest`'s download may have changed its state
   * (started, committed, failed, abandoned), so a follower reads blobHolder once per change
   * instead of on a clock. A hint only: it may come for nothing, and one may be lost (Redis
   * pub/sub, a reconnection), so a follower still looks on a slow timer (HolderState's
   * `expiresInMs`). Answers the way to stop.
   */
  watchBlob(digest: string, onChange: () => void): () => void;
  /**
   * Runs `lookup`, an upstream request whose answer is a manifest digest (a tag's check, a
   * manifest's fetch by digest; undefined when it has nothing to share), once for the fleet:
   * when another instance ran it for `key` within `freshnessMs`, or is running it now, answers
   * that instance's digest without running `lookup`. Docker Hub counts every manifest GET as a
   * pull.
   */
  lookupOnce(key: string, freshnessMs: number, lookup: () => Promise<string | undefined>): Promise<string | undefined>;
  close(): Promise<void>;
}

/** `theirs`: another instance holds the download; `holder` when the claim could be read. */
export type BlobClaim = { kind: 'mine'; lease: BlobLease } | { kind: 'theirs'; holder?: FillHolder };

/**
 * Who holds a blob's download: an instance's name (INSTANCE_ID in storage/paths.ts) and the
 * epoch of its lease, unique among the claims of that digest. A lease names no path: where the
 * holder's bytes are follows from these and the digest (StorePaths.fillTemp), checked there.
 */
export interface FillHolder {
  instance: string;
  epoch: number;
}

/** The holder's side of a blob download. */
export interface BlobLease {
  /** The lease's epoch (see FillHolder); undefined without a fleet (no one follows). */
  readonly epoch?: number;
  /**
   * Aborted when the lease is known lost: Redis answered that another instance holds it now
   * (this one was paused, or cut off from Redis, past the lease). The download stops writing.
   */
  readonly lost: AbortSignal;
  /** Tells followers that the download started (upstream answered) and its size when known. */
  publish(size: number | undefined): Promise<void>;
  /**
   * The fence, asked just before the commit: whether the lease still holds this epoch (and it
   * is extended to cover the rename). A lost lease never commits: false when Redis says so, and
   * when Redis cannot be asked and the last word from it is older than the lease.
   */
  stillHeld(): Promise<boolean>;
  /** Ends the claim. `failed` with an error tells followers to fail as well; `abandoned` lets one of them try. */
  release(outcome: 'committed' | 'abandoned' | { failed: FillFailure }): Promise<void>;
}

/** What a failed holder tells its followers. */
export interface FillFailure {
  code: string;
  message: string;
  status?: number;
  /** The epoch of the lease whose download failed (followers of a later holder are unaffected). */
  epoch?: number;
}

export type HolderState =
  /**
   * Someone holds the claim (`holder` when it could be read); `started` once they have an
   * upstream response; `expiresInMs`: when the claim expires unless renewed (a dead holder's
   * followers look again then: an expiry publishes nothing).
   */
  | { kind: 'held'; holder?: FillHolder; started: boolean; size?: number; expiresInMs?: number }
  /** No claim: the blob is committed, or the holder failed (`failure`) or died. */
  | { kind: 'free'; failure?: FillFailure }
  /** The coordinator cannot tell now (Redis unreachable). */
  | { kind: 'unknown' };

/** A lease no one else can take: no fleet, or Redis unreachable at the claim (every instance works alone). */
export function unfencedLease(): BlobLease {
  return { lost: new AbortController().signal, publish: async () => {}, stillHeld: async () => true, release: async () => {} };
}


/** No fleet: every claim is this instance's, every lookup runs. */
export class LocalFillCoordinator implements FillCoordinator {
  async claimBlob(): Promise<BlobClaim> {
    return { kind: 'mine', lease: unfencedLease() };
  }

  async blobHolder(): Promise<HolderState> {
    return { kind: 'free' };
  }

  watchBlob(): () => void {
    return () => {};
  }

  lookupOnce(_key: string, _freshnessMs: number, lookup: () => Promise<string | undefined>): Promise<string | undefined> {
    return lookup();
  }

  async close(): Promise<void> {}
}
