import type { Logger } from '../logging/logger.ts';
import type { Digest } from '../registry/digest.ts';
import { isStoreUnwritable, type BlobStore, type BlobWriter } from '../storage/blob-store.ts';

/** How long the store stays in pass-through mode after a write failure. */
const DEGRADED_MS = 30_000;

/**
 * Decides whether the local store takes a new blob: not in read-only mode, not while it is
 * failing (for DEGRADED_MS after a write error, so clients get a pass-through at once instead
 * of each meeting the error), and not when the blob would eat into the free space kept
 * (`storage.filesystem.minfreespace`, checked up front against the announced size, so no
 * client sees a transfer break for a full disk).
 */
export class StoreAdmission {
  private readonly blobs: BlobStore;
  private readonly readOnly: boolean;
  private readonly minFreeBytes: number;
  private readonly logger: Logger;
  private degradedUntil = 0;

  constructor(options: { blobs: BlobStore; readOnly: boolean; minFreeBytes: number; logger: Logger }) {
    this.blobs = options.blobs;
    this.readOnly = options.readOnly;
    this.minFreeBytes = options.minFreeBytes;
    this.logger = options.logger;
  }

  /**
   * A writer for a new blob, or undefined when the store cannot take it (the blob is then
   * passed through). Throws only what is not the store's state (a bug, an unknown error).
   * `epoch`: the fleet lease the download runs under (see BlobStore.createWriter).
   */
  async writerFor(digest: Digest, size: number | undefined, epoch?: number): Promise<BlobWriter | undefined> {
    if (this.readOnly || performance.now() < this.degradedUntil) return undefined;
    try {
      if (size !== undefined) {
        // The store's medium (statfs of the root on a filesystem; a bucket has no limit). A
        // root that does not exist is for createWriter to make (or to say why it cannot).
        const free = await this.blobs.freeBytes().catch(() => undefined);
        if (free !== undefined && free < size + this.minFreeBytes) {
          this.degrade(Object.assign(new Error('not enough free space in the store'), { code: 'ENOSPC' }), 0);
          return undefined;
        }
      }
      return await this.blobs.createWriter(digest, epoch);
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.degrade(error as Error);
      return undefined;
    }
  }

  /** Whether the store failed a moment ago (DEGRADED_MS): a download then passes through rather than follow or fill. */
  get failing(): boolean {
    return performance.now() < this.degradedUntil;
  }

  /** A fill met a store error: stop trying to write for a while. Other errors are not the store's. */
  failed(error: unknown): void {
    if (isStoreUnwritable(error)) this.degrade(error as Error);
  }

  private degrade(error: Error, forMs = DEGRADED_MS): void {
    if (performance.now() >= this.degradedUntil) {
      this.logger.error('store not writable; serving uncached from upstream', { error: error.message, code: (error as NodeJS.ErrnoException).code });
    }
    this.degradedUntil = Math.max(this.degradedUntil, performance.now() + forMs);
  }
}
