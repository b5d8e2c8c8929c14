import { watermarkBytes } from '../eviction/plan.ts';
import { statfs } from 'node:fs/promises';
import type { Config } from '../config/schema.ts';

/** The store's size against storage.eviction.maxsize and its watermarks, and the disk's room. */
export interface StoreCapacity {
  bytes: number;
  /** 0: no size cap. */
  maxSize: number;
  highWatermark: number;
  lowWatermark: number;
  /** The bytes at which a pass starts evicting by size, and the bytes it evicts down to (null without a cap). */
  highBytes: number | null;
  lowBytes: number | null;
  /** The filesystem holding the store root (null when it cannot be asked). */
  disk: { free: number; total: number } | null;
  /** storage.filesystem.minfreespace: below it, blobs pass through uncached. */
  minFree: number;
}

/**
 * One statfs of the store root (a single system call, cheap enough for the 5 s status refresh)
 * beside the figures the store walk already has.
 */
export async function storeCapacity(config: Config, bytes: number): Promise<StoreCapacity> {
  const { maxsize, highwatermark, lowwatermark } = config.storage.eviction;
  let disk: StoreCapacity['disk'] = null;
  try {
    const info = await statfs(config.storage.filesystem.rootdirectory);
    disk = { free: info.bavail * info.bsize, total: info.blocks * info.bsize };
  } catch {
    // a store root not created yet: nothing to show
  }
  return {
    bytes,
    maxSize: maxsize,
    highWatermark: highwatermark,
    lowWatermark: lowwatermark,
    highBytes: maxsize > 0 ? watermarkBytes(maxsize, highwatermark) : null,
    lowBytes: maxsize > 0 ? watermarkBytes(maxsize, lowwatermark) : null,
    disk,
    minFree: config.storage.filesystem.minfreespace,
  };
}
