import type { Writable } from 'node:stream';
import type { ByteRange } from '../readable-blob-store.ts';

/*
 * The storage driver: bytes at keys, and nothing else. What the bytes mean (blobs addressed by
 * digest and verified before they are committed, repositories' links, tags, the store id) is
 * written once above it (src/storage/), as distribution writes it over its
 * storagedriver.StorageDriver; each driver (filesystem, s3, in-memory) only keeps bytes, and
 * every driver passes one conformance suite (spec/support/driver-conformance.ts).
 *
 * Keys are relative, '/'-separated, and drawn by src/storage/paths.ts (the layout of the
 * filesystem store, unchanged: an existing store is served as it is). A key is checked by
 * checkKey before any driver touches it, so nothing read from a request, a peer or Redis can
 * name an object outside the store.
 *
 * Content enters the store in one of two ways:
 * - putContent: small objects (a tag, a link, a manifest), replaced whole and atomically;
 * - commitFile: a verified local file (a fill's spool, see src/storage/blob-store.ts) moved
 *   into the store at a key: a rename on the filesystem driver (the spool is on the store's
 *   own filesystem), a multipart upload completed only once every part is in on S3 (so the
 *   object is visible whole or not at all; a crash leaves at most an incomplete upload, which
 *   the driver's `cleanup` removes).
 * The digest is verified before either is called: a driver never sees unverified blob bytes.
 */

/** What a driver knows of a stored object. */
export interface ObjectInfo {
  size: number;
  /** When the object was last written (the access clock, not this, says when it was used). */
  modifiedMs: number;
}

/** One entry of a recursive listing (walk). */
export interface ListedObject extends ObjectInfo {
  key: string;
}

/**
 * An object opened to serve one response. `send` writes bytes `range.start`..`range.end`
 * (inclusive) to `res` and ends it, or rejects when the store fails mid-way or the client
 * leaves (the caller then breaks the connection). `release` frees what is held (a file, a
 * response body) and may always be called, also after `send`.
 */
export interface OpenedObject {
  readonly size: number;
  send(res: Writable, range: ByteRange): Promise<void>;
  release(): void;
}

/** A file being moved into the store while it is written (StorageDriver.stageFile). */
export interface StagedFile {
  /** The file holds its first `bytes` bytes now: what is there may go up. */
  grown(bytes: number): void;
  /**
   * The file is complete and verified: the rest goes up and the object becomes visible whole, as
   * commitFile does it (the same contract: the file is gone afterwards, `signal` cancels and
   * then nothing is visible, a failure leaves no upload behind).
   */
  commit(signal?: AbortSignal): Promise<void>;
  /**
   * Nothing becomes visible (the digest did not match, the download failed): what is in flight
   * stops, and what went up is removed. Resolves once nothing reads the file any more; the
   * store's removal of what went up may go on after (it never holds a client: a crash leaves the
   * same, for `cleanup`). The file stays: its writer removes it.
   */
  cancel(): Promise<void>;
}

/** What `usage` answers: the space the store's medium has (undefined where it has no limit, e.g. a bucket). */
export interface StorageUsage {
  totalBytes?: number;
  freeBytes?: number;
}

export interface StorageDriver {
  /** 'filesystem' | 's3' | 'inmemory': for logs, metrics and the status page. */
  readonly kind: string;

  /** A small object whole (at most `maxBytes`, else StorageDriverError 'too-large'); undefined when there is none. */
  getContent(key: string, maxBytes?: number): Promise<Buffer | undefined>;
  /** Writes a small object whole: readers see the old content or the new, never a part. */
  putContent(key: string, content: Uint8Array | string): Promise<void>;
  /**
   * Moves a complete local file into the store at `key` (see above). The file is gone
   * afterwards, whether it succeeded or not. Of two commits of one key, the key ends up holding
   * one of the two, whole. `signal` cancels a commit in progress: nothing is then visible.
   */
  commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void>;
  /**
   * Optional: begins moving into the store at `key` a local file that is still being written (a
   * fill's spool: appended in order, never rewritten) and will be `expectedSize` bytes, so that
   * most of it is in the store by the time its digest verified: on S3 the parts of a multipart
   * upload go up while the download brings them, and only the completion waits for the verify.
   * Nothing is visible at `key` before StagedFile.commit. Undefined when staging would bring
   * nothing (a file small enough for one request): commitFile after the verify then.
   */
  stageFile?(localPath: string, key: string, expectedSize: number): StagedFile | undefined;
  /**
   * Writes a small object only if none is at `key` (link(2) on a filesystem, a PUT with
   * `If-None-Match: *` on S3); true when this call wrote it. Of two callers at once, exactly
   * one writes: what makes two instances starting together on a new store agree on its id
   * (store-id.ts). Optional: without it the store id is written and read back.
   */
  putContentIfAbsent?(key: string, content: Uint8Array | string): Promise<boolean>;

