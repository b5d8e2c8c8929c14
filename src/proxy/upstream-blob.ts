import { skipBytes } from '../util/skip-bytes.ts';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';

/** A blob of one upstream repository: what a miss is fetched as. */
export interface UpstreamBlobRef {
  digest: Digest;
  upstream: UpstreamRegistry;
  /** The repository name as upstream knows it (`library/alpine`). */
  name: string;
}

/** One upstream answer for a blob: its body starts at byte `offset` of the blob. */
export interface UpstreamBlobResponse {
  body: Readable;
  offset: number;
  /** The whole blob's size, when upstream announced it. */
  size: number | undefined;
}

/**
 * GETs a blob from upstream from byte `offset` on (a Range request past 0). An upstream that
 * ignores the Range answers 200 from byte 0; the answer says so in `offset`. Any other status
 * is the client's error, with the body drained so the connection is reused.
 */
export async function getUpstreamBlob(ref: UpstreamBlobRef, offset = 0): Promise<UpstreamBlobResponse> {
  const { upstream, name, digest } = ref;
  const response = await upstream.request({
    method: 'GET',
    path: `/v2/${name}/blobs/${digest.value}`,
    repository: name,
    headers: offset > 0 ? { range: `bytes=${offset}-` } : undefined,
  });
  if (response.statusCode === 200) {
    const length = header(response, 'content-length');
    return { body: response.body, offset: 0, size: length === undefined ? undefined : Number(length) };
  }
  if (response.statusCode === 206) {
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header(response, 'content-range') ?? '');
    if (range && Number(range[1]) === offset) {
      return { body: response.body, offset, size: range[2] === '*' ? undefined : Number(range[2]) };
    }
    response.body.destroy();
    throw new RegistryError('UPSTREAM_UNAVAILABLE', `upstream answered a range other than bytes=${offset}-`);
  }
  await response.body.dump();
  throw upstreamStatusError(response, 'BLOB_UNKNOWN');
}

/** How an interrupted upstream transfer is resumed (proxy.resume). */
export interface ResumePolicy {
  /** Attempts in a row that may bring no new byte before the transfer is given up. */
  retries: number;
  backoffMs: number;
}

/** Tells who watches a transfer that it was interrupted at `offset` and is being resumed. */
export type ResumeListener = (info: { offset: number; attempt: number; error: string }) => void;

/**
 * The bytes of one blob from upstream, from `first.offset` on, as one stream of chunks however
 * often the connection drops. An interrupted body (a reset, an idle timeout, a body shorter
 * than announced) is asked for again from the next byte needed (`Range: bytes=N-`), after a
 * backoff; bytes an upstream that cannot resume sends again are skipped. Retries are counted
 * since the last byte of progress, not in total: a link that cuts every long transfer still
 * delivers a blob of any size, one that brings nothing gives up after `retries` attempts.
 *
 * `close()` destroys the body in flight at once, whatever the reader is waiting for, and no
 * request is made after it: no upstream socket outlives the body's owner.
 */
export class ResumableBlobBody {
  readonly size: number | undefined;
  private readonly ref: UpstreamBlobRef;
  private readonly policy: ResumePolicy;
  private readonly onResume?: ResumeListener;
  private response: UpstreamBlobResponse;
  private closed = false;

  constructor(ref: UpstreamBlobRef, first: UpstreamBlobResponse, policy: ResumePolicy, onResume?: ResumeListener) {
    this.ref = ref;
    this.response = first;
    this.size = first.size;
    this.policy = policy;
    this.onResume = onResume;
  }

  close(): void {
    this.closed = true;
    this.response.body.destroy();
  }

  /** The chunks, from the first response's offset on; iterate once. */
  async *chunks(): AsyncGenerator<Buffer, void, undefined> {
    const size = this.size;
    let position = this.response.offset;
    let attempts = 0;
    let progressMark = position;
    try {
      for (;;) {
        // Bytes of this body before `position` were delivered already (an upstream that restarted at 0).
        let failure: Error | undefined;
        try {
          for await (const chunk of skipBytes(this.response.body as AsyncIterable<Buffer>, position - this.response.offset)) {
            if (size !== undefined && position + chunk.length > size) {
              throw new RegistryError('SIZE_INVALID', `upstream sent more than the ${size} bytes it announced`, { status: 502 });
            }
            position += chunk.length;
            yield chunk;
          }
        } catch (error) {
          if (error instanceof RegistryError) throw error;
          failure = error as Error;
        }
        if (this.closed) throw new Error('upstream transfer closed');
        // Every announced byte came (the connection may have broken after the last one): done;
        // the digest is checked by the reader.
        if (size !== undefined ? position >= size : !failure) return;
        failure ??= new Error(`upstream body ended after ${position} of ${size} bytes`);
        this.response.body.destroy();
        if (position > progressMark) {
          progressMark = position;
          attempts = 0;
        }
        // Ask again until a body comes; a refused or failed request is an attempt without progress.
        for (;;) {
          if (attempts >= this.policy.retries) throw failure;
          attempts++;
          this.onResume?.({ offset: position, attempt: attempts, error: failure.message });
          await delay(this.policy.backoffMs * 2 ** (attempts - 1));
          if (this.closed) throw new Error('upstream transfer closed');
          try {
            this.response = await getUpstreamBlob(this.ref, position);
            break;
          } catch (error) {
            // The blob is gone or refused upstream: no retry mends that.
            if (error instanceof RegistryError && error.status < 500) throw error;
            failure = error as Error;
          }
        }
        // Closed while that request was on its way: its body is not read.
        if (this.closed) throw new Error('upstream transfer closed');
        if (this.response.size !== undefined && size !== undefined && this.response.size !== size) {
          throw new RegistryError('SIZE_INVALID', `upstream changed the blob's size from ${size} to ${this.response.size}`, { status: 502 });
        }
      }
    } finally {
      this.response.body.destroy();
    }
  }
}
