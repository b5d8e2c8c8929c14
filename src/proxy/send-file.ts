import { close, read } from 'node:fs';
import type { Writable } from 'node:stream';

/** Bytes per read and per socket write. Two of these per client are all a transfer holds. */
const CHUNK = 512 * 1024;

/**
 * Where the bytes of a blob can be read, and how many are there yet: a stored file has them
 * all; a fill in flight has what it wrote so far (and fails if the content turns out bad).
 */
export interface FileBytes {
  readonly fd: number;
  /**
   * Resolves with the position up to which (exclusive) bytes may be read now, once it is past
   * `position`, or with `position` when no more will come; rejects when the content went bad.
   */
  readableUpTo(position: number, end: number): number | Promise<number>;
}

/**
 * Sends bytes [start, end] (inclusive) of a file to a response, then ends it.
 *
 * Two buffers per transfer, reused: one is read from disk while the other is being written to
 * the socket, and a buffer is read into again only after its write completed. No buffer per
 * chunk means no garbage for the GC to chase while many clients stream big blobs, which is what
 * keeps the memory of 16 clients on a 256 MiB blob small. Rejects if the client goes away or
 * the source fails; the caller then breaks the connection.
 */
export async function sendFileRange(source: FileBytes, res: Writable, start: number, end: number): Promise<void> {
  const length = end - start + 1;
  if (length <= 0) {
    await endResponse(res);
    return;
  }
  const size = Math.min(CHUNK, length);
  // A blob that fits in one chunk is one read and one write: one buffer is enough.
  const first = Buffer.allocUnsafeSlow(size);
  const buffers = length <= CHUNK ? [first, first] : [first, Buffer.allocUnsafeSlow(size)];
  const gone = closedPromise(res);
  let position = start;
  let turn = 0;
  let writing: Promise<void> | undefined;
  try {
    while (position <= end) {
      const upTo = await Promise.race([source.readableUpTo(position, end), gone]);
      // No more bytes will come: the end of a blob whose size upstream did not announce.
      if (upTo <= position) break;
      const buffer = buffers[turn];
      turn ^= 1;
      // With one buffer, its previous write must be done before it is read into again.
      if (buffers[0] === buffers[1]) await Promise.race([writing, gone]);
      const bytesRead = await readAt(source.fd, buffer, Math.min(buffer.length, upTo - position, end + 1 - position), position);
      if (bytesRead === 0) throw new Error('blob file shorter than expected');
      position += bytesRead;
      // The previous write must be done before this one starts; the buffer read into next
      // (the previous write's) is then free again.
      await Promise.race([writing, gone]);
      writing = writeChunk(res, bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      writing.catch(() => {});
    }
    await Promise.race([writing, gone]);
    await Promise.race([endResponse(res), gone]);
  } finally {
    gone.settle();
  }
}

/** Closes a file descriptor, ignoring errors (it was only read). */
export function closeFd(fd: number): void {
  close(fd, () => {});
}

function readAt(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, 0, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

function writeChunk(res: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    res.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
}

function endResponse(res: Writable): Promise<void> {
  return new Promise((resolve) => res.end(() => resolve()));
}

/** A promise that rejects when the response closes before it was settled (client gone). */
function closedPromise(res: Writable): Promise<never> & { settle(): void } {
  let onClose = (): void => {};
  const promise = new Promise<never>((_, reject) => {
    onClose = () => reject(new Error('client closed the connection'));
    if (res.destroyed) onClose();
    else res.once('close', onClose);
  }) as Promise<never> & { settle(): void };
  promise.catch(() => {});
  promise.settle = () => res.off('close', onClose);
  return promise;
}
