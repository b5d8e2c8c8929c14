import type { Writable } from 'node:stream';
import type { OpenedObject } from './driver/storage-driver.ts';
import type { BlobSource, ByteRange } from './readable-blob-store.ts';

/**
 * A verified blob of the store, opened through the driver: the cheapest way a blob is served
 * (the filesystem driver sends it from the open file, as a fill's file is sent).
 */
export class StoredBlob implements BlobSource {
  readonly digest: string;
  readonly size: number;
  readonly origin = 'cache' as const;
  readonly ranged = true;
  private readonly object: OpenedObject;
  private released = false;

  constructor(digest: string, object: OpenedObject) {
    this.digest = digest;
    this.size = object.size;
    this.object = object;
  }

  async send(res: Writable, range: ByteRange = { start: 0, end: this.size - 1 }): Promise<void> {
    try {
      await this.object.send(res, range);
    } finally {
      this.release();
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.object.release();
  }
}
