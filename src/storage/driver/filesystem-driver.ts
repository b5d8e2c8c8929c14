import { randomUUID } from 'node:crypto';
import { constants, statSync, type Dirent } from 'node:fs';
import { copyFile, link, open, opendir, readdir, rename, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Yielder } from '../../util/yielder.ts';
import { ensureDir } from '../ensure-dir.ts';
import { driverError, errorCode, isMissing } from './filesystem-faults.ts';
import { OpenedFile } from './opened-file.ts';
import {
  checkKey,
  checkPrefix,
  StorageDriverError,
  type ListedObject,
  type ObjectInfo,
  type OpenedObject,
  type StorageDriver,
  type StorageUsage,
} from './storage-driver.ts';

export interface FilesystemDriverOptions {
  /** The store's root directory (storage.filesystem.rootdirectory); keys are paths under it. */
  root: string;
  /**
   * This instance's own temporary directory (TempArea.dir, `<root>/_tmp/<instance>`): where
   * putContent writes before its rename, and where commitFile copies a file from another file
   * system. It must be on the store's file system, so a rename from it is atomic.
   */
  tempDir: string;
}

/** A name the driver lists: one a key may hold (checkKey's component). Temp files of other tools (`.nfs…`, `.swp`) are not objects. */
const LISTABLE = /^[A-Za-z0-9_:@+=-][A-Za-z0-9._:@+=-]*$/;

/**
 * Bytes at keys as files under a root directory: key `a/b/c` is the file `<root>/a/b/c`. This
 * is the layout of src/storage/paths.ts unchanged, so an existing store is read as it is.
 *
 * Content becomes visible only by a rename (putContent from a flushed temp file, commitFile
 * from the flushed spool), so a reader sees an object whole or not at all, and after a crash
 * a name never points at bytes that were not on disk. The driver never creates the root: a
 * store whose root is gone (an unmounted volume) answers 'missing-store' rather than filling
 * the mount point's disk. Directories are made as keys need them and left in place on delete,
 * as before the driver layer (another writer may be about to use them).
 */
export class FilesystemDriver implements StorageDriver {
  readonly kind = 'filesystem';
  readonly root: string;
  readonly tempDir: string;
  private readonly rootPrefix: string;

  constructor(options: FilesystemDriverOptions) {
    this.root = resolve(options.root);
    this.tempDir = resolve(options.tempDir);
    this.rootPrefix = this.root.endsWith(sep) ? this.root : this.root + sep;
  }