  stat(key: string): Promise<ObjectInfo | undefined>;
  /**
   * Opens an object to serve it; undefined when there is none. `knownSize` (from the descriptor
   * cache) lets a driver skip a metadata request: a warm pull from S3 costs one GET per blob.
   */
  open(key: string, knownSize?: number): Promise<OpenedObject | undefined>;

  /**
   * The names directly under `prefix` (files and "directories", as readdir gives them; a
   * prefix with none, or missing, gives none). Paginates on its own.
   */
  children(prefix: string): AsyncIterable<string>;
  /** Every object under `prefix`, recursively, in no promised order. Paginates on its own. */
  walk(prefix: string): AsyncIterable<ListedObject>;

  /** Deletes one object; false when there was none. */
  delete(key: string): Promise<boolean>;

  /** Throws (StorageDriverError) unless the store can be read now: readiness and `config check`. */
  probe(): Promise<void>;
  usage(): Promise<StorageUsage>;
  /** Removes what crashed writers left (stale temp files, incomplete multipart uploads) older than `olderThanMs`; how many. */
  cleanup(olderThanMs: number): Promise<number>;
  /** A URL a client may fetch the object from directly (storage.redirect), or undefined. */
  redirectURL?(key: string): Promise<string | undefined>;
  /** Frees connections and timers. */
  close(): Promise<void>;
}

/**
 * What went wrong, in the terms the layers above decide on:
 * - 'unavailable': the medium cannot be reached or answers slowly or with 5xx (retry later;
 *   clients are passed through from upstream meanwhile);
 * - 'denied': credentials refused or missing permission (403; an operator must act);
 * - 'full': no space or quota (the store takes nothing more; pass through);
 * - 'missing-store': the root directory or bucket does not exist;
 * - 'invalid-key': a key checkKey refuses;
 * - 'too-large': getContent past its `maxBytes`.
 */
export type StorageFault = 'unavailable' | 'denied' | 'full' | 'missing-store' | 'invalid-key' | 'too-large';

export class StorageDriverError extends Error {
  readonly fault: StorageFault;
  /** The driver operation ('getContent', 'commitFile', …) and, where one was given, the key. */
  readonly operation: string;
  readonly key: string | undefined;

  constructor(fault: StorageFault, operation: string, message: string, options: { key?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'StorageDriverError';
    this.fault = fault;
    this.operation = operation;
    this.key = options.key;
  }
}

/** The longest key a driver takes (S3's limit is 1024 bytes). */
const MAX_KEY_BYTES = 1024;
/**
 * A key component: what paths.ts builds from validated names (lowercase components, tags
 * `[\w][\w.-]*`, registry hosts with a port, hex digests, `_` markers). Never empty, never
 * `.` or `..`, no leading dot, no backslash or control character.
 */
const COMPONENT = /^[A-Za-z0-9_:@+=-][A-Za-z0-9._:@+=-]*$/;

/** Throws StorageDriverError 'invalid-key' unless `key` is one a driver may use. */
export function checkKey(key: string, operation: string): void {
  const bad = (why: string) => new StorageDriverError('invalid-key', operation, `refused key: ${why}`, { key: printable(key) });
  if (typeof key !== 'string' || key.length === 0) throw bad('empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw bad(`longer than ${MAX_KEY_BYTES} bytes`);
  for (const component of key.split('/')) {
    if (!COMPONENT.test(component)) throw bad(`component ${JSON.stringify(printable(component))} is not allowed`);
  }
}

/** A prefix is a key or '' (the whole store); a trailing '/' is allowed. */
export function checkPrefix(prefix: string, operation: string): void {
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (trimmed !== '') checkKey(trimmed, operation);
}

/** A key as it may appear in a message: control characters escaped, at most 200 characters. */
function printable(text: string): string {
  return String(text).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).slice(0, 200);
}
