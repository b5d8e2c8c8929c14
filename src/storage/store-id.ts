import { randomBytes } from 'node:crypto';
import { FilesystemDriver } from './driver/filesystem-driver.ts';
import type { StorageDriver } from './driver/storage-driver.ts';
import { StoreKeys, StorePaths } from './paths.ts';
import { readSmallObject } from './small-object.ts';

/** What a store id is: 16 hex digits (8 random bytes). */
const ID = /^[0-9a-f]{16}$/;

/**
 * The id of a store, made once by whichever instance starts on it first. Instances that share
 * the store (a volume, NFS, a bucket) read the same id and so share their Redis keys; separate
 * stores using one Redis do not. Created with the driver's create-if-absent where it has one
 * (link(2) on a filesystem, `If-None-Match: *` on S3), so two instances starting together
 * agree on one id; a driver without it writes and reads back, which two instances starting in
 * the same instant could each win once (each then takes the id it read back). Undefined when
 * the store is not writable yet.
 */
export async function storeId(driver: StorageDriver): Promise<string | undefined> {
  const existing = await readStoreId(driver);
  if (existing) return existing;
  try {
    const content = `${randomBytes(8).toString('hex')}\n`;
    if (driver.putContentIfAbsent) await driver.putContentIfAbsent(StoreKeys.storeId(), content);
    else await driver.putContent(StoreKeys.storeId(), content);
    return await readId(driver);
  } catch {
    return undefined;
  }
}

/**
 * The store's id if one was made, without making one (for tools that must not write). A
 * StorePaths is a filesystem store its caller does not open through a driver yet (src/cli/gc.ts,
 * until the walkers move onto the driver): read through the filesystem driver all the same.
 */
export async function readStoreId(store: StorageDriver | StorePaths): Promise<string | undefined> {
  const driver = store instanceof StorePaths ? new FilesystemDriver({ root: store.root, tempDir: store.tmpDir() }) : store;
  try {
    return await readId(driver);
  } catch {
    return undefined;
  }
}

/**
 * The store's id if one was made, without making one, telling "none" (undefined: never made, or
 * not an id) from "cannot be read now" (the driver's error is thrown): where a wrong "none"
 * would cost more than a retry (the access clock's journal, eviction/access-clock-setup.ts).
 */
export async function findStoreId(driver: StorageDriver): Promise<string | undefined> {
  const id = (await readSmallObject(driver, StoreKeys.storeId(), 64))?.toString('utf8').trim();
  return id && ID.test(id) ? id : undefined;
}

/**
 * The store's id, made when there is none (storeId); rejects while it can be neither read nor
 * made (the bucket has not answered, or is not writable yet), so the caller asks again later.
 */
export async function requireStoreId(driver: StorageDriver): Promise<string> {
  const id = await storeId(driver);
  if (!id) throw new Error(`the store's id (${StoreKeys.storeId()}) can be neither read nor made yet`);
  return id;
}

async function readId(driver: StorageDriver): Promise<string> {
  const id = (await readSmallObject(driver, StoreKeys.storeId(), 64))?.toString('utf8').trim();
  if (!id || !ID.test(id)) throw new Error(`${StoreKeys.storeId()}: not a store id`);
  return id;
}

/**
 * A new id for a store found to be a copy of another (store-probe.ts): written over the old one
 * (putContent replaces it whole), so this store and its instances get Redis keys of their own.
 * When the store no longer holds `copiedId`, another instance on this same copy renewed it
 * first: its id is taken, so instances sharing the copy keep sharing. Undefined when it cannot
 * be written.
 */
export async function renewStoreId(driver: StorageDriver, copiedId: string): Promise<string | undefined> {
  try {
    const current = await readId(driver);
    if (current !== copiedId) return current;
    await driver.putContent(StoreKeys.storeId(), `${randomBytes(8).toString('hex')}\n`);
    // Read back: of two instances on the copy renewing at once, the last write wins for both.
    return await readId(driver);
  } catch {
    return undefined;
  }
}
