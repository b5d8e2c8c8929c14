import { EventEmitter } from 'node:events';
import { open } from 'node:fs';
import { blobFills } from '../metrics/metrics.ts';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import type { BlobWriter } from '../storage/blob-store.ts';
import type { OpenedObject } from '../storage/driver/storage-driver.ts';
import type { FillBytes } from './shared-fill.ts';

/** What a fill under a fleet lease asks of it (see BlobLease): commit only while held. */
export interface FillFence {
  readonly lost: AbortSignal;
  stillHeld(): Promise<boolean>;
}

/**
 * The bytes of a blob as a fill reads them: from upstream (ResumableBlobBody, which resumes a
 * dropped connection) or from another instance (fleet/PeerBlobBody). Either way they are only
 * bytes: the writer verifies them.
 */
export interface FillBody {
  /** The whole blob's size, when the source announced it. */
  readonly size: number | undefined;
  /** The chunks from the writer's position on; iterate once. */
  chunks(): AsyncGenerator<Buffer, void, undefined>;
  /** Stops the transfer at once (the fill failed, or its lease was lost). */
  close(): void;
}

/** `verified`: every byte is written and the digest matched; the file is being committed to the store. */
type FillState = 'running' | 'verified' | 'committed' | 'failed';

/**
 * Upstream bytes gathered while a disk write is in flight before the upstream body is paused:
 * the socket keeps being read during a write, and the next write takes them all in one writev.
 */
const MAX_BATCH = 1024 * 1024;

const fillsCommitted = blobFills.labels('committed');
const fillsFailed = blobFills.labels('failed');

/**
 * One upstream download of one blob, shared by every client that wants it while it runs.
 * It owns the whole life of the download: the upstream chunks (resumed across dropped
 * connections, see ResumableBlobBody), the writer, the verification and the commit or the
 * abort. Clients only read what arrived.
 *
 * The bytes go to a temporary file and a running hash (the BlobWriter). A client that keeps up
 * with the download gets the chunks as they arrive, from memory, before they are even written;
 * one that falls behind reads them back from the file. The fill holds the chunks it has not
 * written yet, and no more: chunks kept past their write live long enough to reach the old
 * generation, and 16 cold clients' peak RSS rose by 60 MB with the last 1 MiB kept. So a late
 * joiner starts from byte 0, a slow client never holds memory or slows the download, and a
 * client that leaves changes nothing for the others. When the chunks end, the writer verifies
 * digest and size and hands the file to the store's driver (a rename on the filesystem, the
 * completion of an upload to a bucket whose parts went up meanwhile); readers get their last
 * byte once it verified. On a
 * mismatch or an upstream failure every reader fails, so the
 * client's connection is broken instead of ending as if the content were good.
 */
export class BlobFill extends EventEmitter {
  readonly digest: string;
  /** Total size when upstream announced it (Content-Length), else undefined. */
  readonly size: number | undefined;
  private readonly writer: BlobWriter;
  /** The committed blob, opened through the store (for readers that come once the file is gone). */
  private readonly openCommitted: () => Promise<OpenedObject | undefined>;
  private fence?: FillFence;
  private commits: boolean;
  private state: FillState = 'running';
  private failure?: Error;
  /** Bytes written to the temporary file. */
  private written = 0;
  /** Bytes received from upstream: written, or held below until they are. */
  private arrived = 0;
  /** The chunks of bytes [held[0].start, arrived), in order: those not written yet. */
  private held: Array<{ start: number; chunk: Buffer }> = [];
  /** Resolves when the fill is over, with the descriptor or the failure. */
  readonly done: Promise<BlobDescriptor>;

  get complete(): boolean {
    return this.state === 'verified' || this.state === 'committed';
  }

  constructor(options: {
    digest: string;
    size: number | undefined;
    writer: BlobWriter;
    openCommitted: () => Promise<OpenedObject | undefined>;
    /** The blob's bytes from `writer.written` on. */
    body: FillBody;
    /** The fleet lease the fill runs under, when another instance could take it over. */
    fence?: FillFence;
    /**
     * false: a copy for this instance's readers only (another instance's download, streamed
     * from its peer listener): verified like any fill, then its file is let go, never committed
     * (the holder commits the blob).
     */
    commit?: boolean;
  }) {
    super();
    this.setMaxListeners(0);
    this.digest = options.digest;
    this.size = options.size;
    this.writer = options.writer;
    this.openCommitted = options.openCommitted;
    this.fence = options.fence;
    this.commits = options.commit ?? true;
    // An adopted writer (fleet takeover) already holds bytes: they are readable at once.
    this.written = options.writer.written;
    this.arrived = this.written;
    // A blob this fill commits goes up to a bucket while it downloads, completed only once it
    // verified: its commit then takes about one part's upload, not the whole blob's. A copy for
    // this instance's readers only never goes up; a size not announced cannot be cut in parts.
    if (this.commits && this.size !== undefined) options.writer.uploadWhileWriting(this.size);
    this.done = this.run(options.body);
    // Readers observe failures through their own streams; keep the process from seeing it as unhandled.
    this.done.catch(() => {});
  }

