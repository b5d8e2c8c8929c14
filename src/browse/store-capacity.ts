import { watermarkBytes } from '../eviction/plan.ts';
import type { Config } from '../config/schema.ts';
import type { StorageDriver } from '../storage/driver/storage-driver.ts';

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
  /** The medium holding the store (driver.usage): null when it cannot be asked or has no limit (a bucket: the store's size is all there is to show). */
  disk: { free: number; total: number } | null;
  /** storage.filesystem.minfreespace: below it, blobs pass through uncached. */
  minFree: number;
  /** The driver holding the store ('filesystem', 's3'): the page says a bucket has no free space to show rather than "unknown". */
  driver: string;
}

/**
 * The driver's usage (one statfs on the filesystem: cheap enough for the 5 s status refresh)
 * beside the figures the store walk already has.
 */
export async function storeCapacity(config: Config, driver: StorageDriver, bytes: number): Promise<StoreCapacity> {
  const { maxsize, highwatermark, lowwatermark } = config.storage.eviction;
  let disk: StoreCapacity['disk'] = null;
  try {
    const usage = await driver.usage();
    if (usage.totalBytes !== undefined && usage.freeBytes !== undefined) disk = { free: usage.freeBytes, total: usage.totalBytes };
  } catch {
    // a store not reachable (or a root not created yet): nothing to show
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
    driver: driver.kind,
  };
}
