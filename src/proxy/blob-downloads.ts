import type { DescriptorCache } from '../cache/descriptor-cache.ts';
import { LocalFillCoordinator, unfencedLease, type BlobLease, type FillCoordinator, type FillHolder } from '../fleet/fill-coordinator.ts';
import { holderStart } from '../fleet/holder-start.ts';
import type { PeerClient } from '../fleet/peer-client.ts';
import { fillFailureOf } from '../fleet/fill-failure.ts';
import { awaitNextHolder } from '../fleet/next-holder.ts';
import { openPeerFallbackBody, type BlobSources, type PeerFallbackOptions } from '../fleet/peer-fallback-body.ts';
import { RemoteFill } from '../fleet/remote-fill.ts';
import type { Logger } from '../logging/logger.ts';
import { fleetDuplicateFetches } from '../metrics/metrics.ts';
import { RegistryError } from '../registry/errors.ts';
import { isStoreUnwritable, type BlobStore, type BlobWriter } from '../storage/blob-store.ts';
import type { BlobSource } from '../storage/readable-blob-store.ts';
import { BlobFill, type FillBody, type FillFence } from './blob-fill.ts';
import { PassThroughSource } from './pass-through.ts';
import { PeerCopies, type FleetStores, type PeerBodies } from './peer-copies.ts';
import { fillSource, type SharedFill } from './shared-fill.ts';
import type { StoreAdmission } from './store-admission.ts';
import { getUpstreamBlob, ResumableBlobBody, type ResumePolicy, type UpstreamBlobRef, type UpstreamBlobResponse } from './upstream-blob.ts';

/** How a cold blob's download started: a fill others can share, or one client's pass-through. */
type Started = { kind: 'fill'; fill: SharedFill } | { kind: 'pass-through'; first: UpstreamBlobResponse };

/**
 * Everything about blobs the store does not hold yet: one download per digest, whatever the
 * number of clients (and, in a fleet, of instances), each client reading it as it lands.
 *
 * A download is one of:
 * - a fill this instance runs (BlobFill: upstream GET, resume, writer, verify, commit or abort),
 * - a fill another instance runs, followed from the shared store (fleet/RemoteFill: from its
 *   spool file on a shared volume, else once it is committed), which this instance takes over
 *   if that one dies,
 * - a pass-through to one client when the store cannot take the blob (StoreAdmission): every
 *   client then has its own, since no file is there to share.
 * Every one of them is tracked until it ends, so an eviction pass never deletes a blob being
 * filled and a graceful stop waits for all of them.
 */
export class BlobDownloads {
  private readonly blobs: BlobStore;
  private readonly admission: StoreAdmission;
  private readonly descriptors: DescriptorCache;
  private readonly fleet: FillCoordinator;
  private readonly peers?: PeerClient;
  private readonly peerFallbackMs: number;
  private readonly fleetStallMs: number;
  /** Copies from instances on other stores (a named fleet on disks of their own). */
  private readonly copies?: PeerCopies;
  private readonly resume: ResumePolicy;
  private readonly resumeFor?: (upstream: UpstreamBlobRef['upstream']) => ResumePolicy | undefined;
  private readonly logger: Logger;
  /** Shareable fills by digest; undefined once the start turned out to be a pass-through. */
  private readonly fills = new Map<string, Promise<SharedFill | undefined>>();
  /** The fills this instance runs itself (not those it follows), until they end: what peers may tail. */
  private readonly own = new Map<string, BlobFill>();
  /** The copies of other instances' downloads this instance streams from them, until they end: what a takeover adopts. */
  private readonly streamed = new Map<string, BlobFill>();
  /** Every download in flight (fills and pass-throughs), settled when it ends. */
  private readonly running = new Set<Promise<unknown>>();
  /** Told when a download starts or ends (the fleet heartbeat publishes the count at once). */
  private readonly inFlightWatchers: (() => void)[] = [];

