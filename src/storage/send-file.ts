import { close, readv } from 'node:fs';
import { ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';

/**
 * Bytes per buffer, and so per socket write. A client that stops reading pins the one buffer of
 * its write in flight (see FileSender): 128 KiB, whatever the read size.
 */
const CHUNK = 128 * 1024;
/**
 * Buffers read at once, in one readv (one trip through the thread pool), for a client that
 * keeps up. Reading one buffer per trip cost ~5 context switches per 128 KiB (perf stat of warm
 * GETs: 43 000 per GiB; 10 000 with batches), so a flowing client's read grows 1, 2, 4 buffers
 * while the socket takes each write at once. Not more: the next batch is read while this one is
 * written, so a flowing transfer has two batches out (1 MiB).
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
   * Called before every read, never while one is in flight.
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

/**
 * Sends bytes [start, end] (inclusive) of a file to a response, then ends it. Rejects if the
 * client goes away or the source fails; the caller then breaks the connection. See FileSender.
 */
export function sendFileRange(source: FileBytes, res: Writable, start: number, end: number, sent?: SentListener): Promise<void> {
  if (end < start) return new Promise((resolve) => res.end(() => resolve()));
  return new Promise((resolve, reject) => new FileSender(source, res, start, end, sent, resolve, reject).start());
}

/** Bytes read and not yet written: a view of a pool buffer, or a fill's chunk as it arrived. */
interface Queued {
  bytes: Buffer;
  pooled: Buffer | undefined;
}

/** The read in flight: into `buffers`, from `position`. */
interface Read {
  buffers: Buffer[];
  position: number;
}

/**
 * One transfer, driven by callbacks (a promise per chunk cost more than the rest of the loop):
 *
 * - The file is read in batches of CHUNK-sized buffers from a pool, one readv each. While the
 *   socket takes every write at once, the next batch is read while this one is written (the
 *   disk's copy and the socket's overlap, and the loop need not sleep between them), and the
 *   batch doubles up to MAX_BATCH.
 * - The body goes to the socket itself once the headers are out: ServerResponse.write corks
 *   the socket and uncorks it on the next tick for every write, so no write of it is taken at
 *   once. A socket write that the kernel takes at once gives its buffer back to the pool at once.
 * - A write the kernel does not take at once is pending: nothing more is written until it is.
 *   If it is still pending when the event loop's turn ends (the client is behind: its socket
 *   buffer is full), the buffers read ahead go back to the pool unsent (to be read again later),
 *   a read in flight is let go when it ends, nothing is read until the write is taken, and the
 *   batch drops to one buffer. So a stalled client holds the one buffer its socket has,
 *   however fast it read before, until http.sendtimeout closes it.
 * - A fill's chunks still in memory (FileBytes.heldAt) are written as they are, with no read
 *   at all; a fill's readers read one buffer at a time and read nothing ahead: the fill's own
 *   writes go through the same thread pool, and the upstream transfer waits on them (bench --
 *   link, 8 clients: the upstream GET took 5 s with single reads, 12–15 s with batches).
 */
class FileSender {
  private readonly source: FileBytes;
  private readonly res: Writable;
  private readonly end: number;
  private readonly sent: SentListener | undefined;
  private readonly resolve: () => void;
  private readonly reject: (error: Error) => void;
  /** Bytes of the whole transfer: a small one uses one buffer of its size. */
  private readonly length: number;
  private readonly maxBatch: number;
  private readonly readAhead: boolean;
  /** Where the body is written: the response's socket once the headers are out, else the response. */
  private target: Writable;
  private state: 'sending' | 'ending' | 'over' = 'sending';
  /** Position after the last byte queued or written: where the next read starts. */
  private taken: number;
  private readonly queue: Queued[] = [];
  private reading: Read | undefined;
  /** A source's readableUpTo is being waited for. */
  private waiting = false;
  /** The write the socket has not taken yet, and whether the loop's turn ended meanwhile. */
  private pending: Queued | undefined;
  private behind = false;
  private turnEnd: NodeJS.Immediate | undefined;
  private writesIssued = 0;
  private writesDone = 0;
  private batch = 1;

  private readonly onRead = (error: Error | null, bytesRead: number): void => this.afterRead(error, bytesRead);
  private readonly onWritten = (error?: Error | null): void => this.afterWrite(error);
  private readonly onTurnEnd = (): void => this.turnEnded();
  private readonly onReadable = (upTo: number): void => {
    this.waiting = false;
    if (this.state === 'sending') this.take(upTo);
    this.pump();
  };
  private readonly onFailed = (error: unknown): void => {
    this.waiting = false;
    this.fail(error instanceof Error ? error : new Error(String(error)));
  };
  // 'close' also follows a normal end; only a close before the response finished is a loss.
  private readonly onClose = (): void => {
    if (!this.res.writableFinished) this.fail(new Error('client closed the connection'));
  };

  constructor(source: FileBytes, res: Writable, start: number, end: number, sent: SentListener | undefined, resolve: () => void, reject: (error: Error) => void) {
    this.source = source;
    this.res = res;
    this.end = end;
    this.sent = sent;
    this.resolve = resolve;
    this.reject = reject;
    this.taken = start;
    this.length = end - start + 1;
    this.maxBatch = source.heldAt ? 1 : MAX_BATCH;
    this.readAhead = !source.heldAt;
    this.target = res;
  }

  start(): void {
    if (this.res.destroyed) return this.fail(new Error('client closed the connection'));
    this.res.once('close', this.onClose);
    // A small body goes with its headers in one write, through the response.
    if (this.length >= CHUNK) this.target = bodyTarget(this.res);
    this.pump();
  }

  /** Does whatever can be done now: writes what was read, starts the next read, ends the response. */
  private pump(): void {
    while (this.state === 'sending' && !this.pending) {
      // The next read starts before this batch is written: the thread pool reads while the socket
    // copies. A read ahead is a buffer beyond the one a transfer needs, so only while fewer than
    // MAX_POOLED are out, as a batch's extra buffers (400 stalled readers: 130 KiB each without
    // that bound, the read-ahead buffers they let go of beyond what the pool keeps being garbage).
      if (!this.reading && !this.waiting && this.taken <= this.end && (this.queue.length === 0 || (this.readAhead && out < MAX_POOLED))) {
        const upTo = this.readableUpTo();
        if (upTo === undefined) return;
        this.take(upTo);
        if (this.state !== 'sending') return;
      }
      if (this.queue.length > 0) {
        this.write(this.queue.shift()!);
        continue;
      }
      if (this.reading || this.waiting) return;
      this.finish();
    }
  }

  /** What the source has readable now; undefined while waiting for it (or when it failed). */
  private readableUpTo(): number | undefined {
    let upTo: number | Promise<number>;
    try {
      upTo = this.source.readableUpTo(this.taken, this.end);
    } catch (error) {
      this.onFailed(error);
      return undefined;
    }
    if (typeof upTo === 'number') return upTo;
    this.waiting = true;
    upTo.then(this.onReadable, this.onFailed);
    return undefined;
  }

  /** Takes the bytes at `taken`, readable up to `upTo`: a fill's chunk from memory, or a read. */
  private take(upTo: number): void {
    // No more bytes will come: the end of a blob whose size upstream did not announce.
    if (upTo <= this.taken) {
      this.taken = this.end + 1;
      return;
    }
    const held = this.source.heldAt?.(this.taken, Math.min(upTo - this.taken, CHUNK));
    if (typeof held === 'object') {
      // A fill's chunk, as it arrived: sent as it is (the client pins at most this one chunk).
      this.queue.push({ bytes: held, pooled: undefined });
      this.taken += held.length;
      return;
    }
    const wanted = Math.min(upTo, held ?? upTo, this.end + 1) - this.taken;
    if (wanted <= 0) return this.fail(new Error('bytes readable but neither held nor in the file'));
    const buffers = acquireBatch(Math.min(this.batch, Math.ceil(wanted / CHUNK)), this.length);
    this.reading = { buffers, position: this.taken };
    // Not raced against the client leaving: the buffers go back to the pool only once the read is over.
    readv(this.source.fd, views(buffers, wanted), this.taken, this.onRead);
  }

  private afterRead(error: Error | null, bytesRead: number): void {
    const { buffers, position } = this.reading!;
    this.reading = undefined;
    if (this.state !== 'sending' || error || bytesRead === 0 || position !== this.taken) {
      for (const buffer of buffers) release(buffer);
      if (this.state !== 'sending') return;
      if (error) return this.fail(error);
      if (bytesRead === 0) return this.fail(new Error('blob file shorter than expected'));
      // Read before the client fell behind, past what it now keeps: read again later.
      return this.pump();
    }
    let left = bytesRead;
    for (const buffer of buffers) {
      // Behind, the transfer holds nothing but the buffer its socket has.
      if (left === 0 || this.behind) {
        release(buffer);
        continue;
      }
      const bytes = Math.min(buffer.length, left);
      this.queue.push({ bytes: bytes === buffer.length ? buffer : buffer.subarray(0, bytes), pooled: buffer });
      this.taken += bytes;
      left -= bytes;
    }
    if (!this.behind) this.batch = Math.min(this.batch * 2, this.maxBatch);
    this.pump();
  }

  private write(item: Queued): void {
    this.writesIssued++;
    this.target.write(item.bytes, this.onWritten);
    this.sent?.(item.bytes.length, item.pooled ? 'file' : 'memory');
    // Taken at once: the kernel has the bytes (a socket write takes them within write() or not at all).
    if (this.target.writableLength === 0) {
      if (item.pooled) release(item.pooled);
      return;
    }
    this.pending = item;
    this.turnEnd = setImmediate(this.onTurnEnd);
  }

  private afterWrite(error?: Error | null): void {
    this.writesDone++;
    const item = this.pending;
    if (error) {
      // The socket may still hold the buffer: it is not reused.
      if (item) {
        this.pending = undefined;
        if (item.pooled) release(item.pooled, false);
      }
      return this.fail(error);
    }
    // The callbacks of writes taken at once come a tick later; the pending write's is the last.
    if (!item || this.writesDone !== this.writesIssued) return;
    this.pending = undefined;
    this.behind = false;
    if (this.turnEnd) clearImmediate(this.turnEnd);
    this.turnEnd = undefined;
    if (item.pooled) release(item.pooled);
    this.pump();
  }

  /** The loop's turn ended with a write pending: the client is behind. */
  private turnEnded(): void {
    this.turnEnd = undefined;
    if (!this.pending || this.state !== 'sending') return;
    this.behind = true;
    this.batch = 1;
    // Nothing more is read until the socket has taken this write, and nothing read is kept.
    while (this.queue.length > 0) {
      const item = this.queue.pop()!;
      this.taken -= item.bytes.length;
      if (item.pooled) release(item.pooled);
    }
  }

  private finish(): void {
    this.state = 'ending';
    this.res.end(() => {
      if (this.state !== 'ending') return;
      this.state = 'over';
      this.res.off('close', this.onClose);
      this.resolve();
    });
  }

  private fail(error: Error): void {
    if (this.state === 'over') return;
    this.state = 'over';
    this.res.off('close', this.onClose);
    if (this.turnEnd) clearImmediate(this.turnEnd);
    for (const item of this.queue.splice(0)) if (item.pooled) release(item.pooled);
    this.reject(error);
  }
}

/**
 * Where a response's body can be written. A ServerResponse with a Content-Length (no chunked
 * framing to add) that has its socket (not a pipelined response waiting for its turn) sends its
 * headers now, and the body goes to the socket directly.
 */
function bodyTarget(res: Writable): Writable {
  if (!(res instanceof ServerResponse) || res.getHeader('content-length') === undefined) return res;
  res.flushHeaders();
  return res.socket ?? res;
}

/** Views of `buffers` that together hold at most `wanted` bytes (the last one cut short). */
function views(buffers: Buffer[], wanted: number): Buffer[] {
  if (wanted >= buffers.length * CHUNK) return buffers;
  let left = wanted;
  return buffers.map((buffer) => {
    const view = left >= buffer.length ? buffer : buffer.subarray(0, left);
    left -= view.length;
    return view;
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
 * CHUNK buffers out of the pool now (being read into, queued, or written). A batch gets buffers
 * beyond its first only while fewer than MAX_POOLED are out: with many transfers at once every
 * read is one buffer, as it was before batches. Without that bound, 400 readers that each read a
 * few batches before stalling let go of ~1 200 buffers the pool cannot keep, garbage that waits
 * for a GC (RSS per stalled reader in `npm run bench -- stall`: 114 KiB before batches, 157 KiB
 * with them unbounded).
 */
let out = 0;

/** CHUNK buffers out of the pool now: what the transfers in progress hold (tests check a stalled one's). */
export function chunkBuffersOut(): number {
  return out;
}

/** `count` buffers for a transfer of `length` bytes: CHUNKs, or one smaller for a small blob. */
function acquireBatch(count: number, length: number): Buffer[] {
  // Small blobs (configs, small layers) come from Node's shared slab when they can.
  if (length < CHUNK) return [Buffer.allocUnsafe(length)];
  const granted = 1 + Math.max(0, Math.min(count - 1, MAX_POOLED - out - 1));
  out += granted;
  const buffers = new Array<Buffer>(granted);
  for (let i = 0; i < granted; i++) buffers[i] = pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
  return buffers;
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
