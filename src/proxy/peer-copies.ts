import type { BlobHolders, RecordedHolder } from '../fleet/blob-holders.ts';
import type { BlobLease, FillHolder } from '../fleet/fill-coordinator.ts';
import type { PeerBlobBody, PeerClient } from '../fleet/peer-client.ts';
import type { BlobSources } from '../fleet/peer-fallback-body.ts';
import type { Logger } from '../logging/logger.ts';
import { RegistryError } from '../registry/errors.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { BlobFill, type FillBody } from './blob-fill.ts';
import type { StoreAdmission } from './store-admission.ts';
import type { UpstreamBlobRef } from './upstream-blob.ts';

/**
 * What a fleet whose instances may each have a store of their own (redis.fleet.name) tells the
 * downloads: this store's id, the store another instance serves (its live heartbeat), and who
 * holds which blob.
 */
export interface FleetStores {
  own: string;
  storeOf(instance: string): Promise<string | undefined>;
  holders: BlobHolders;
}

/**
 * A copy's bytes from a peer that turn to another peer or to upstream, from the offset reached,
 * should it fail (openPeerFallbackBody). Built in one place, BlobDownloads, for the downloads it
 * follows on a shared bucket and for these copies alike; undefined when there is nothing to read
 * (the peer's download is over, or the blob was stored meanwhile).
 */
export interface PeerBodies {
  /** The download `holder` runs, read from its peer listener; from its next holder should its lease move. */
  ofDownload(ref: UpstreamBlobRef, holder: FillHolder): Promise<FillBody | undefined>;
  /** A body already opened from `holder`, then the peers `nextPeer` names. */
  ofOpened(ref: UpstreamBlobRef, from: { holder: FillHolder; opened: PeerBlobBody; peer: BlobSources['peer']; nextPeer: BlobSources['nextPeer'] }): Promise<FillBody | undefined>;
}

/**
 * Blobs this instance copies from other instances of a fleet on disks of their own: a download
 * another instance runs into its store, or a blob a store on the record of who holds what has.
 * Either way an ordinary fill of this instance's store whose body comes from a peer instead of
 * upstream: written through this store's writer, its size and digest verified before anything
 * is committed or a reader gets the last byte (BlobFill), committed into this store. Whether and
 * when to copy is BlobDownloads' to decide; this says where from and makes the fill.
 */
export class PeerCopies {
  private readonly peers?: PeerClient;
  private readonly bodies: PeerBodies;
  private readonly stores: FleetStores;
  private readonly admission: StoreAdmission;
  private readonly blobs: BlobStore;
  private readonly logger: Logger;

  constructor(options: { peers?: PeerClient; bodies: PeerBodies; stores: FleetStores; admission: StoreAdmission; blobs: BlobStore; logger: Logger }) {
    this.peers = options.peers;
    this.bodies = options.bodies;
    this.stores = options.stores;
    this.admission = options.admission;
    this.blobs = options.blobs;
    this.logger = options.logger;
  }

  /** Whether a download's holder serves a store other than this instance's (its live heartbeat says which). */
  async onAnotherStore(holder: FillHolder | undefined): Promise<boolean> {
    if (!holder) return false;
    const theirs = await this.stores.storeOf(holder.instance);
    return theirs !== undefined && theirs !== this.stores.own;
  }

  /** This store committed the blob: on the record. */
  committed(digest: string): void {
    void this.stores.holders.committed(digest);
  }

  /**
   * The download `holder` runs (it has started: its listener has bytes), copied as it lands;
   * should the holder die, stall or overrun on the way, the copy goes on from its next holder
   * or from upstream at the offset reached (PeerBodies). Undefined, said in the log, when there
   * is no peer listener, the holder has nothing to stream, or this store cannot take the blob.
   */
  async ofDownload(ref: UpstreamBlobRef, holder: FillHolder): Promise<BlobFill | undefined> {
    const body = this.peers ? await this.bodies.ofDownload(ref, holder) : undefined;
    if (body) return this.copy(ref, body, holder.instance, 'streaming a blob download from the instance that holds it');
    this.logger.info('holder not readable as a peer; fetching upstream itself', {
      digest: ref.digest.value,
      instance: holder.instance,
      reason: this.peers ? 'absent' : 'no peer listener',
    });
    return undefined;
  }

