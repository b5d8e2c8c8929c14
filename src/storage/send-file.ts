import { close, readv } from 'node:fs';
import type { Writable } from 'node:stream';

/**
 * Bytes per buffer, and so per socket write. A client that stops reading pins the one buffer of
 * its write in flight (see below): 128 KiB, whatever the read size.
 */
const CHUNK = 128 * 1024;
/**
 * Buffers read at once, in one readv (one trip through the thread pool), for a client that
 * keeps up. Reading one buffer per trip cost ~5 context switches per 128 KiB (perf stat of warm
 * GETs: 43 000 per GiB; 10 000 with batches), so a flowing client's read grows 1, 2, 4 buffers
 * while the socket takes each write at once. Not more: 512 KiB read and then written stays in
 * the core's L2 cache between the two copies (see also `out` below).
 */
const MAX_BATCH = 4;

/**
 * Where the bytes of a blob can be read, and how many are there yet: a stored file has them
 * all; a fill in flight has what arrived so far (and fails if the content turns out bad).
 */
export interface FileBytes {
  /** Read anew for every read: a followed fill may move to another file between reads. */
  readonly fd: number;
  /**
   * Resolves with the position up to which (exclusive) bytes may be read now, once it is past
   * `position`, or with `position` when no more will come; rejects when the content went bad.
   */
  readableUpTo(position: number, end: number): number | Promise<number>;
  /**
   * A fill's: the bytes at `position` while they are in memory, as a view of at most `max`
   * bytes (a client that keeps up takes the chunks as they arrived, with no read back from the
   * file); else how far (exclusive) the file holds them. Without it, the file holds every
   * readable byte.
   */
  heldAt?(position: number, max: number): Buffer | number;
}

/** Told of the bytes sent and where they were taken from (a fill counts them). */
export type SentListener = (bytes: number, from: 'memory' | 'file') => void;

/** A socket write: settled once the socket has taken the bytes (or failed). */
interface Write {
  readonly done: Promise<void>;
  settled: boolean;
}

/**
 * Sends bytes [start, end] (inclusive) of a file to a response, then ends it.
 *
 * The file is read in batches of CHUNK-sized buffers, each its own allocation from a pool, and
 * written to the socket one buffer at a time, each once the previous one was taken. While the
 * socket takes every write at once (the client keeps up, the kernel's socket buffer has room)
 * the batch doubles, up to MAX_BATCH: fewer, larger reads, and the kernel's buffer keeps the
 * client busy while the next batch is read. When a write is not taken within the event loop's
 * turn, the client is behind: the rest of the batch goes back to the pool unsent (to be read
 * again later), the batch drops to one buffer and nothing is read until that write is done. So
 * a stalled client holds one buffer, the one its socket has, until http.sendtimeout closes it,
 * however fast it read before. A fill's chunks still in memory (FileBytes.heldAt) are written
 * as they are, one at a time, with no read at all. No buffer per chunk means no garbage for
 * the GC to chase while many clients stream big blobs. Rejects if the client goes away or the
 * source fails; the caller then breaks the connection.
 */
export async function sendFileRange(source: FileBytes, res: Writable, start: number, end: number, sent?: SentListener): Promise<void> {
  const length = end - start + 1;
  if (length <= 0) {
    await endResponse(res);
    return;
  }
  const guard = closeGuard(res);
  let position = start;
  let batch = 1;
  // A fill's file is being written through the same thread pool: its readers read one buffer at
  // a time, so the fill's writes (and the upstream transfer that waits on them) do not queue
  // behind their larger reads (bench -- link, 8 clients: the upstream GET took 5 s with single
  // reads, 12–15 s with batches).
  const maxBatch = source.heldAt ? 1 : MAX_BATCH;
  /** The last write; the socket has taken it whenever a read starts. */
  let writing: Write | undefined;
  try {
    while (position <= end) {
      const upTo = await guard.wait(source.readableUpTo(position, end));
      // No more bytes will come: the end of a blob whose size upstream did not announce.
      if (upTo <= position) break;
      const held = source.heldAt?.(position, Math.min(upTo - position, CHUNK));
      if (typeof held === 'object') {
        // A fill's chunk, as it arrived: sent as it is (the client pins at most this one chunk).
        writing = writeChunk(res, held);
        position += held.length;
        sent?.(held.length, 'memory');
        if (!(await guard.wait(takenThisTurn(writing)))) await guard.wait(writing.done);
        continue;
      }
      const wanted = Math.min(upTo, held ?? upTo, end + 1) - position;
      if (wanted <= 0) throw new Error('bytes readable but neither held nor in the file');
      const buffers = acquireBatch(Math.min(batch, Math.ceil(wanted / CHUNK)), length);
      let bytesRead: number;
      try {
        // Not raced against the client leaving: the buffers go back to the pool only once the read is over.
        bytesRead = await readAt(source.fd, views(buffers, wanted), position);
      } catch (error) {
        for (const buffer of buffers) release(buffer);
        throw error;
      }
      if (bytesRead === 0) {
        for (const buffer of buffers) release(buffer);
        throw new Error('blob file shorter than expected');
      }
      let written = 0;
      let next = 0;
      let behind = false;
      // Writes go out in order, one at a time, each once the previous one was taken.
      while (next < buffers.length && written < bytesRead) {
        const buffer = buffers[next++];
        const bytes = Math.min(buffer.length, bytesRead - written);
        writing = writeChunk(res, bytes === buffer.length ? buffer : buffer.subarray(0, bytes), buffer);
        written += bytes;
        if (!(await guard.wait(takenThisTurn(writing)))) {
          behind = true;
          break;
        }
      }
      // Buffers not written (the client fell behind, or a short read) go back unsent.
      for (let i = next; i < buffers.length; i++) release(buffers[i]);
      position += written;
      sent?.(written, 'file');
      if (behind) {
        // Nothing more is read until the socket has taken this write: one buffer held.
        batch = 1;
        await guard.wait(writing!.done);
      } else {
        batch = Math.min(batch * 2, maxBatch);
      }
    }
    if (writing) await guard.wait(writing.done);
    await guard.wait(endResponse(res));
  } finally {
    guard.dispose();
  }
}

