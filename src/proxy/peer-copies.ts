import type { BlobHolders } from '../fleet/blob-holders.ts';
import type { BlobLease, FillHolder } from '../fleet/fill-coordinator.ts';
import type { PeerBlobBody, PeerClient } from '../fleet/peer-client.ts';
import type { Logger } from '../logging/logger.ts';
import { RegistryError } from '../registry/errors.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { BlobFill } from './blob-fill.ts';
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
 * Blobs this instance copies from other instances of a fleet on disks of their own: a download
 * another instance runs into its store, or a blob a store on the record of who holds what has.
 * Either way an ordinary fill of this instance's store whose body comes from a peer instead of
 * upstream: written through this store's writer, its size and digest verified before anything
 * is committed or a reader gets the last byte (BlobFill), committed into this store. Whether and
 * when to copy is BlobDownloads' to decide; this says where from and makes the fill.
 */
export class PeerCopies {
  private readonly peers?: PeerClient;
  private readonly stores: FleetStores;
  private readonly admission: StoreAdmission;
  private readonly blobs: BlobStore;
  private readonly logger: Logger;

  constructor(options: { peers?: PeerClient; stores: FleetStores; admission: StoreAdmission; blobs: BlobStore; logger: Logger }) {
    this.peers = options.peers;
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
   * undefined, said in the log, when the holder cannot be read as a peer or this store cannot
   * take the blob.
   */
  async ofDownload(ref: UpstreamBlobRef, holder: FillHolder): Promise<BlobFill | undefined> {
    const answer = this.peers ? await this.peers.openBlob(holder.instance, ref.digest) : undefined;
    if (answer?.kind === 'found') return this.copy(ref, answer.body, holder.instance, 'streaming a blob download from the instance that holds it');
    this.logger.info('holder not readable as a peer; fetching upstream itself', {
      digest: ref.digest.value,
      instance: holder.instance,
      reason: answer === undefined ? 'no peer listener' : answer.kind === 'unreachable' ? answer.reason : 'absent',
    });
    return undefined;
  }

  /**
   * No instance fills the blob and this one holds the claim (`lease`): the stores the record
   * names, each through a live instance serving it, in turn. A peer that answers 404 takes its
   * store off the record for the blob; one that cannot be reached is skipped; one whose bytes turn
   * out not to be the blob's is off the record too. The first that has it is copied under the
   * lease; undefined when none has it (upstream is next).
   */
  async fromRecord(ref: UpstreamBlobRef, lease: BlobLease): Promise<BlobFill | undefined> {
    if (!this.peers) return undefined;
    const digest = ref.digest.value;
    for (const holder of await this.stores.holders.holders(digest)) {
      const answer = await this.peers.openBlob(holder.instance, ref.digest);
      if (answer.kind !== 'found') {
        this.logger.info('a holder named by the record did not have the blob', { digest, instance: holder.instance, reason: answer.kind === 'unreachable' ? answer.reason : 'absent' });
        if (answer.kind === 'absent') void this.stores.holders.removed(digest, holder.storeId);
        continue;
      }
      const fill = await this.copy(ref, answer.body, holder.instance, 'streaming a blob from an instance that holds it', lease);
      // Bytes that are not the blob's: that store is not asked for it again (a hint lost at worst).
      fill?.done.catch((error: unknown) => {
        if (error instanceof RegistryError && (error.code === 'DIGEST_INVALID' || error.code === 'SIZE_INVALID')) void this.stores.holders.removed(digest, holder.storeId);
      });
      return fill;
    }
    return undefined;
  }

  /** The fill of this store from a peer's body (under `lease` when given); undefined when the store cannot take it. */
  private async copy(ref: UpstreamBlobRef, body: PeerBlobBody, instance: string, message: string, lease?: BlobLease): Promise<BlobFill | undefined> {
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