  /**
   * No instance fills the blob and this one holds the claim (`lease`): the stores the record
   * names, each through a live instance serving it, in turn. A peer that answers 404 takes its
   * store off the record for the blob; one that cannot be reached is skipped; one whose bytes turn
   * out not to be the blob's is off the record too. The first that has it is copied under the
   * lease; should it die mid-copy, the copy goes on from the next store on the record, and should
   * that not answer (or the first stall or overrun), from upstream at the offset reached
   * (PeerBodies). Undefined when none has it (upstream is next).
   */
  async fromRecord(ref: UpstreamBlobRef, lease: BlobLease): Promise<BlobFill | undefined> {
    const peers = this.peers;
    if (!peers) return undefined;
    const digest = ref.digest.value;
    const left = await this.stores.holders.holders(digest);
    /** The stores whose bytes this copy got: off the record should they not be the blob's. */
    const sent = new Set<string>();
    /** One holder's store read from `offset`; a 404 takes it off the record. */
    const ask = (holder: RecordedHolder) => async (offset: number, signal?: AbortSignal) => {
      const answer = await peers.openBlob(holder.instance, ref.digest, { offset, signal });
      if (answer.kind === 'found') sent.add(holder.storeId);
      else {
        this.logger.info('a holder named by the record did not have the blob', { digest, instance: holder.instance, reason: answer.kind === 'unreachable' ? answer.reason : 'absent' });
        if (answer.kind === 'absent') void this.stores.holders.removed(digest, holder.storeId);
      }
      return answer;
    };
    // A committed blob has no lease: epoch 0 names none.
    const asHolder = (holder: RecordedHolder): FillHolder => ({ instance: holder.instance, epoch: 0 });
    for (let holder = left.shift(); holder; holder = left.shift()) {
      const answer = await ask(holder)(0);
      if (answer.kind !== 'found') continue;
      // Should it fail mid-copy: the next store on the record, else upstream, from the offset reached.
      const body = await this.bodies.ofOpened(ref, {
        holder: asHolder(holder),
        opened: answer.body,
        peer: ask(holder),
        nextPeer: async () => {
          const next = left.shift();
          return next && { holder: asHolder(next), peer: ask(next) };
        },
      });
      const fill = body && (await this.copy(ref, body, holder.instance, 'streaming a blob from an instance that holds it', lease));
      // Bytes that are not the blob's: the stores that sent them are not asked for it again (a hint lost at worst).
      fill?.done.catch((error: unknown) => {
        if (error instanceof RegistryError && (error.code === 'DIGEST_INVALID' || error.code === 'SIZE_INVALID')) for (const storeId of sent) void this.stores.holders.removed(digest, storeId);
      });
      return fill;
    }
    return undefined;
  }

  /** The fill of this store from a peer's body (under `lease` when given); undefined when the store cannot take it. */
  private async copy(ref: UpstreamBlobRef, body: FillBody, instance: string, message: string, lease?: BlobLease): Promise<BlobFill | undefined> {
    const digest = ref.digest.value;
    const writer = await this.admission.writerFor(ref.digest, body.size, lease?.epoch).catch(() => undefined);
    if (!writer) {
      body.close();
      return undefined;
    }
    this.logger.info(message, { digest, instance, size: body.size });
    const fill = new BlobFill({ digest, size: body.size, writer, openCommitted: () => this.blobs.openObject(ref.digest), body, fence: lease });
    fill.done.catch((error: Error) => this.logger.warn('blob copy from a peer failed', { digest, instance, error: error.message }));
    return fill;
  }
}
