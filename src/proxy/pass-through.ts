import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Digest } from '../registry/digest.ts';

/**
 * For blobs streamed straight from upstream to one client without being stored (the store is
 * full or unwritable): hashes the bytes on the way and holds the last chunk back until the
 * digest verifies, so a corrupt blob ends in a broken transfer, never in a clean one.
 */
export function verifyingPassThrough(digest: Digest, expectedSize: number | undefined): Transform {
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
