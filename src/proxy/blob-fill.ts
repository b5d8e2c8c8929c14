import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { BlobDescriptor, BlobWriter } from '../storage/blob-store.ts';

type FillState = 'running' | 'committed' | 'failed';

/** How a fill resumes an interrupted upstream transfer. */
export interface ResumePolicy {
  retries: number;
  backoffMs: number;
  /** Asks upstream for the blob from `offset`; answers the offset it really starts at (0 without Range support). */
  reopen(offset: number): Promise<{ body: Readable; offset: number }>;
}

/** Marks an error of the local store, which no upstream retry can mend. */
class StoreWriteError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

/** Bytes handed to a reader at a time: big enough for throughput, small enough for memory. */
const READ_CHUNK = 256 * 1024;

/**
 * One upstream download of one blob, shared by every client that wants it while it runs.
 *
 * The bytes go to a temporary file and a running hash (the BlobWriter); readers tail that file
 * rather than a buffer, so a late joiner starts from byte 0, a slow client never holds memory
 * or slows the download, and a client that leaves changes nothing for the others. When the
 * body ends, the writer verifies digest and size and renames the file into the store; only
 * then do readers end cleanly. On a mismatch or an upstream failure every reader fails, so the
 * client's connection is broken instead of ending as if the content were good.
 */
export class BlobFill extends EventEmitter {
  readonly digest: string;
  /** Total size when upstream announced it (Content-Length), else undefined. */
  readonly size: number | undefined;
  private readonly writer: BlobWriter;
  private readonly finalPath: string;
  private state: FillState = 'running';
  private failure?: Error;
  /** Bytes written to the temporary file and visible to readers. */
  private written = 0;
  /** Resolves when the fill is over, with the descriptor or the failure. */
  readonly done: Promise<BlobDescriptor>;

  private readonly resume: ResumePolicy;

  constructor(options: {
    digest: string;
    size: number | undefined;
    writer: BlobWriter;
    finalPath: string;
    body: Readable;
    resume: ResumePolicy;
  }) {
    super();
    this.setMaxListeners(0);
    this.digest = options.digest;
    this.size = options.size;
    this.writer = options.writer;
    this.finalPath = options.finalPath;
    this.resume = options.resume;
    this.done = this.run(options.body);
    // Readers observe failures through their own streams; keep the process from seeing it as unhandled.
    this.done.catch(() => {});
  }

  get bytesWritten(): number {
    return this.written;
  }

  private async run(first: Readable): Promise<BlobDescriptor> {
    let body = first;
    let attempt = 0;
    try {
      for (;;) {
        const interruption = await this.drain(body);
        if (!interruption) break;
        // The upstream connection dropped mid-blob: ask again from the bytes we have.
        if (attempt >= this.resume.retries) throw interruption;
        attempt++;
        await delay(this.resume.backoffMs * 2 ** (attempt - 1));
        const next = await this.resume.reopen(this.written);
        if (next.offset !== this.written) {
          // The upstream would not resume (no 206): start over; readers just wait for their
          // position again, the bytes being the same content.
          await this.writer.reset();
          this.written = 0;
        }
        this.emit('resumed', { offset: next.offset, attempt });
        body = next.body;
      }
      const descriptor = await this.writer.commit(this.size);
      this.state = 'committed';
      this.emit('progress');
      return descriptor;
    } catch (error) {
      body.destroy();
      await this.writer.abort();
      this.failure = error as Error;
      this.state = 'failed';
      this.emit('progress');
      throw error;
    }
  }

  /**
   * Copies one upstream body into the writer. Returns the upstream error (or a short-body
   * error) when the transfer was interrupted and may be resumed; throws store failures.
   */
  private async drain(body: Readable): Promise<Error | undefined> {
    try {
      for await (const chunk of body) {
        try {
          await this.writer.write(chunk as Buffer);
        } catch (error) {
          throw new StoreWriteError(error as Error);
        }
        this.written = this.writer.written;
        this.emit('progress');
      }
    } catch (error) {
      if (error instanceof StoreWriteError) throw error.cause;
      return error as Error;
    }
    if (this.size !== undefined && this.written < this.size) {
      return new Error(`upstream body ended after ${this.written} of ${this.size} bytes`);
    }
    return undefined;
  }

  /**
   * A stream of bytes [start, end] (inclusive; end defaults to the last byte) of this blob as
   * they arrive. It errors if the fill fails and ends only once the content has verified.
   */
  read(start = 0, end?: number): AsyncGenerator<Buffer> {
    return this.tail(start, end);
  }

  private async *tail(start: number, end: number | undefined): AsyncGenerator<Buffer> {
    const handle = await this.openContent();
    try {
      let position = start;
      for (;;) {
        // Checked first: once the content is known bad, not one more byte goes out.
        if (this.state === 'failed') throw this.failure ?? new Error('blob fill failed');
        const last = end ?? (this.size === undefined ? undefined : this.size - 1);
        let limit = last === undefined ? this.written : Math.min(this.written, last + 1);
        // Hold back the last byte until the content has verified: with a Content-Length, a
        // client that has every byte sees a complete response, however we close afterwards.
        if (this.state === 'running' && last !== undefined) limit = Math.min(limit, last);
        if (position < limit) {
          const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, limit - position));
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
          if (bytesRead === 0) throw new Error('blob fill: temporary file shorter than written');
          position += bytesRead;
          yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
          continue;
        }
        if (this.state === 'committed') return;
        await new Promise<void>((resolve) => this.once('progress', resolve));
      }
    } finally {
      await handle.close();
    }
  }

  /** Opens the temporary file, or the committed blob if the rename already happened. */
  private async openContent(): Promise<FileHandle> {
    try {
      return await open(this.writer.path, 'r');
    } catch (error) {
      if (this.state === 'committed') return open(this.finalPath, 'r');
      if (this.state === 'failed') throw this.failure ?? error;
      throw error;
    }
  }
}
