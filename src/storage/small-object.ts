import { StorageDriverError, type StorageDriver } from './driver/storage-driver.ts';

/**
 * A small object this store writes (a link, a tag, a verdict, a referrers list, the store id),
 * whole; undefined when there is none, or when what is there is larger than any such object
 * the store writes (not one of its own: read as absent, as an unparsable one is).
 */
export async function readSmallObject(driver: StorageDriver, key: string, maxBytes: number): Promise<Buffer | undefined> {
  try {
    return await driver.getContent(key, maxBytes);
  } catch (error) {
    if (error instanceof StorageDriverError && error.fault === 'too-large') return undefined;
    throw error;
  }
}
