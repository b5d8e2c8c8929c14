import { randomBytes } from 'node:crypto';
import { createWriteStream, type Stats } from 'node:fs';
import { link, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from '../../logging/logger.ts';
import type { ByteRange } from '../readable-blob-store.ts';
import { FileHashJob } from '../file-hasher.ts';
import { OpenedFile } from './opened-file.ts';
import type { ListedObject, ObjectInfo, OpenedObject, StagedFile, StorageDriver, StorageUsage } from './storage-driver.ts';

/*
 * storage.s3.readcache: a bounded local copy of hot blobs, in front of a driver over the network.
 * A warm blob read from the bucket costs 2.6–7.7 CPU-s/GiB (node:http parsing S3's response) and
 * holds response buffers; the same blob from a local file goes out by the hit path's sendfile
 * loop (OpenedFile). Off by default; only blobs (content addressed, key `blobs/<alg>/<xx>/<hex>`)
 * are cached, everything else passes through untouched.
 *
 * - Filled with verified copies only, two ways: a fill's spool file, verified before the store
 *   commits it, is kept by a hard link as the bucket takes it (commitWithCopy: no byte copied);
 *   and once a blob was served whole from the bucket, a second read of it (in the background,
 *   one GetObject) goes to a temp file in the directory, is hashed (off the main thread) and
 *   renamed to its name only if digest and size matched. Neither slows the client's response.
 * - Names are drawn from the digest parsed out of the key (algorithm and hex checked), never
 *   from a path: nothing from a request names a file outside the directory.
 * - Bounded: the files present plus the fills in flight stay within `maxBytes`; least recently
 *   opened files go first (a file open for a response is unlinked and freed once closed).
 * - Trusted as the filesystem store trusts its disk: verified on fill, not on every read. What
 *   we do check on open is that the file is the very one verified (inode, size, ctime): a file
 *   changed since (written to, replaced) is dropped and the blob is read from the bucket.
 * - A delete through this driver (this instance's eviction) drops the copy first and cancels a
 *   fill of the same blob in flight, so a blob the bucket lost is not served from here. One
 *   deleted elsewhere (another instance of a fleet, `gc` as a command) is found by a HEAD in
 *   the background at most once per RECHECK_MS of a file's use, never on the client's time: it
 *   may be served from here for up to that long, verified bytes still. A bucket that cannot be
 *   asked keeps the copy.
 * - Emptied at start (files of ours only: a name `<alg>-<hex>` or a temp `.fill-…`), so no file
 *   from before a crash is served unverified. One instance per directory.
 */

/** A blob key of StoreKeys.blob: the algorithm and the hex digest (length checked by algorithm). */
const BLOB_KEY = /^blobs\/(sha256|sha384|sha512)\/([0-9a-f]{2})\/([0-9a-f]+)$/;
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
/** A cached file's name, and a fill's temp file name. */
const CACHED_NAME = /^(sha256|sha384|sha512)-[0-9a-f]+$/;
const TEMP_NAME = /^\.fill-[0-9a-f]+$/;
/** Fills going on at once (each is one GetObject of a whole blob). */
const MAX_FILLS = 2;
/** Blobs waiting for a fill (names and sizes only). */
const MAX_WAITING = 64;
/** How long a cached file is served before the bucket is asked (in the background) whether it still has the blob. */
const RECHECK_MS = 60_000;

interface Cached {
  size: number;
  /** What the file was when it was verified: a file that is not that any more is not served. */
  ino: number;
  ctimeMs: number;
  /** performance.now() when the bucket last said it has the blob (or the check was started). */
  checkedAt: number;
}

interface Fill {
  size: number;
  cancelled: boolean;
}

export interface ReadCacheOptions {
  directory: string;
  maxBytes: number;
  logger?: Logger;
  /** RECHECK_MS unless given (tests). */
  recheckMs?: number;
}

export class ReadCacheDriver implements StorageDriver {
  readonly kind: string;
  readonly inner: StorageDriver;
  readonly directory: string;
  readonly maxBytes: number;
  private readonly logger: Logger | undefined;
  private readonly recheckMs: number;
  /** Cached files by name, least recently opened first (a Map keeps insertion order). */
  private readonly files = new Map<string, Cached>();
  private readonly fills = new Map<string, Fill>();
  private readonly waiting = new Map<string, { key: string; size: number }>();
  /** Bytes of the files in `files` plus those of the fills in flight. */
  private usedBytes = 0;
  private closed = false;
  readonly redirectURL?: (key: string) => Promise<string | undefined>;
  readonly putContentIfAbsent?: (key: string, content: Uint8Array | string) => Promise<boolean>;
  readonly stageFile?: (localPath: string, key: string, expectedSize: number) => StagedFile | undefined;

  private constructor(inner: StorageDriver, options: ReadCacheOptions) {
    this.inner = inner;
    this.kind = inner.kind;
    this.directory = options.directory;
    this.maxBytes = options.maxBytes;
    this.logger = options.logger;
    this.recheckMs = options.recheckMs ?? RECHECK_MS;
    if (inner.redirectURL) this.redirectURL = inner.redirectURL.bind(inner);
    if (inner.putContentIfAbsent) this.putContentIfAbsent = inner.putContentIfAbsent.bind(inner);
    if (inner.stageFile) {
      const stage = inner.stageFile.bind(inner);
      // A staged file's commit is a fill's commit, as commitFile's is: a copy is kept alike.
      this.stageFile = (localPath, key, expectedSize) => {
        const staged = stage(localPath, key, expectedSize);
        return staged && { grown: (bytes) => staged.grown(bytes), commit: (signal) => this.commitWithCopy(localPath, key, () => staged.commit(signal)), cancel: () => staged.cancel() };
      };
    }
  }

  /** The cache over `inner`, its directory made and emptied of what an earlier run left. */
  static async create(inner: StorageDriver, options: ReadCacheOptions): Promise<ReadCacheDriver> {
    await mkdir(options.directory, { recursive: true });
    for (const name of await readdir(options.directory)) {
      if (CACHED_NAME.test(name) || TEMP_NAME.test(name)) await unlink(join(options.directory, name)).catch(() => {});
    }
    return new ReadCacheDriver(inner, options);
  }

  /** Bytes the cache holds or is filling now (for tests and the status of the bound). */
  get bytes(): number {
    return this.usedBytes;
  }

  /** Whether a verified copy of the blob at `key` is here now. */
  has(key: string): boolean {
    const name = cachedName(key);
    return name !== undefined && this.files.has(name);
  }

  async open(key: string, knownSize?: number): Promise<OpenedObject | undefined> {
    const name = cachedName(key);
    if (name === undefined) return this.inner.open(key, knownSize);
    const local = await this.openCached(name);
    if (local) {
      this.recheck(key, name);
      return local;
    }
    const opened = await this.inner.open(key, knownSize);
    if (!opened) return undefined;
    return {
      size: opened.size,
      send: async (res: Writable, range: ByteRange) => {
        await opened.send(res, range);
        // Served whole from the bucket: a blob clients pull, worth a local copy.
        if (range.start === 0 && range.end === opened.size - 1) this.startFill(key, name, opened.size);
      },
      release: () => opened.release(),
    };
  }

  /** The cached file of `name`, opened, if it is here and still the file that was verified. */
  private async openCached(name: string): Promise<OpenedObject | undefined> {
    const cached = this.files.get(name);
    if (!cached) return undefined;
    let handle: FileHandle | undefined;
    try {
      handle = await open(join(this.directory, name), 'r');
      const info = await handle.stat();
      if (this.files.get(name) === cached && sameFile(info, cached)) {
        // Most recently used: to the end of the eviction order.
        this.files.delete(name);
        this.files.set(name, cached);
        return new OpenedFile(handle, cached.size);
      }
      this.logger?.warn('read cache: a cached file changed since it was verified; dropped, the blob is read from the store', { file: name });
    } catch {
      // Gone or unreadable: the store serves it.
    }
    await handle?.close().catch(() => {});
    if (this.files.get(name) === cached) this.drop(name);
    return undefined;
  }

  /** Asks the bucket in the background, at most once per recheckMs, whether it still has the blob; drops the copy if not. */
  private recheck(key: string, name: string): void {
    const cached = this.files.get(name);
    if (!cached || performance.now() - cached.checkedAt < this.recheckMs) return;
    cached.checkedAt = performance.now();
    this.inner.stat(key).then(
      (info) => {
        if (!info && this.files.get(name) === cached) this.drop(name);
      },
      () => {},
    );
  }

  /**
   * Copies the blob at `key` into the cache in the background, verified, if there is room:
   * MAX_FILLS at a time, the others waiting in line (at most MAX_WAITING; a blob that finds the
   * line full is copied on a later read).
   */
  private startFill(key: string, name: string, size: number): void {
    if (this.closed || size === 0 || size > this.maxBytes || this.files.has(name) || this.fills.has(name) || this.waiting.has(name)) return;
    if (this.fills.size >= MAX_FILLS) {
      if (this.waiting.size < MAX_WAITING) this.waiting.set(name, { key, size });
      return;
    }
    if (!this.makeRoom(size)) return;
    const fill: Fill = { size, cancelled: false };
    this.fills.set(name, fill);
    this.usedBytes += size;
    void this.fill(key, name, fill).finally(() => this.settle(name, fill));
  }

  /** A fill (or a commit's copy) ended: its reservation goes back and the next waiting blob may go. */
  private settle(name: string, fill: Fill): void {
    this.fills.delete(name);
    this.usedBytes -= fill.size;
    const next = this.waiting.entries().next();
    if (next.done) return;
    const [nextName, { key: nextKey, size: nextSize }] = next.value;
    this.waiting.delete(nextName);
    this.startFill(nextKey, nextName, nextSize);
  }

  private async fill(key: string, name: string, fill: Fill): Promise<void> {
    const temp = join(this.directory, `.fill-${randomBytes(8).toString('hex')}`);
    const algorithm = name.slice(0, name.indexOf('-'));
    const hex = name.slice(name.indexOf('-') + 1);
    let visible = false;
    try {
      const opened = await this.inner.open(key, fill.size);
      if (!opened) return;
      if (opened.size !== fill.size) {
        opened.release();
        return;
      }
      await opened.send(createWriteStream(temp, { flags: 'wx' }), { start: 0, end: fill.size - 1 });
      const job = new FileHashJob(temp, algorithm);
      const actual = await job.digest(fill.size);
      const info = await stat(temp);
      if (actual !== hex || info.size !== fill.size) {
        this.logger?.warn('read cache: a copy from the store did not match its digest; not cached', { key });
        return;
      }
      visible = await this.place(name, temp, fill);
    } catch (error) {
      this.logger?.debug('read cache: fill failed', { key, error: (error as Error).message });
    } finally {
      if (!visible) await unlink(temp).catch(() => {});
    }
  }

  /**
   * Makes a verified temp file the cached file of `name` (unless the fill was cancelled: a delete
   * came meanwhile); whether it did. The caller removes the temp file when not.
   */
  private async place(name: string, temp: string, fill: Fill): Promise<boolean> {
    if (fill.cancelled || this.closed) return false;
    const path = join(this.directory, name);
    await rename(temp, path);
    try {
      // The rename changed the inode's ctime: what is recorded is the file as it is now.
      const placed = await stat(path);
      if (fill.cancelled || this.closed || placed.size !== fill.size) throw new Error('cancelled');
      // From the fill's reservation to the file's own (settle gives the reservation back).
      this.usedBytes += fill.size;
      this.files.set(name, { size: fill.size, ino: placed.ino, ctimeMs: placed.ctimeMs, checkedAt: performance.now() });
      return true;
    } catch {
      await unlink(path).catch(() => {});
      return true;
    }
  }

  /**
   * Commits a fill's verified spool file through `commit` (the bucket's upload) and keeps a copy
   * of it: a hard link taken before the upload (the driver removes the spool file), made the
   * cached file once the object is in the bucket, dropped if the commit failed. No bytes are
   * copied; a directory on another file system than the spool (EXDEV) or no room simply means
   * no copy. The file is verified: the store hands a driver only files whose digest matched.
   */
  private async commitWithCopy(localPath: string, key: string, commit: () => Promise<void>): Promise<void> {
    const name = cachedName(key);
    const copy = name === undefined ? undefined : await this.linkCommitted(localPath, name);
    if (!copy) return commit();
    let placed = false;
    try {
      await commit();
      placed = await this.place(name!, copy.temp, copy.fill).catch(() => false);
    } finally {
      if (!placed) await unlink(copy.temp).catch(() => {});
      this.settle(name!, copy.fill);
    }
  }

  /** A hard link to a file about to be committed, its size reserved; undefined when no copy is to be kept. */
  private async linkCommitted(localPath: string, name: string): Promise<{ temp: string; fill: Fill } | undefined> {
    if (this.closed || this.files.has(name) || this.fills.has(name)) return undefined;
    const size = await stat(localPath).then((info) => info.size, () => 0);
    if (size === 0 || size > this.maxBytes || this.files.has(name) || this.fills.has(name) || !this.makeRoom(size)) return undefined;
    const fill: Fill = { size, cancelled: false };
    this.fills.set(name, fill);
    this.usedBytes += size;
    const temp = join(this.directory, `.fill-${randomBytes(8).toString('hex')}`);
    try {
      await link(localPath, temp);
      return { temp, fill };
    } catch {
      this.settle(name, fill);
      return undefined;
    }
  }

  /** Evicts least recently used files until `size` more bytes fit; false if they cannot (fills in flight hold the rest). */
  private makeRoom(size: number): boolean {
    for (const name of this.files.keys()) {
      if (this.usedBytes + size <= this.maxBytes) break;
      this.drop(name);
    }
    return this.usedBytes + size <= this.maxBytes;
  }

  /** Forgets a cached file and removes it (a response that has it open keeps reading it). */
  private drop(name: string): void {
    const cached = this.files.get(name);
    if (!cached) return;
    this.files.delete(name);
    this.usedBytes -= cached.size;
    void unlink(join(this.directory, name)).catch(() => {});
  }

  async delete(key: string): Promise<boolean> {
    const name = cachedName(key);
    if (name !== undefined) {
      // Before the bucket's delete: from now on this blob is never served from here.
      const fill = this.fills.get(name);
      if (fill) fill.cancelled = true;
      this.waiting.delete(name);
      this.drop(name);
    }
    return this.inner.delete(key);
  }

  getContent(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    return this.inner.getContent(key, maxBytes);
  }

  putContent(key: string, content: Uint8Array | string): Promise<void> {
    return this.inner.putContent(key, content);
  }

  commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    return this.commitWithCopy(localPath, key, () => this.inner.commitFile(localPath, key, signal));
  }

  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(key);
  }

  children(prefix: string): AsyncIterable<string> {
    return this.inner.children(prefix);
  }

  walk(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.walk(prefix);
  }

  probe(): Promise<void> {
    return this.inner.probe();
  }

  usage(): Promise<StorageUsage> {
    return this.inner.usage();
  }

  cleanup(olderThanMs: number): Promise<number> {
    return this.inner.cleanup(olderThanMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.waiting.clear();
    for (const fill of this.fills.values()) fill.cancelled = true;
    await this.inner.close();
  }
}

/** The cache's file name for a blob key (`sha256-<hex>`), or undefined for any other key. */
export function cachedName(key: string): string | undefined {
  const match = BLOB_KEY.exec(key);
  if (!match) return undefined;
  const [, algorithm, prefix, hex] = match;
  if (hex.length !== HEX_LENGTH[algorithm] || !hex.startsWith(prefix)) return undefined;
  return `${algorithm}-${hex}`;
}

function sameFile(info: Stats, cached: Cached): boolean {
  return info.isFile() && info.ino === cached.ino && info.size === cached.size && info.ctimeMs === cached.ctimeMs;
}
