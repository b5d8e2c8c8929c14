import type { CompletedPart } from '@aws-sdk/client-s3';
import type { StagedFile } from './storage-driver.ts';

/** The requests of one multipart upload to one key (S3Driver's, with its retries and deadlines). */
export interface MultipartRequests {
  /** CreateMultipartUpload: the upload's id. */
  create(signal: AbortSignal): Promise<string>;
  /** UploadPart of the file's bytes [start, start + length), read from the file: its ETag. */
  uploadPart(uploadId: string, partNumber: number, start: number, length: number, signal: AbortSignal): Promise<string | undefined>;
  complete(uploadId: string, parts: CompletedPart[], signal: AbortSignal): Promise<void>;
  /** AbortMultipartUpload; never rejects (an abort that failed is swept later by the driver). */
  abort(uploadId: string): Promise<void>;
}

/**
 * One multipart upload of a local file, its parts sent as soon as the file holds them: a fill's
 * spool is uploaded while its download runs (StorageDriver.stageFile), and only the completion
 * waits for the digest; a file that is already whole (commitFile) is the same upload with every
 * part ready at once. At most `concurrency` parts are in flight, each streamed from the file (no
 * buffer per part). The upload is created with its first part, so a fill that fails before
 * `partSize` bytes costs no request.
 *
 * Nothing is visible before CompleteMultipartUpload. A part that fails (after the driver's
 * retries) stops the upload: its commit then fails with that error and leaves no upload behind,
 * as commitFile's did; cancel stops the parts in flight at once and aborts the upload.
 */
export class StagedMultipartUpload implements StagedFile {
  private readonly requests: MultipartRequests;
  private readonly size: number;
  private readonly partSize: number;
  private readonly partCount: number;
  private readonly concurrency: number;
  /** Stops the requests in flight: a failed part, a cancel, or the commit's signal. */
  private readonly stop = new AbortController();
  private readonly parts: CompletedPart[];
  /** The parts in flight; each settles without rejecting (a failure goes to `failure`). */
  private readonly running = new Set<Promise<void>>();
  private uploadId: Promise<string> | undefined;
  private failure: Error | undefined;
  /** Bytes of the file known written. */
  private available = 0;
  /** The index of the next part to send. */
  private next = 0;
  private settled = false;

  constructor(requests: MultipartRequests, size: number, partSize: number, concurrency: number) {
    this.requests = requests;
    this.size = size;
    this.partSize = partSize;
    this.partCount = Math.ceil(size / partSize);
    this.concurrency = Math.max(1, concurrency);
    this.parts = new Array<CompletedPart>(this.partCount);
  }

  grown(bytes: number): void {
    if (this.settled) return;
    this.available = Math.min(bytes, this.size);
    this.sendReadyParts();
  }

  async commit(signal?: AbortSignal): Promise<void> {
    if (this.settled) throw new Error('staged upload already committed or cancelled');
    this.settled = true;
    const onAbort = () => this.stop.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      this.available = this.size;
      for (;;) {
        this.sendReadyParts();
        if (this.running.size === 0) break;
        await Promise.race(this.running);
      }
      if (this.failure !== undefined) throw this.failure;
      signal?.throwIfAborted();
      await this.requests.complete(await this.uploadId!, this.parts, this.stop.signal);
    } catch (error) {
      // Awaited, and not cancelled by the signal: when commit returns, no part is left behind
      // (what a crash leaves, the driver's `cleanup` removes).
      await (await this.discard()).aborted;
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async cancel(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    // The abort request goes on after: a fill that failed fails its clients now, not once a
    // hung store answered (the driver sweeps an abort that could not be sent).
    await this.discard();
  }

  /** Starts the parts the file holds, as many as `concurrency` lets. */
  private sendReadyParts(): void {
    while (this.failure === undefined && !this.stop.signal.aborted && this.running.size < this.concurrency && this.next < this.partCount && this.partEnd(this.next) <= this.available) {
      const index = this.next++;
      const part: Promise<void> = this.sendPart(index).then(
        () => {
          this.running.delete(part);
          this.sendReadyParts();
        },
        (error: unknown) => {
          this.running.delete(part);
          if (this.failure === undefined && !this.stop.signal.aborted) {
            this.failure = error as Error;
            // The upload cannot complete: the other parts need not go on.
            this.stop.abort(error);
          }
        },
      );
      this.running.add(part);
    }
  }

  private partEnd(index: number): number {
    return Math.min(this.size, (index + 1) * this.partSize);
  }

  private async sendPart(index: number): Promise<void> {
    this.uploadId ??= this.requests.create(this.stop.signal);
    const uploadId = await this.uploadId;
    const start = index * this.partSize;
    const etag = await this.requests.uploadPart(uploadId, index + 1, start, this.partEnd(index) - start, this.stop.signal);
    this.parts[index] = { PartNumber: index + 1, ETag: etag };
  }

  /**
   * Stops what is in flight and waits until no part reads the file; then sends the abort of the
   * upload, if one was created, and hands its promise back (the callers choose to wait for it).
   */
  private async discard(): Promise<{ aborted: Promise<void> }> {
    this.stop.abort();
    while (this.running.size > 0) await Promise.race(this.running);
    const uploadId = await this.uploadId?.catch(() => undefined);
    return { aborted: uploadId === undefined ? Promise.resolve() : this.requests.abort(uploadId) };
  }
}
