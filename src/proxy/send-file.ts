import { close, read } from 'node:fs';
import type { Writable } from 'node:stream';

/** Bytes per read and per socket write. Two of these per client are all a transfer holds. */
const CHUNK = 256 * 1024;

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
  // A blob that fits in one chunk is one read and one write: one buffer is enough.
  const first = acquire(Math.min(CHUNK, length));
  const buffers = length <= CHUNK ? [first, first] : [first, acquire(CHUNK)];
  const guard = closeGuard(res);
  let position = start;
  let turn = 0;
  let writing: Promise<void> | undefined;
  try {
    while (position <= end) {
      const upTo = await guard.wait(source.readableUpTo(position, end));
      // No more bytes will come: the end of a blob whose size upstream did not announce.
      if (upTo <= position) break;
      const buffer = buffers[turn];
      turn ^= 1;
      // With one buffer, its previous write must be done before it is read into again.
      if (buffers[0] === buffers[1]) await guard.wait(writing);
      const bytesRead = await readAt(source.fd, buffer, Math.min(buffer.length, upTo - position, end + 1 - position), position);
      if (bytesRead === 0) throw new Error('blob file shorter than expected');
      position += bytesRead;
      // The previous write must be done before this one starts; the buffer read into next
      // (the previous write's) is then free again.
      await guard.wait(writing);
      writing = writeChunk(res, bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      writing.catch(() => {});
    }
    await guard.wait(writing);
    await guard.wait(endResponse(res));
    // Only after a clean end: after a failure a write may still hold a buffer.
    release(buffers[0]);
    if (buffers[1] !== buffers[0]) release(buffers[1]);
  } finally {
    guard.dispose();
  }
}

/**
 * Chunk buffers kept between transfers. Allocating and freeing half a megabyte per transfer
 * leaves the allocator's heap fragmented and the process's RSS high after a burst; reusing
 * them keeps memory at what the busiest moment needed, and no more than MAX_POOLED of them.
 */
const pool: Buffer[] = [];
const MAX_POOLED = 64;

function acquire(size: number): Buffer {
  if (size === CHUNK) return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
  // Small blobs (configs, small layers) come from Node's shared slab when they can.
  return Buffer.allocUnsafe(size);
}

function release(buffer: Buffer): void {
  if (buffer.length === CHUNK && pool.length < MAX_POOLED) pool.push(buffer);
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

/**
 * Makes waits give up when the client goes away. One waiter at a time, and nothing attached to
 * a long-lived promise: racing every chunk against one "closed" promise would pile a reaction
 * per chunk onto it for the whole transfer.
 */
function closeGuard(res: Writable): { wait<T>(value: Promise<T> | T): Promise<T>; dispose(): void } {
  let lost: Error | undefined;
  let interrupt: ((error: Error) => void) | undefined;
  // 'close' also follows a normal end; only a close before the response finished is a loss.
  const onClose = (): void => {
    if (res.writableFinished) return;
    lost = new Error('client closed the connection');
    interrupt?.(lost);
  };
  if (res.destroyed) onClose();
  else res.once('close', onClose);
  return {
    wait<T>(value: Promise<T> | T): Promise<T> {
      if (lost) return Promise.reject(lost);
      return new Promise<T>((resolve, reject) => {
        interrupt = reject;
        Promise.resolve(value).then(resolve, reject);
      });
    },
    dispose() {
      interrupt = undefined;
      res.off('close', onClose);
    },
  };
}
