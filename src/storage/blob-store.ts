import { ensureDir } from './ensure-dir.ts';
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import type { Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { tmpPath } from './atomic-file.ts';
import { fillFileName, type StorePaths } from './paths.ts';
import type { BlobInfo, BlobRef, ReadableBlobStore } from './readable-blob-store.ts';
import { StoredBlob } from './stored-blob.ts';
import { FileHashJob, HASH_OFF_THREAD_BYTES } from './file-hasher.ts';

/**
 * The local, content-addressed blob store on a filesystem. Content enters it only through a
 * BlobWriter, which verifies digest and size before the atomic rename that makes it visible.
 */
/** Told of every blob this process adds to the store (the live store figures). */
export interface BlobStoreListener {
  blobAdded(digest: string, size: number): void;
}

export class FilesystemBlobStore implements ReadableBlobStore {
  readonly paths: StorePaths;
  /** Where this instance writes downloads in flight (see TempArea). */
  readonly tempDir: string;
  listener?: BlobStoreListener;

  constructor(paths: StorePaths, tempDir: string) {
    this.paths = paths;
    this.tempDir = tempDir;
  }

  async stat({ digest }: BlobRef): Promise<BlobInfo | undefined> {
    try {
      const info = await stat(this.paths.blob(digest));
      return { digest: digest.value, size: info.size, origin: 'cache' };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Opens a stored blob for sending, or undefined when it is not stored. Its size comes from
   * the open file itself (one fstat), so nothing, not even a descriptor cache, stands between
   * a warm GET and its first byte; the file is closed if that fails.
   */
  async open({ digest }: BlobRef): Promise<StoredBlob | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.paths.blob(digest), 'r');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    try {
      return new StoredBlob(digest.value, (await handle.stat()).size, handle);
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
  }

  /** Reads a small stored blob (a manifest) whole; undefined when it is not stored. */
  async readSmall(digest: Digest): Promise<Buffer | undefined> {
    try {
      return await readFile(this.paths.blob(digest));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * A writer for `digest` in this instance's temp area. Under a fleet lease (`epoch`) the file
   * is named after the digest and the epoch (fillFileName), so another instance following the
   * download finds it from the lease alone; otherwise its name is random.
   */
  async createWriter(digest: Digest, epoch?: number): Promise<BlobWriter> {
    await ensureDir(this.tempDir);
    const path = this.writerPath(digest, epoch);
    const handle = await open(path, 'wx');
    return new BlobWriter(this, digest, path, handle);
  }

  /**
   * Goes on with the download of an instance that died (fleet takeover): copies what its
   * temporary file holds into a file of this instance's own and hashes it, so the download
   * resumes from there and the bytes other clients already received are part of what is
   * verified. A copy, never a rename: the other instance's file stays its own (it may only be
   * paused, and still write to it), and nothing outside this instance's temp area is ever
   * moved or deleted. A reflink where the filesystem has them, else a kernel copy.
   * Undefined when the file is gone (its instance finished or swept it).
   */
  async resumeWriter(digest: Digest, from: string, epoch?: number): Promise<BlobWriter | undefined> {
    await ensureDir(this.tempDir);
    const path = this.writerPath(digest, epoch);
    try {
      await copyFile(from, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    let handle: FileHandle;
    try {
      handle = await open(path, 'r+');
    } catch (error) {
      await unlink(path).catch(() => {});
      throw error;
    }
    const writer = new BlobWriter(this, digest, path, handle);
    try {
      await writer.rehash();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  private writerPath(digest: Digest, epoch: number | undefined): string {
    return epoch === undefined ? tmpPath(this.tempDir) : join(this.tempDir, fillFileName(digest, epoch));
  }

  /** Stores small verified content (a manifest) in one call. */
  async putSmall(digest: Digest, bytes: Uint8Array): Promise<void> {
    const writer = await this.createWriter(digest);
    try {
      await writer.write(bytes);
      await writer.commit(bytes.length);
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      await unlink(this.paths.blob(digest));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }
}

/**
 * One blob being written: bytes go to a temporary file and a running hash; commit() makes it
 * visible only if the digest (and the expected size, when known) match. Past
 * HASH_OFF_THREAD_BYTES the hash moves to a worker that reads the file behind the writer
 * (see file-hasher.ts), so a large layer's sha256 does not hold the main thread.
 */
export class BlobWriter {
  readonly digest: Digest;
  readonly path: string;
  private readonly store: FilesystemBlobStore;
  private readonly handle: FileHandle;
  /** The hash on this thread, while the blob is small; undefined once the worker has it. */
  private hash: Hash | undefined;
  private job: FileHashJob | undefined;
  private closed = false;
  written = 0;

  constructor(store: FilesystemBlobStore, digest: Digest, path: string, handle: FileHandle) {
    this.store = store;
    this.digest = digest;
    this.path = path;
    this.handle = handle;
    this.hash = createHash(digest.algorithm);
  }

  /** Hashes the bytes the file already holds and continues after them (resumeWriter). */
  async rehash(): Promise<void> {
    const size = (await this.handle.stat()).size;
    if (size > HASH_OFF_THREAD_BYTES) {
      this.written = size;
      this.handOff();
      return;
    }
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    let position = 0;
    for (;;) {
      const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      this.hash!.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
    this.written = position;
  }

  /** Starts over from byte 0 (an upstream that could not resume sends the whole blob again). */
  async reset(): Promise<void> {
    await this.handle.truncate(0);
    this.job?.cancel();
    this.job = undefined;
    this.hash = createHash(this.digest.algorithm);
    this.written = 0;
  }

  /** From now on the worker hashes the file, from byte 0 to what is written. */
  private handOff(): void {
    this.hash = undefined;
    this.job = new FileHashJob(this.path, this.digest.algorithm);
    this.job.advance(this.written);
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.writev([chunk]);
  }

  /** Appends several chunks with as few system calls as the kernel allows (one writev). */
  async writev(chunks: Uint8Array[]): Promise<void> {
    let total = 0;
    for (const chunk of chunks) {
      this.hash?.update(chunk);
      total += chunk.length;
    }
    let pending = chunks;
    let done = 0;
    while (done < total) {
      const { bytesWritten } = await this.handle.writev(pending, this.written + done);
      done += bytesWritten;
      if (done < total) pending = remainderAfter(pending, bytesWritten);
    }
    this.written += total;
    if (this.job) this.job.advance(this.written);
    else if (this.written > HASH_OFF_THREAD_BYTES) this.handOff();
  }

  /** Verifies and atomically moves the content into the store; aborts on any mismatch. */
  async commit(expectedSize?: number): Promise<BlobDescriptor> {
    const descriptor = await this.verify(expectedSize);
    await this.persist();
    return descriptor;
  }

  /**
   * Checks size and digest of what was written; aborts on a mismatch. Once this answers, the
   * bytes are known good: readers may have them all while persist() makes them durable.
   */
  async verify(expectedSize?: number): Promise<BlobDescriptor> {
    try {
      if (expectedSize !== undefined && expectedSize !== this.written) {
        throw new RegistryError('SIZE_INVALID', `upstream sent ${this.written} bytes, expected ${expectedSize}`, { status: 502 });
      }
      const hex = this.job ? await this.job.digest(this.written) : this.hash!.digest('hex');
      const actual = `${this.digest.algorithm}:${hex}`;
      if (actual !== this.digest.value) {
        throw new RegistryError('DIGEST_INVALID', 'upstream content does not match its digest', {
          status: 502,
          detail: { expected: this.digest.value, actual },
        });
      }
      return { digest: this.digest.value, size: this.written };
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Flushes verified content and renames it into the store; aborts on a failure. */
  async persist(): Promise<void> {
    try {
      // Flush before the rename: after a crash the name must never point at missing bytes.
      await this.handle.datasync();
      await this.close();
      const target = this.store.paths.blob(this.digest);
      await ensureDir(dirname(target));
      // Whether the blob is new to the store (a fleet peer may have stored it meanwhile): one
      // stat per commit, so the store's figures count it once.
      const existed = this.store.listener ? await stat(target).then(() => true, () => false) : true;
      await rename(this.path, target);
      if (!existed) this.store.listener?.blobAdded(this.digest.value, this.written);
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  async abort(): Promise<void> {
    this.job?.cancel();
    await this.close();
    await unlink(this.path).catch(() => {});
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close().catch(() => {});
  }
}

/** What is left of `chunks` once the first `count` bytes of them were written. */
function remainderAfter(chunks: Uint8Array[], count: number): Uint8Array[] {
  let skip = count;
  const rest: Uint8Array[] = [];
  for (const chunk of chunks) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
    skip = 0;
  }
  return rest;
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT' || (error as NodeJS.ErrnoException)?.code === 'ENOTDIR';
}

/** Errors that mean the store cannot take writes (full, read-only, not ours): pass through instead. */
const UNWRITABLE = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EIO', 'EMFILE', 'ENFILE']);

export function isStoreUnwritable(error: unknown): boolean {
  return UNWRITABLE.has((error as NodeJS.ErrnoException)?.code ?? '');
}