  constructor(options: {
    blobs: BlobStore;
    admission: StoreAdmission;
    descriptors: DescriptorCache;
    logger: Logger;
    resume?: ResumePolicy;
    /** A registry's own policy (proxy.remotes[].resume), when it has one; `resume` otherwise. */
    resumeFor?: (upstream: UpstreamBlobRef['upstream']) => ResumePolicy | undefined;
    fleet?: FillCoordinator;
    /** Other instances' downloads, read from their peer listeners (redis.fleet.peers) where spools are private. */
    peers?: PeerClient;
    /** How long a holder that cannot be reached as a peer is tried before this instance fetches upstream itself. */
    peerFallbackMs?: number;
    /** How long a followed download may show no sign of life before this instance takes over. */
    fleetStallMs?: number;
    /** A fleet whose instances may serve stores other than this one's (redis.fleet.name, with peers). */
    stores?: FleetStores;
  }) {
    this.blobs = options.blobs;
    this.admission = options.admission;
    this.descriptors = options.descriptors;
    this.logger = options.logger;
    this.resume = options.resume ?? { retries: 3, backoffMs: 250 };
    this.resumeFor = options.resumeFor;
    this.fleet = options.fleet ?? new LocalFillCoordinator();
    this.peers = options.peers;
    this.fleetStallMs = options.fleetStallMs ?? 10_000;
    this.peerFallbackMs = options.peerFallbackMs ?? 3_000;
    const bodies: PeerBodies = {
      ofDownload: (ref, holder) => this.peerBody(ref, { holder, ...this.downloadSources(ref, holder) }),
      ofOpened: (ref, from) => this.peerBody(ref, from),
    };
    this.copies = options.stores && new PeerCopies({ peers: options.peers, bodies, stores: options.stores, admission: options.admission, blobs: options.blobs, logger: options.logger });
  }

  /** Whether a blob is being downloaded into the store (an eviction pass must not delete it). */
  isFilling(digest: string): boolean {
    return this.fills.has(digest);
  }

  /**
   * This instance's own download of a blob in flight, for a peer to read as it lands
   * (redis.fleet.peers); undefined when it runs none (one it follows is another instance's to serve).
   */
  ownFill(digest: string): SharedFill | undefined {
    return this.own.get(digest);
  }

  /** Downloads in flight, pass-throughs included. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Calls `watcher` whenever `inFlight` changes. */
  watchInFlight(watcher: () => void): void {
    this.inFlightWatchers.push(watcher);
  }

  private inFlightChanged(): void {
    for (const watcher of this.inFlightWatchers) watcher();
  }

  /** Resolves once no download is in flight (a graceful stop). */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** The size of a blob being filled, for a HEAD; undefined when none is (or it passes through). */
  async fillSize(digest: string): Promise<number | undefined> {
    const fill = await this.fills.get(digest)?.catch(() => undefined);
    return fill?.size;
  }

  /** The store failed a read: new blobs pass through for a while (StoreAdmission). */
  storeFailed(error: unknown): void {
    this.admission.failed(error);
  }

  /** A source for a blob the store lacks: the fill in flight, a new one, or a pass-through. */
  async open(ref: UpstreamBlobRef): Promise<BlobSource> {
    const digest = ref.digest.value;
    const joined = this.fills.get(digest);
    if (joined) {
      const fill = await joined;
      return fill ? fillSource(digest, fill) : this.passThrough(ref, await getUpstreamBlob(ref));
    }
    const starting = this.start(ref);
    const shared = starting.then((started) => (started.kind === 'fill' ? started.fill : undefined));
    shared.catch(() => {});
    this.fills.set(digest, shared);
    // Seen by isFilling() and drain() from the first moment: the start, then the fill to its end.
    this.track(
      shared.then((fill) => fill?.done),
      () => {
        if (this.fills.get(digest) === shared) this.fills.delete(digest);
      },
    );
    let started: Started;
    try {
      started = await starting;
    } catch (error) {
      this.fills.delete(digest);
      throw error;
    }
    if (started.kind === 'pass-through') {
      this.fills.delete(digest);
      return this.passThrough(ref, started.first);
    }
    started.fill.done.then(
      (descriptor) => {
        this.logger.info('blob cached', { digest, size: descriptor.size });
        void this.descriptors.set(descriptor).catch(() => {});
        this.copies?.committed(digest);
      },
      (error: Error) => {
        this.admission.failed(error);
        this.logger.warn('blob fill failed', { digest, error: error.message });
      },
    );
    return fillSource(digest, started.fill);
  }