  async getContent(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    const path = this.pathOf(key, 'getContent');
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw driverError(error, 'getContent', key);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return undefined;
      if (maxBytes !== undefined && info.size > maxBytes) throw tooLarge(key, info.size, maxBytes);
      const bytes = await handle.readFile();
      // Objects are replaced by rename, never written in place; this only guards a file someone else appends to.
      if (maxBytes !== undefined && bytes.length > maxBytes) throw tooLarge(key, bytes.length, maxBytes);
      return bytes;
    } catch (error) {
      throw driverError(error, 'getContent', key);
    } finally {
      await handle.close().catch(() => {});
    }
  }

  async putContent(key: string, content: Uint8Array | string): Promise<void> {
    const target = this.pathOf(key, 'putContent');
    const temp = join(this.tempDir, randomUUID());
    try {
      const handle = await this.createTemp(temp, 'putContent', key);
      try {
        await handle.writeFile(content);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.renameIntoPlace(temp, target, 'putContent', key);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw driverError(error, 'putContent', key);
    }
  }

  /**
   * A flushed temp file linked to the key: link(2) fails when the name exists, so of two
   * callers at once exactly one writes, and the object appears whole. The temp name goes.
   */
  async putContentIfAbsent(key: string, content: Uint8Array | string): Promise<boolean> {
    const target = this.pathOf(key, 'putContentIfAbsent');
    const temp = join(this.tempDir, randomUUID());
    try {
      const handle = await this.createTemp(temp, 'putContentIfAbsent', key);
      try {
        await handle.writeFile(content);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      const linkOnce = async (): Promise<boolean> => {
        try {
          await link(temp, target);
          return true;
        } catch (error) {
          if (errorCode(error) === 'EEXIST') return false;
          throw error;
        }
      };
      try {
        return await linkOnce();
      } catch (error) {
        // Directories are made only when the link says they are missing, as for a rename.
        if (errorCode(error) !== 'ENOENT') throw error;
        await this.requireRoot('putContentIfAbsent', key);
        await ensureDir(dirname(target));
        return await linkOnce();
      }
    } catch (error) {
      throw driverError(error, 'putContentIfAbsent', key);
    } finally {
      await unlink(temp).catch(() => {});
    }
  }

  /**
   * Flushes the file (after a crash the key must never name bytes that were not on disk: the
   * caller need not flush it first), then renames it over the key. A file on another file
   * system (EXDEV) is copied into this instance's temp directory, flushed and renamed from
   * there: a copy left by a crash is then in the temp area, which TempArea sweeps, never beside
   * the target where nothing would find it. `signal` is looked at before each step up to the
   * rename (a kernel copy cannot stop midway: a cancel during it takes effect after it); once
   * the rename is done, the commit is.
   */
  async commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    let moved = false;
    try {
      const target = this.pathOf(key, 'commitFile');
      signal?.throwIfAborted();
      await flushFile(localPath);
      signal?.throwIfAborted();
      try {
        await this.renameIntoPlace(localPath, target, 'commitFile', key);
        moved = true;
      } catch (error) {
        if (errorCode(error) !== 'EXDEV') throw error;
        await this.copyIntoPlace(localPath, target, key, signal);
      }
    } catch (error) {
      throw driverError(error, 'commitFile', key);
    } finally {
      if (!moved) await unlink(localPath).catch(() => {});
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key, 'stat');
    try {
      const info = await stat(path);
      return info.isFile() ? { size: info.size, modifiedMs: info.mtimeMs } : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw driverError(error, 'stat', key);
    }
  }

  /**
   * One open and one fstat, as the hit path did before the driver layer: the size comes from
   * the open file itself, so `knownSize` saves nothing here (and a file is never trusted to
   * have the size a cache remembers).
   */
  async open(key: string): Promise<OpenedObject | undefined> {
    const path = this.pathOf(key, 'open');
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw driverError(error, 'open', key);
    }
    try {
      const info = await handle.stat();
      if (info.isFile()) return new OpenedFile(handle, info.size);
    } catch (error) {
      await handle.close().catch(() => {});
      throw driverError(error, 'open', key);
    }
    await handle.close().catch(() => {});
    return undefined;
  }

  async *children(prefix: string): AsyncIterable<string> {
    const dir = this.dirOf(prefix, 'children');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if (isMissing(error)) return;
      throw driverError(error, 'children', prefix);
    }
    for (const name of names) if (LISTABLE.test(name)) yield name;
  }

  /**
   * Depth first, one directory read at a time. Files are stat'ed synchronously, with a turn of
   * the event loop every millisecond (Yielder): at 100 000 blobs that took 1.1 s where a
   * promise per stat took 2.9 s (src/eviction/inventory.ts measured it), while requests beside
   * the walk wait at most about a millisecond. A caller that must leave the loop more room
   * (an eviction pass in a serving mirror) pauses in its own loop: the walk goes on only when
   * asked for the next object. Symbolic links to directories are not followed (no loops);
   * files and directories that vanish during the walk are skipped.
   */
  async *walk(prefix: string): AsyncIterable<ListedObject> {
    const start = this.dirOf(prefix, 'walk');
    const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    const turn = new Yielder();
    const pending: { dir: string; key: string }[] = [{ dir: start, key: trimmed }];
    while (pending.length > 0) {
      const { dir, key } = pending.pop()!;
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isMissing(error)) continue;
        throw driverError(error, 'walk', prefix);
      }
      for (const entry of entries) {
        if (!LISTABLE.test(entry.name)) continue;
        const path = join(dir, entry.name);
        const entryKey = key === '' ? entry.name : `${key}/${entry.name}`;
        if (entry.isDirectory()) {
          pending.push({ dir: path, key: entryKey });
          continue;
        }
        // A type the directory did not tell (some file systems leave it unknown) is asked.
        const untyped = !entry.isFile() && !entry.isSymbolicLink() && !entry.isFIFO() && !entry.isSocket() && !entry.isBlockDevice() && !entry.isCharacterDevice();
        if (!entry.isFile() && !entry.isSymbolicLink() && !untyped) continue;
        let info;
        try {
          info = statSync(path, { throwIfNoEntry: false });
        } catch (error) {
          if (isMissing(error)) continue;
          throw driverError(error, 'walk', prefix);
        }
        if (info?.isFile()) yield { key: entryKey, size: info.size, modifiedMs: info.mtimeMs };
        else if (untyped && info?.isDirectory()) pending.push({ dir: path, key: entryKey });
        if (turn.due()) await turn.pause();
      }
    }
  }

  /** Unlinks the file; its directories stay (as before the driver layer: a writer may be about to use them). */
  async delete(key: string): Promise<boolean> {
    const path = this.pathOf(key, 'delete');
    try {
      await unlink(path);
      return true;
    } catch (error) {
      // A directory is no object: nothing to delete at that key.
      if (isMissing(error) || errorCode(error) === 'EISDIR') return false;
      throw driverError(error, 'delete', key);
    }
  }

  /** The root is a directory that can be read now (one directory entry read, whatever the store's size). */
  async probe(): Promise<void> {
    await this.requireRoot('probe');
    try {
      const dir = await opendir(this.root, { bufferSize: 1 });
      try {
        await dir.read();
      } finally {
        await dir.close().catch(() => {});
      }
    } catch (error) {
      throw driverError(error, 'probe');
    }
  }

  async usage(): Promise<StorageUsage> {
    try {
      const info = await statfs(this.root);
      return { totalBytes: info.blocks * info.bsize, freeBytes: info.bavail * info.bsize };
    } catch (error) {
      if (isMissing(error)) throw missingStore('usage', this.root);
      throw driverError(error, 'usage');
    }
  }

  /**
   * Nothing to do here: what crashed writers leave is in their instance's temp directory
   * (putContent's and commitFile's temp files included), and TempArea (src/storage/temp-area.ts)
   * already removes the directories of dead instances, on this host or any other sharing the
   * store. A second sweep here would race it.
   */
  async cleanup(_olderThanMs: number): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {}

  /** The file of a key; checkKey refuses `..` and the like, and the result is checked to stay under the root anyway. */
  private pathOf(key: string, operation: string): string {
    checkKey(key, operation);
    const path = join(this.root, key);
    if (!path.startsWith(this.rootPrefix)) throw new StorageDriverError('invalid-key', operation, 'refused key: outside the store', { key });
    return path;
  }

  /** The directory of a prefix ('' is the root). */
  private dirOf(prefix: string, operation: string): string {
    checkPrefix(prefix, operation);
    const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    return trimmed === '' ? this.root : this.pathOf(trimmed, operation);
  }

  /** A new temp file in the temp directory, which is made again if something removed it (TempArea's heartbeat would, later). */
  private async createTemp(temp: string, operation: string, key: string): Promise<FileHandle> {
    try {
      return await open(temp, 'wx');
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      await this.requireRoot(operation, key);
      await ensureDir(this.tempDir);
      return await open(temp, 'wx');
    }
  }

  /**
   * Renames `source` over `target`. The target's directories are made only when the rename
   * says they are missing (most commits go to a directory that exists: no mkdir per commit),
   * and never the root itself.
   */
  private async renameIntoPlace(source: string, target: string, operation: string, key: string): Promise<void> {
    try {
      await rename(source, target);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      await this.requireRoot(operation, key);
      await ensureDir(dirname(target));
      await rename(source, target);
    }
  }

  private async copyIntoPlace(source: string, target: string, key: string, signal: AbortSignal | undefined): Promise<void> {
    const temp = join(this.tempDir, randomUUID());
    try {
      // Rare (a spool on another file system): the temp directory is made sure of first.
      await this.requireRoot('commitFile', key);
      await ensureDir(this.tempDir);
      await copyFile(source, temp, constants.COPYFILE_EXCL);
      await flushFile(temp);
      signal?.throwIfAborted();
      await this.renameIntoPlace(temp, target, 'commitFile', key);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
  }

  /** Throws 'missing-store' unless the root is a directory: a write never creates the root. */
  private async requireRoot(operation: string, key?: string): Promise<void> {
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(this.root)).isDirectory();
    } catch (error) {
      if (isMissing(error)) throw missingStore(operation, this.root, key);
      throw driverError(error, operation, key);
    }
    if (!isDirectory) throw missingStore(operation, this.root, key);
  }
}

/** Writes a file's data to the disk (fsync on a read-only descriptor flushes the file all the same). */
async function flushFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close().catch(() => {});
  }
}

function tooLarge(key: string, size: number, maxBytes: number): StorageDriverError {
  return new StorageDriverError('too-large', 'getContent', `object of ${size} bytes, more than the ${maxBytes} asked for`, { key });
}

function missingStore(operation: string, root: string, key?: string): StorageDriverError {
  return new StorageDriverError('missing-store', operation, `the store's root directory ${root} does not exist`, { key });
}
