import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { BlobSource, ByteRange } from './readable-blob-store.ts';
import { sendFileRange } from './send-file.ts';

/** A verified blob of the local store, opened: the cheapest way a blob is served. */
export class StoredBlob implements BlobSource {
  readonly digest: string;
  readonly size: number;
  readonly origin = 'cache' as const;
  readonly ranged = true;
  private readonly handle: FileHandle;
  private released = false;

  constructor(digest: string, size: number, handle: FileHandle) {
    this.digest = digest;
    this.size = size;
    this.handle = handle;
  }

  async send(res: Writable, range: ByteRange = { start: 0, end: this.size - 1 }): Promise<void> {
    try {
      // A stored blob holds every byte: nothing to wait for.
      const upTo = range.end + 1;
      await sendFileRange({ fd: this.handle.fd, readableUpTo: () => upTo }, res, range.start, range.end);
    } finally {
      this.release();
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    void this.handle.close().catch(() => {});
  }
}