  private track(work: Promise<unknown>, after?: () => void): void {
    const tracked = work.catch(() => {}).finally(() => {
      this.running.delete(tracked);
      this.inFlightChanged();
      after?.();
    });
    this.running.add(tracked);
    this.inFlightChanged();
  }

  private passThrough(ref: UpstreamBlobRef, first: UpstreamBlobResponse): BlobSource {
    this.logger.warn('store cannot take the blob: passing it through uncached', { digest: ref.digest.value, size: first.size });
    let settle!: () => void;
    // Tracked until the client's transfer ends or the source is let go unsent (HEAD, 304, 416):
    // the source releases itself at the end of send() too.
    this.track(new Promise<void>((resolve) => (settle = resolve)));
    return new PassThroughSource(ref.digest, this.body(ref, first), settle);
  }

  /** The fleet decides: this instance downloads, or follows the instance that does. */
  private async start(ref: UpstreamBlobRef): Promise<Started> {
    // A store failing here can neither take the blob nor, should the holder give up, take its
    // download over: pass it through at once rather than follow.
    if (this.admission.failing) return { kind: 'pass-through', first: await getUpstreamBlob(ref) };
    const claim = await this.fleet.claimBlob(ref.digest.value);
    if (claim.kind === 'mine') return this.download(ref, claim.lease);
    if (this.copies && (await this.copies.onAnotherStore(claim.holder))) return this.followAcrossStores(this.copies, ref, claim.holder);
    this.logger.info('following a blob download of another instance', { digest: ref.digest.value });
    const remote = new RemoteFill({
      digest: ref.digest.value,
      committedFile: this.blobs.committedFile(ref.digest),
      committedSize: async () => (await this.blobs.stat(ref))?.size,
      openCommitted: () => this.blobs.openObject(ref.digest),
      coordinator: this.fleet,
      holder: claim.holder,
      // The holder's file follows from its name and epoch, checked against what an instance
      // writes; none when spools are not shared.
      fileOf: (holder) => this.blobs.fillFile(holder.instance, ref.digest, holder.epoch),
      stallMs: this.fleetStallMs,
      logger: this.logger,
      takeOver: (abandoned) => this.takeOver(ref, abandoned),
      // Spools not shared (a bucket): rather than wait for the commit, read the holder's download from its peer listener.
      fromPeer: this.peers && this.blobs.committedFile(ref.digest) === undefined ? (holder, options) => this.fromPeer(ref, holder, options) : undefined,
    });
    await remote.ready;
    return { kind: 'fill', fill: remote };
  }

