import { close, read } from 'node:fs';
import type { Writable } from 'node:stream';

/**
 * Bytes per read and per socket write. A client that stops reading pins the one buffer of its
 * pending write (see below): 128 KiB, where 256 KiB chunks with read-ahead pinned 512 KiB.
 */
const CHUNK = 128 * 1024;

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
 * At most two buffers per transfer, from a pool: one is read from disk while the other is
 * being written to the socket, so disk and network overlap for a client that keeps up. A
 * client that falls behind (its write did not go straight into the kernel's buffer) gets no
 * read-ahead: the next read waits for that write, so a stalled client holds one buffer, not
 * two, until http.sendtimeout closes it. No buffer per chunk means no garbage for the GC to
 * chase while many clients stream big blobs. Rejects if the client goes away or the source
 * fails; the caller then breaks the connection.
 */
export async function sendFileRange(source: FileBytes, res: Writable, start: number, end: number): Promise<void> {
  const length = end - start + 1;
  if (length <= 0) {
    await endResponse(res);
    return;
  }
  const guard = closeGuard(res);
  let position = start;
  /** The write in flight, and whether the socket took it without queueing. */
  let writing: Promise<void> | undefined;
  let behind = false;
  try {
    while (position <= end) {
      const upTo = await guard.wait(source.readableUpTo(position, end));
      // No more bytes will come: the end of a blob whose size upstream did not announce.
      if (upTo <= position) break;
      if (behind) await guard.wait(writing);
      const buffer = acquire(Math.min(CHUNK, length));
      const bytesRead = await readAt(source.fd, buffer, Math.min(buffer.length, upTo - position, end + 1 - position), position);
      if (bytesRead === 0) throw new Error('blob file shorter than expected');
      position += bytesRead;
      // Writes go out in order, one at a time: the previous one must be done.
      await guard.wait(writing);
      const write = writeChunk(res, bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      behind = !write.flushed;
      // Back to the pool only after a clean write: after a failure the socket may still hold it.
      writing = write.done.then(() => release(buffer));
      writing.catch(() => {});
    }
    await guard.wait(writing);
    await guard.wait(endResponse(res));
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

/** Writes a chunk; `flushed` is false when the socket had to queue it (the client is behind). */
function writeChunk(res: Writable, chunk: Buffer): { done: Promise<void>; flushed: boolean } {
  let flushed = true;
  const done = new Promise<void>((resolve, reject) => {
    flushed = res.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
  return { done, flushed };
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