  private async run(body: FillBody): Promise<BlobDescriptor> {
    // A lease lost to another instance (it took the download over while this one was cut off
    // from Redis, paused, or the lease vanished in a Redis failover) does not stop the
    // download: this fill's clients are mid-body and get the rest, verified, from it; only the
    // commit is the new holder's (the fence below). Its file is its own: a takeover copies it,
    // so what is written meanwhile concerns no one else. The cost is one more upstream fetch of
    // the rest of the blob, counted as a duplicate.
    try {
      await this.copy(body.chunks());
      const descriptor = await this.writer.verify(this.size);
      // The bytes are known good: readers get their last byte now, not after the commit (the
      // fsync of a 256 MiB layer takes ~0.1 s on this machine's disk, an upload seconds).
      this.state = 'verified';
      this.emit('progress');
      if (!this.commits) {
        // Readers reading it keep their descriptors; later ones read what the holder commits.
        await this.writer.abort();
        this.held = [];
        return descriptor;
      }
      // The fence: only the lease's current holder commits (this fill's readers keep the
      // verified bytes either way).
      if (this.fence && !(await this.fence.stillHeld())) throw this.fence.lost.reason ?? new Error("the blob's fleet lease was lost");
      await this.writer.persist();
      this.state = 'committed';
      // Readers still sending take the rest from the file they have open (renamed or removed, it
      // stays readable through their descriptor).
      this.held = [];
      fillsCommitted.inc();
      this.emit('progress');
      return descriptor;
    } catch (error) {
      // Counted first: an abort that throws must not hide the failure from the metrics.
      fillsFailed.inc();
      body.close();
      await this.writer.abort();
      this.failure = error as Error;
      this.held = [];
      // Verified bytes stay good for readers that have the file open, even if they could not be
      // stored: only unverified content fails its readers.
      if (this.state !== 'verified') this.state = 'failed';
      this.emit('progress');
      throw this.failure;
    }
  }

  /**
   * Copies the chunks into the writer. Reading and writing overlap: while one write is in
   * flight, the chunks that arrive are gathered and go in the next writev, so the upstream
   * connection is not idle during disk writes; past MAX_BATCH gathered bytes the reading waits
   * (backpressure). A store failure stops the copy at once.
   */
  private async copy(chunks: AsyncGenerator<Buffer, void, undefined>): Promise<void> {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let writing: Promise<void> | undefined;
    let storeError: Error | undefined;
    const writeBatches = async (): Promise<void> => {
      while (batch.length > 0 && !storeError) {
        const buffers = batch;
        batch = [];
        batchBytes = 0;
        await this.writer.writev(buffers);
        this.written = this.writer.written;
        this.forgetWritten();
      }
    };
    const kick = (): void => {
      writing ??= writeBatches()
        .catch((error: Error) => {
          storeError ??= error;
        })
        .finally(() => {
          writing = undefined;
        });
    };
    try {
      for await (const chunk of chunks) {
        if (storeError) break;
        this.held.push({ start: this.arrived, chunk });
        this.arrived += chunk.length;
        this.emit('progress');
        batch.push(chunk);
        batchBytes += chunk.length;
        kick();
        if (batchBytes >= MAX_BATCH) await writing;
      }
    } catch (error) {
      // The writer is aborted next: no write may still be in flight on its file.
      await writing;
      throw error;
    }
    while ((writing || batch.length > 0) && !storeError) {
      kick();
      await writing;
    }
    if (storeError) throw storeError;
  }

  /**
   * Makes a copy that was not to be committed (`commit: false`) this instance's download of the
   * blob, committed under `fence`: the instance whose download it copied died, and this one
   * took the lease over. False when it is too late: the copy verified (and let its file go) or
   * failed already.
   */
  adopt(fence: FillFence): boolean {
    if (this.state !== 'running') return false;
    this.fence = fence;
    this.commits = true;
    return true;
  }

  /** Lets go of the held chunks that are written. */
  private forgetWritten(): void {
    let drop = 0;
    while (drop < this.held.length && this.held[drop].start + this.held[drop].chunk.length <= this.written) drop++;
    if (drop > 0) this.held.splice(0, drop);
  }

  /**
   * The bytes of this blob for one client, as they arrive: readable up to what arrived (from
   * memory, or from the file once written), failing if the fill fails, and complete only once
   * the content has verified. Once the file was handed to the store, the stored object. The
   * caller closes the descriptor (releases the object).
   */
  async openBytes(): Promise<FillBytes> {
    let fd: number;
    try {
      fd = await openRead(this.writer.path);
    } catch (error) {
      if (this.state === 'failed') throw this.failure ?? error;
      if (this.state === 'running') throw error;
      // Verified, and the file handed to the store meanwhile (renamed, or uploaded and
      // removed): the stored blob, once its commit is over.
      await this.done.catch(() => {});
      const committed = await this.openCommitted();
      if (!committed) throw this.failure ?? error;
      return committed;
    }
    return {
      fd,
      readableUpTo: (position, end) => this.readableUpTo(position, end),
      heldAt: (position, max) => this.heldAt(position, max),
    };
  }

  /** The bytes at `position` still in memory (a view of at most `max`), else how far the file holds them. */
  private heldAt(position: number, max: number): Buffer | number {
    const held = this.held;
    if (held.length === 0 || position < held[0].start || position >= this.arrived) return this.written;
    // Readers that keep up ask near the end: search from there.
    let i = held.length - 1;
    while (held[i].start > position) i--;
    const { start, chunk } = held[i];
    const offset = position - start;
    return chunk.subarray(offset, offset + Math.min(max, chunk.length - offset));
  }

  private async readableUpTo(position: number, end: number): Promise<number> {
    for (;;) {
      // Checked first: once the content is known bad, not one more byte goes out.
      if (this.state === 'failed') throw this.failure ?? new Error('blob fill failed');
      let limit = Math.min(this.arrived, end + 1);
      // Hold back the last byte until the content has verified: with a Content-Length, a
      // client that has every byte sees a complete response, however we close afterwards.
      if (this.state === 'running') limit = Math.min(limit, end);
      if (limit > position) return limit;
      if (this.state !== 'running') return position;
      await new Promise<void>((resolve) => this.once('progress', resolve));
    }
  }
}

function openRead(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (error, fd) => (error ? reject(error) : resolve(fd))));
}