  /**
   * Another instance's download, streamed from its peer listener into a fill of this
   * instance's own spool, verified and not committed (the holder commits) unless this instance
   * takes the download over (`takeOver` adopts it). Should the peer fail on the way, or not be
   * reached within redis.fleet.peers.fallback, the bytes come from upstream (PeerFallbackBody);
   * `avoidPeer`: a copy from it did not verify, upstream at once. Undefined when the holder has
   * nothing to stream, the blob was stored meanwhile, or the spool cannot take the blob: the
   * followers then wait for the commit.
   */
  private async fromPeer(ref: UpstreamBlobRef, holder: FillHolder, options: { avoidPeer?: boolean } = {}): Promise<SharedFill | undefined> {
    const digest = ref.digest.value;
    const body = await this.peerBody(ref, { holder, ...this.downloadSources(ref, holder), avoidPeer: options.avoidPeer ? 'peer_bad_bytes' : undefined });
    if (!body) {
      this.logger.info('holder has nothing to stream; waiting for its commit', { digest, instance: holder.instance });
      return undefined;
    }
    const writer = await this.admission.writerFor(ref.digest, body.size).catch(() => undefined);
    if (!writer) {
      body.close();
      return undefined;
    }
    this.logger.info('streaming a blob download from the instance that holds it', { digest, instance: holder.instance });
    const fill = new BlobFill({ digest, size: body.size, writer, openCommitted: () => this.blobs.openObject(ref.digest), body, commit: false });
    this.streamed.set(digest, fill);
    fill.done
      .finally(() => {
        if (this.streamed.get(digest) === fill) this.streamed.delete(digest);
      })
      .catch((error: Error) => this.logger.warn('blob stream from a peer failed', { digest, instance: holder.instance, error: error.message }));
    return fill;
  }

  /** The download `holder` runs, read from its peer listener; should it die, its next holder's once the lease moved. */
  private downloadSources(ref: UpstreamBlobRef, holder: FillHolder): Pick<BlobSources, 'peer' | 'nextPeer'> {
    const digest = ref.digest.value;
    const peerOf = (instance: string) => (offset: number, signal: AbortSignal) => this.peers!.openBlob(instance, ref.digest, { offset, signal });
    return {
      peer: peerOf(holder.instance),
      // A holder that died: the lease moves to whichever follower takes over (this one's own download: `own`).
      nextPeer: async (after, withinMs) => {
        const next = await awaitNextHolder({ coordinator: this.fleet, digest, from: after, withinMs, mine: () => this.own.has(digest) });
        return next && { holder: next, peer: peerOf(next.instance) };
      },
    };
  }

  /**
   * A blob's bytes from peers (`from`), turning to upstream from the offset reached should they
   * fail (openPeerFallbackBody): the one place such a body is built, for the downloads followed
   * on a shared bucket (fromPeer) and the copies between stores of their own (PeerCopies).
   */
  private peerBody(
    ref: UpstreamBlobRef,
    from: Pick<BlobSources, 'peer' | 'nextPeer'> & Pick<PeerFallbackOptions, 'holder' | 'opened' | 'avoidPeer'>,
  ): Promise<FillBody | undefined> {
    const digest = ref.digest.value;
    const { peer, nextPeer, ...options } = from;
    return openPeerFallbackBody({
      ...options,
      sources: {
        peer,
        nextPeer,
        upstream: async (offset) => {
          const first = await getUpstreamBlob(ref, offset);
          return { body: this.body(ref, first), offset: first.offset };
        },
      },
      fallbackMs: this.peerFallbackMs,
      stored: async () => (await this.blobs.stat(ref).catch(() => undefined)) !== undefined,
      onFallback: (reason, info) => this.logger.warn('holder not readable as a peer; fetching upstream', { digest, instance: from.holder?.instance, reason, ...info }),
      onSwitch: (info) => this.logger.info('streaming from the new holder of a download', { digest, ...info }),
    });
  }

  /**
   * The holder of a followed download died: claim it, and go on with the copy streamed from it
   * when there is one (its bytes are this instance's; its body turns to upstream once the dead
   * holder's stream fails), else resume from the holder's file when there.
   */
  private async takeOver(ref: UpstreamBlobRef, abandoned: string | undefined): Promise<SharedFill | undefined> {
    const again = await this.fleet.claimBlob(ref.digest.value);
    if (again.kind === 'theirs') return undefined;
    const streamed = this.streamed.get(ref.digest.value);
    if (streamed?.adopt(again.lease)) {
      this.logger.info('the copy streamed from a dead instance goes on as this instance\'s download', { digest: ref.digest.value });
      // Known as this instance's own before the others (and its own body, awaitNextHolder) hear of it.
      this.runOwn(ref.digest.value, streamed, again.lease, true);
      await again.lease.publish(streamed.size);
      return streamed;
    }
    const started = await this.download(ref, again.lease, abandoned);
    if (started.kind === 'fill') return started.fill;
    started.first.body.destroy();
    throw new RegistryError('UNAVAILABLE', 'store unwritable while taking a download over');
  }

