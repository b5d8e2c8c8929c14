import { ensureDir } from './ensure-dir.ts';
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import { digestOf, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { tmpPath } from './atomic-file.ts';
import { FilesystemDriver } from './driver/filesystem-driver.ts';
import { StorageDriverError, type OpenedObject, type StagedFile, type StorageDriver } from './driver/storage-driver.ts';
import { fillFileName, StoreKeys, type StorePaths } from './paths.ts';
import type { BlobInfo, BlobRef, ReadableBlobStore } from './readable-blob-store.ts';
import { StoredBlob } from './stored-blob.ts';
import { FileHashJob, HASH_OFF_THREAD_BYTES } from './file-hasher.ts';

/** Told of every blob this process adds to the store (the live store figures). */
export interface BlobStoreListener {
  blobAdded(digest: string, size: number): void;
}

/**
 * The content-addressed blob store, over a storage driver (any: filesystem, s3, in-memory).
 * Content enters it only verified: a download through a BlobWriter, written and hashed in a
 * local spool file and handed to the driver (commitFile) only once digest and size matched;
 * small content (a manifest) through putSmall, which checks the digest before putContent. So
 * the driver never holds unverified bytes at a blob's key.
 */
export class BlobStore implements ReadableBlobStore {
  readonly driver: StorageDriver;
  /** This instance's spool: a local directory for downloads in flight (see TempArea). */
  readonly tempDir: string;
  /**
   * The store as files, when instances share it (the filesystem driver on one volume): other
   * instances' spools are then readable where they write them, and a fleet follows their
   * downloads from those files. Undefined when spools are private (a bucket): a follower then
   * waits for the commit and reads the store.
   */
  readonly volume: StorePaths | undefined;
  /** storage.redirect on a driver that has URLs: clients are sent to fetch stored blobs from them (see redirect). */
  readonly redirects: boolean;
  listener?: BlobStoreListener;

  constructor(options: { driver: StorageDriver; tempDir: string; volume?: StorePaths; redirects?: boolean }) {
    this.driver = options.driver;
    this.tempDir = options.tempDir;
    this.volume = options.volume;
    this.redirects = (options.redirects ?? false) && this.driver.redirectURL !== undefined;
  }

  async stat({ digest }: BlobRef): Promise<BlobInfo | undefined> {
    const info = await this.driver.stat(StoreKeys.blob(digest));
    return info && { digest: digest.value, size: info.size, origin: 'cache' };
  }

  /**
   * Opens a stored blob for sending, or undefined when it is not stored. `knownSize` (the
   * descriptor cache's) spares a driver that needs one a metadata request; the filesystem
   * driver takes the size from the open file itself, so nothing stands between a warm GET and
   * its first byte.
   */
  async open({ digest }: BlobRef, knownSize?: number): Promise<StoredBlob | undefined> {
    const object = await this.openObject(digest, knownSize);
    return object && new StoredBlob(digest.value, object);
  }

  /** The stored object of a blob, opened; undefined when it is not stored. */
  openObject(digest: Digest, knownSize?: number): Promise<OpenedObject | undefined> {
    return this.driver.open(StoreKeys.blob(digest), knownSize);
  }

  /**
   * Where a client may fetch a stored blob itself (a presigned URL of the bucket), and its size;
   * undefined when redirects are off (storage.redirect), the driver has no URLs, or the blob is
   * not stored. The object is asked for (a HEAD) rather than believed from a cache: a URL of an
   * object another instance evicted would fail the client's pull, where a miss here is served.
   */
  async redirect(digest: Digest): Promise<{ url: string; size: number } | undefined> {
    if (!this.redirects || !this.driver.redirectURL) return undefined;
    const key = StoreKeys.blob(digest);
    const info = await this.driver.stat(key);
    if (!info) return undefined;
    const url = await this.driver.redirectURL(key);
    return url === undefined ? undefined : { url, size: info.size };
  }

  /** Whether knowing a blob's size before open() saves a request (a driver over the network). */
  get sizeSavesARequest(): boolean {
    return this.driver.kind !== 'filesystem';
  }

  /** Reads a small stored blob (a manifest) whole; undefined when it is not stored. */
  readSmall(digest: Digest, maxBytes?: number): Promise<Buffer | undefined> {
    return this.driver.getContent(StoreKeys.blob(digest), maxBytes);
  }

  /**
   * Free space where a new blob goes: the store's medium (statfs of the root on a filesystem,
   * which holds the spool too), and, when the spool is elsewhere (a bucket has no limit), the
   * local disk every blob is written to first. Undefined when neither has a limit to tell.
   */
  async freeBytes(): Promise<number | undefined> {
    const store = (await this.driver.usage()).freeBytes;
    if (this.volume) return store;
    // The spool directory may not exist yet: its parent tells the same disk.
    const spool = await statfs(this.tempDir)
      .catch(() => statfs(dirname(this.tempDir)))
      .then((info) => info.bavail * info.bsize, () => undefined);
    return spool === undefined ? store : store === undefined ? spool : Math.min(store, spool);
  }

  /**
   * A writer for `digest` in this instance's spool. Under a fleet lease (`epoch`) the file is
   * named after the digest and the epoch (fillFileName), so another instance following the
   * download on a shared volume finds it from the lease alone; otherwise its name is random.
   */
  async createWriter(digest: Digest, epoch?: number): Promise<BlobWriter> {
    await ensureDir(this.tempDir);
    const path = this.writerPath(digest, epoch);
    const handle = await open(path, 'wx');
    return new BlobWriter(this, digest, path, handle);
  }

  /**
   * Goes on with the download of an instance that died (fleet takeover on a shared volume):
   * copies what its spool file holds into a file of this instance's own and hashes it, so the
   * download resumes from there and the bytes other clients already received are part of what
   * is verified. A copy, never a rename: the other instance's file stays its own (it may only
   * be paused, and still write to it), and nothing outside this instance's spool is ever moved
   * or deleted. A reflink where the filesystem has them, else a kernel copy. Undefined when
   * the file is gone (its instance finished or swept it).
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

  /**
   * Where another instance writes `digest` under the lease `epoch`, when spools are shared
   * (StorePaths.fillTemp checks what Redis said of the holder); undefined otherwise.
   */
  fillFile(instance: string, digest: Digest, epoch: number): string | undefined {
    return this.volume?.fillTemp(instance, digest, epoch);
  }

  /** The committed blob as a file, when the store is a shared volume (a follower's last look). */
  committedFile(digest: Digest): string | undefined {
    return this.volume?.blob(digest);
  }

  /** Stores small content (a manifest) in one call, once it matched its digest. */
  async putSmall(digest: Digest, bytes: Uint8Array): Promise<void> {
    const actual = digestOf(bytes, digest.algorithm);
    if (actual !== digest.value) {
      throw new RegistryError('DIGEST_INVALID', 'content does not match its digest', { status: 502, detail: { expected: digest.value, actual } });
    }
    const key = StoreKeys.blob(digest);
    const existed = this.listener ? (await this.driver.stat(key)) !== undefined : true;
    await this.driver.putContent(key, bytes);
    if (!existed) this.listener?.blobAdded(digest.value, bytes.length);
  }

  delete(digest: Digest): Promise<boolean> {
    return this.driver.delete(StoreKeys.blob(digest));
  }
}

/**
 * The blob store on a filesystem store by its root, as it was built before the driver layer
 * (`new FilesystemBlobStore(paths, tempDir)`): for tools and tests that have the paths at hand.
 * The filesystem driver's temp files go to the same spool.
 */
export class FilesystemBlobStore extends BlobStore {
  constructor(paths: StorePaths, tempDir: string) {
    super({ driver: new FilesystemDriver({ root: paths.root, tempDir }), tempDir, volume: paths });
  }
}

/**
 * One blob being written: bytes go to a local spool file and a running hash; commit() hands the
 * file to the driver only if the digest (and the expected size, when known) match. Past
 * HASH_OFF_THREAD_BYTES the hash moves to a worker that reads the file behind the writer
 * (see file-hasher.ts), so a large layer's sha256 does not hold the main thread.
 */
export class BlobWriter {
  readonly digest: Digest;
  readonly path: string;
  private readonly store: BlobStore;
  private readonly handle: FileHandle;
  /** The hash on this thread, while the blob is small; undefined once the worker has it. */
  private hash: Hash | undefined;
  private job: FileHashJob | undefined;
  /** The driver's upload of the file as it is written (uploadWhileWriting), when it has one. */
  private staged: StagedFile | undefined;
  private closed = false;
  written = 0;

  constructor(store: BlobStore, digest: Digest, path: string, handle: FileHandle) {
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

  /**
   * Lets the store take the file in while it is written (StorageDriver.stageFile), for content
   * that will be committed and whose size is announced: on S3 the parts go up during the
   * download and persist() only completes the upload. Nothing is visible before persist(); an
   * abort() removes what went up. A no-op on a driver without it (the filesystem renames).
   */
  uploadWhileWriting(expectedSize: number): void {
    if (this.staged || this.closed) return;
    this.staged = this.store.driver.stageFile?.(this.path, StoreKeys.blob(this.digest), expectedSize);
    this.staged?.grown(this.written);
  }

  /** Starts over from byte 0 (an upstream that could not resume sends the whole blob again). */
  async reset(): Promise<void> {
    // What went up is of the old bytes.
    await this.takeStaged()?.cancel();
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
    this.staged?.grown(this.written);
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

  /**
   * Hands the verified file to the driver (flushed and renamed into place on the filesystem,
   * uploaded on S3); aborts on a failure. `signal` cancels the commit: nothing is then visible.
   */
  async persist(signal?: AbortSignal): Promise<void> {
    try {
      await this.close();
      const key = StoreKeys.blob(this.digest);
      // Whether the blob is new to the store (a fleet peer may have stored it meanwhile): one
      // stat per commit, so the store's figures count it once.
      const existed = this.store.listener ? (await this.store.driver.stat(key)) !== undefined : true;
      const staged = this.takeStaged();
      if (staged) await staged.commit(signal);
      else await this.store.driver.commitFile(this.path, key, signal);
      if (!existed) this.store.listener?.blobAdded(this.digest.value, this.written);
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  async abort(): Promise<void> {
    this.job?.cancel();
    // Before the file goes: the parts in flight read it.
    await this.takeStaged()
      ?.cancel()
      .catch(() => {});
    await this.close();
    await unlink(this.path).catch(() => {});
  }

  /** The staged upload, handed over once (to commit it or to cancel it). */
  private takeStaged(): StagedFile | undefined {
    const staged = this.staged;
    this.staged = undefined;
    return staged;
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
  // A driver's fault says the same of any medium: unreachable, refused, full or missing.
  if (error instanceof StorageDriverError) return error.fault !== 'invalid-key' && error.fault !== 'too-large';
  return UNWRITABLE.has((error as NodeJS.ErrnoException)?.code ?? '');
}
