import type { Writable } from 'node:stream';
import type { Digest } from '../registry/digest.ts';

/*
 * The one shape every way of serving a blob has, as distribution's BlobStatter/BlobProvider:
 * the local store implements it, and the proxy store (src/proxy/) wraps the local one with the
 * same interface. Behind it a blob comes from a stored file, a fill this instance runs, a fill
 * another instance runs, or straight from upstream; the HTTP handler cannot tell them apart.
 */

/** Where a blob answer came from, for X-Pullmirror-Cache and the traffic figures. */
export type BlobOrigin = 'cache' | 'upstream';

/** Bytes `start` to `end` of a blob, both inclusive (an HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/** What a HEAD answers: the blob's size when it is known, and where the answer came from. */
export interface BlobInfo {
  digest: string;
  size: number | undefined;
  origin: BlobOrigin;
}

/**
 * One blob opened for one response. `send` writes the bytes and ends the response, or rejects
 * when the content fails or the client leaves (the caller then breaks the connection, so a
 * client never sees a clean end of bad content). `release` frees what the source holds (a
 * file, an upstream body) and may always be called, also after `send`; callers call it in a
 * `finally`.
 */
export interface BlobSource {
  readonly digest: string;
  /** Undefined only when upstream did not announce it. */
  readonly size: number | undefined;
  readonly origin: BlobOrigin;
  /** Whether `send` can cut a range; a pass-through sends the whole blob. */
  readonly ranged: boolean;
  send(res: Writable, range?: ByteRange): Promise<void>;
  release(): void;
}

/** Which blob a request is about; the proxy store's references also name the repository. */
export interface BlobRef {
  digest: Digest;
}

/** A store blobs are read from: undefined means "not here" (an expected outcome, not an error). */
export interface ReadableBlobStore<Ref extends BlobRef = BlobRef> {
  stat(ref: Ref): Promise<BlobInfo | undefined>;
  open(ref: Ref): Promise<BlobSource | undefined>;
}