  /**
   * This instance's own upstream download, under the fleet claim `lease`; resumed from the
   * `abandoned` temp file of a dead holder when one is given and still there. Whatever fails
   * on the way releases the claim, aborts the writer and destroys the upstream body.
   */
  private async download(ref: UpstreamBlobRef, lease: BlobLease, abandoned?: string): Promise<Started> {
    const digest = ref.digest.value;
    let writer: BlobWriter | undefined;
    let first: UpstreamBlobResponse | undefined;
    try {
      if (!abandoned) {
        // No one fills it: an instance on another store may hold it already (who holds what).
        const copied = await this.fromRecordedHolders(ref, lease);
        if (copied) return copied;
      }
      writer = abandoned ? await this.resumeFrom(ref, abandoned, lease.epoch) : undefined;
      if (writer && writer.written > 0) {
        first = await getUpstreamBlob(ref, writer.written).catch(() => undefined);
        if (first) this.logger.info('resuming the download of a dead instance', { digest, offset: writer.written });
        // Refused (a 416: the dead holder had every byte, or a Range-less error): start over.
        else await writer.reset();
      }
      first ??= await getUpstreamBlob(ref);
      writer ??= await this.admission.writerFor(ref.digest, first.size, lease.epoch);
    } catch (error) {
      first?.body.destroy();
      await writer?.abort();
      await lease.release({ failed: fillFailureOf(error) });
      throw error;
    }
    if (!writer) {
      // Followers cannot tail a pass-through: let one of them try its own store.
      await lease.release('abandoned');
      return { kind: 'pass-through', first };
    }
    await lease.publish(first.size);
    this.logger.info('blob fill started', { digest, size: first.size, repository: ref.name });
    const fill = new BlobFill({
      digest,
      size: first.size,
      writer,
      openCommitted: () => this.blobs.openObject(ref.digest, first.size),
      body: this.body(ref, first),
      fence: this.copies ? this.ownStoreFence(this.copies, digest, lease) : lease,
    });
    return this.runOwn(digest, fill, lease);
  }

  /**
   * A fill this instance runs under `lease`: readable by peers while it runs, the lease released
   * as it ends. `fromPeer`: its bytes come from another instance, whose failure says nothing of
   * upstream's blob: followers are not failed with it, one of them fetches it.
   */
  private runOwn(digest: string, fill: BlobFill, lease: BlobLease, fromPeer = false): Started {
    this.own.set(digest, fill);
    fill.done
      .finally(() => {
        if (this.own.get(digest) === fill) this.own.delete(digest);
      })
      .catch(() => {});
    fill.done.then(
      () => lease.release('committed'),
      // A store that failed (the commit to an unreachable bucket, a full spool) says nothing of
      // the blob: followers are not failed with it, one of them takes the download over.
      (error: unknown) => lease.release(fromPeer || isStoreUnwritable(error) ? 'abandoned' : { failed: fillFailureOf(error) }),
    );
    return { kind: 'fill', fill };
  }

  private body(ref: UpstreamBlobRef, first: UpstreamBlobResponse): ResumableBlobBody {
    return new ResumableBlobBody(ref, first, this.resumeFor?.(ref.upstream) ?? this.resume, (info) =>
      this.logger.warn('upstream transfer interrupted; resuming', { digest: ref.digest.value, ...info }),
    );
  }

