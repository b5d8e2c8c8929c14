import { ensureDir } from './ensure-dir.ts';
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import type { StorePaths } from './paths.ts';

/**
 * The id of a store, made once by whichever instance starts on it first. Instances that share
 * the store (a volume, NFS) read the same id and so share their Redis keys; separate stores
 * using one Redis do not. Created with link(2), which fails if the file exists, so two
 * instances starting together agree on one id. Undefined when the store is not writable yet.
 */
export async function storeId(paths: StorePaths): Promise<string | undefined> {
  const file = paths.storeId();
  const existing = await readStoreId(paths);
  if (existing) return existing;
  try {
    await ensureDir(paths.root);
    const temp = `${file}.${randomBytes(6).toString('hex')}`;
    await writeFile(temp, `${randomBytes(8).toString('hex')}\n`, { flag: 'wx' });
    await link(temp, file).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    await unlink(temp).catch(() => {});
    return await readId(file);
  } catch {
    return undefined;
  }
}

/** The store's id if one was made, without making one (for tools that must not write). */
export async function readStoreId(paths: StorePaths): Promise<string | undefined> {
  try {
    return await readId(paths.storeId());
  } catch {
    return undefined;
  }
}

async function readId(file: string): Promise<string> {
  const id = (await readFile(file, 'utf8')).trim();
  if (!/^[0-9a-f]{16}$/.test(id)) throw new Error(`${file}: not a store id`);
  return id;
}

/**
 * A new id for a store found to be a copy of another (store-probe.ts): written over the old one
 * (temp file, rename), so this store and its instances get Redis keys of their own. When the
 * file no longer holds `copiedId`, another instance on this same copy renewed it first: its id
 * is taken, so instances sharing the copy keep sharing. Undefined when it cannot be written.
 */
export async function renewStoreId(paths: StorePaths, copiedId: string): Promise<string | undefined> {
  const file = paths.storeId();
  try {
    const current = await readId(file);
    if (current !== copiedId) return current;
    const temp = `${file}.${randomBytes(6).toString('hex')}`;
    await writeFile(temp, `${randomBytes(8).toString('hex')}\n`, { flag: 'wx' });
    await rename(temp, file);
    // Read back: of two instances on the copy renewing at once, the last rename wins for both.
    return await readId(file);
  } catch {
    return undefined;
  }
}
