import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../registry/digest.ts';
import type { BlobSource } from '../storage/readable-blob-store.ts';
import type { ResumableBlobBody } from './upstream-blob.ts';

/**
 * A blob streamed from upstream to one client without being stored: the store is full,
 * read-only or failing. The body is resumed across dropped connections like a fill's
 * (ResumableBlobBody), hashed on the way, and the last one is held back until the digest
 * verifies, so a corrupt or cut blob ends in a broken connection, never in a clean one.
 * Upstream, verifier and response are one pipeline: an error at either end reaches the other.
 */
export class PassThroughSource implements BlobSource {
  readonly digest: string;
  readonly size: number | undefined;
  readonly origin = 'upstream' as const;
  readonly ranged = false;
  private readonly parsed: Digest;
  private readonly body: ResumableBlobBody;
  private released = false;
  /** Told once, when the source is let go (sent or not). */
  private readonly onRelease?: () => void;

  constructor(digest: Digest, body: ResumableBlobBody, onRelease?: () => void) {
    this.onRelease = onRelease;
    this.parsed = digest;
    this.digest = digest.value;
    this.size = body.size;
    this.body = body;
  }

  async send(res: Writable): Promise<void> {
    // The client gone, the upstream body goes at once: the pipeline alone would wait for the
    // chunk generator to reach its next yield, which a stalled upstream may never bring.
    const onClose = () => this.release();
    res.once('close', onClose);
    try {
      await pipeline(Readable.from(this.body.chunks(), { objectMode: false }), verifying(this.parsed, this.size), res);
    } finally {
      res.off('close', onClose);
      this.release();
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    // Destroys the upstream body in flight (a no-op once it ended).
    this.body.close();
    this.onRelease?.();
  }
}

/** Hashes the bytes going through and holds the last chunk back until they verify. */
function verifying(digest: Digest, expectedSize: number | undefined): Transform {
  const hash = createHash(digest.algorithm);
  let held: Buffer | undefined;
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      hash.update(chunk);
      size += chunk.length;
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush(callback: TransformCallback) {
      const actual = `${digest.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest.value || (expectedSize !== undefined && size !== expectedSize)) {
        callback(new Error('upstream content does not match its digest'));
        return;
      }
      callback(null, held);
    },
  });
}