  /**
   * Another instance downloads the blob into a store of its own: this one copies the download
   * from that instance's peer listener as it lands, into a fill of its own that verifies the
   * digest and commits into this store (its clients read it as it arrives). Waits for the holder
   * to start (its listener has nothing before); should the claim go away first, claims the
   * download; when the holder cannot be read as a peer, fetches upstream itself (one more copy
   * over the uplink, never a wait for a commit that would land in another store).
   */
  private async followAcrossStores(copies: PeerCopies, ref: UpstreamBlobRef, followed: FillHolder | undefined): Promise<Started> {
    const digest = ref.digest.value;
    // A few rounds at most: each one ends at a holder's start, its end, or the lease's time.
    for (let round = 0; round < 3; round++) {
      const state = await holderStart(this.fleet, digest, followed, this.fleetStallMs);
      if (state.kind === 'failed') throw state.error;
      if (state.kind === 'unknown') break;
      if (state.kind === 'free') {
        const claim = await this.fleet.claimBlob(digest);
        if (claim.kind === 'mine') return this.download(ref, claim.lease);
        followed = claim.holder;
        continue;
      }
      const fill = await copies.ofDownload(ref, state.holder);
      if (fill) return { kind: 'fill', fill };
      break;
    }
    // No lease: the holder keeps its own, and this store is this instance's to commit into.
    return this.download(ref, unfencedLease());
  }

  /**
   * No instance fills the blob and this one holds the claim: a store on the record of who holds
   * what is copied from before upstream is asked (PeerCopies.fromRecord), under this instance's
   * lease (followers read it from this instance as from an upstream download).
   */
  private async fromRecordedHolders(ref: UpstreamBlobRef, lease: BlobLease): Promise<Started | undefined> {
    const fill = await this.copies?.fromRecord(ref, lease);
    if (!fill) return undefined;
    const started = this.runOwn(ref.digest.value, fill, lease, true);
    // Followers learn it started once peers can read it here.
    await lease.publish(fill.size);
    return started;
  }

  /**
   * The commit's fence in a fleet whose instances may each have a store of their own. The lease
   * fences commits into a store other instances write too; a lease lost (in a Redis failover it
   * simply vanishes with the master) while the download goes on must not keep verified bytes out
   * of this instance's own store when no instance on this store holds the blob now: the blob
   * would else be missing here, and fetched again (from a peer or upstream) at the next pull.
   * Commits as the lease does while it holds; once lost, commits only when the claim is free or
   * held by an instance on another store (never when Redis cannot tell).
   */
  private ownStoreFence(copies: PeerCopies, digest: string, lease: BlobLease): FillFence {
    return {
      lost: lease.lost,
      stillHeld: async () => {
        // Asked only once lost: the lease's own fence counts a refusal as a duplicate fetch.
        if (!lease.lost.aborted) return lease.stillHeld();
        const now = await this.fleet.blobHolder(digest);
        const elsewhere = now.kind === 'held' && now.holder !== undefined && (await copies.onAnotherStore(now.holder));
        if (now.kind !== 'free' && !elsewhere) return lease.stillHeld();
        // An instance on another store holds the claim now: it fetches the blob again.
        if (elsewhere) fleetDuplicateFetches.labels('lease_lost').inc();
        this.logger.info('blob download lease lost, but no instance on this store holds it: committing into this store', { digest });
        return true;
      },
    };
  }

  /** Goes on from a copy of a dead holder's temp file; undefined when it is gone. */
  private async resumeFrom(ref: UpstreamBlobRef, abandoned: string, epoch: number | undefined): Promise<BlobWriter | undefined> {
    try {
      return await this.blobs.resumeWriter(ref.digest, abandoned, epoch);
    } catch (error) {
      this.logger.warn('could not take over an abandoned download; starting over', { digest: ref.digest.value, error: (error as Error).message });
      return undefined;
    }
  }
}