/** Views of `buffers` that together hold at most `wanted` bytes (the last one cut short). */
function views(buffers: Buffer[], wanted: number): Buffer[] {
  let left = wanted;
  return buffers.map((buffer) => {
    const view = left >= buffer.length ? buffer : buffer.subarray(0, left);
    left -= view.length;
    return view;
  });
}

/**
 * Whether a write was taken within this turn of the event loop: a socket that takes the bytes
 * into the kernel at once answers before the turn's immediates run; one that had to queue them
 * (its buffer is full: the client is behind) answers only when the socket drains. Rejects when
 * the write failed.
 */
function takenThisTurn(write: Write): Promise<boolean> | boolean {
  if (write.settled) return write.done.then(() => true);
  return new Promise<boolean>((resolve, reject) => {
    const immediate = setImmediate(() => resolve(write.settled));
    write.done.then(
      () => {
        clearImmediate(immediate);
        resolve(true);
      },
      (error: unknown) => {
        clearImmediate(immediate);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/**
 * Chunk buffers kept between transfers. Allocating and freeing them per transfer leaves the
 * allocator's heap fragmented and the process's RSS high after a burst (and a CHUNK is at the
 * mmap threshold `npm start` sets: each would be an mmap, page faults and an munmap); reusing
 * them keeps memory at what the busiest moment needed, and no more than MAX_POOLED of them.
 */
const pool: Buffer[] = [];
const MAX_POOLED = 64;
/**
 * CHUNK buffers out of the pool now (being read into, or written). A batch gets buffers beyond
 * its first only while fewer than MAX_POOLED are out: with many transfers at once every read is
 * one buffer, as it was before batches. Without that bound, 400 readers that each read a few
 * batches before stalling let go of ~1 200 buffers the pool cannot keep, garbage that waits for
 * a GC (RSS per stalled reader in `npm run bench -- stall`: 114 KiB before batches, 157 KiB
 * with them unbounded).
 */
let out = 0;

/** `count` buffers for a transfer of `length` bytes: CHUNKs, or one smaller for a small blob. */
function acquireBatch(count: number, length: number): Buffer[] {
  // Small blobs (configs, small layers) come from Node's shared slab when they can.
  if (length < CHUNK) return [Buffer.allocUnsafe(length)];
  const granted = 1 + Math.max(0, Math.min(count - 1, MAX_POOLED - out - 1));
  out += granted;
  return Array.from({ length: granted }, () => pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK));
}

/** A buffer is done with: back to the pool, unless a failed write may still hold it. */
function release(buffer: Buffer, reusable = true): void {
  if (buffer.length !== CHUNK) return;
  out -= 1;
  if (reusable && pool.length < MAX_POOLED) pool.push(buffer);
}

/** Closes a file descriptor, ignoring errors (it was only read). */
export function closeFd(fd: number): void {
  close(fd, () => {});
}

/** Reads into every buffer from `position` on, in one call; resolves with the bytes read. */
function readAt(fd: number, buffers: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readv(fd, buffers, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

/**
 * Writes `chunk` (a view of `buffer`, when that is one of the pool's); `buffer` goes back to the
 * pool once the socket has taken it, and only then: after a failure the socket may still hold it.
 */
function writeChunk(res: Writable, chunk: Buffer, buffer?: Buffer): Write {
  const write = { settled: false } as { done: Promise<void>; settled: boolean };
  write.done = new Promise<void>((resolve, reject) => {
    res.write(chunk, (error) => {
      write.settled = true;
      if (buffer) release(buffer, !error);
      if (error) return reject(error);
      resolve();
    });
  });
  write.done.catch(() => {});
  return write;
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
      if (lost) {
        // Nobody waits on `value` any more; its failure (a fill gone bad, a write to the closed
        // socket) must not become an unhandled rejection, which ends the process.
        if (value instanceof Promise) value.catch(() => {});
        return Promise.reject(lost);
      }
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
