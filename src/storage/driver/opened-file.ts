import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { ByteRange } from '../readable-blob-store.ts';
import { sendFileRange } from '../send-file.ts';
import type { OpenedObject } from './storage-driver.ts';

/**
 * A stored file opened for one response (FilesystemDriver.open): served from its descriptor by
 * sendFileRange, the hit path's fast loop, as StoredBlob served it before the driver layer.
 * `send` releases the file once it is done, whatever the outcome, so a caller that forgets
 * `release` after a send leaks nothing; `release` alone (a HEAD, a send never started) closes it.
 */
export class OpenedFile implements OpenedObject {
  readonly size: number;
  private readonly handle: FileHandle;
  private released = false;

  constructor(handle: FileHandle, size: number) {
    this.handle = handle;
    this.size = size;
  }

  async send(res: Writable, range: ByteRange): Promise<void> {
    try {
      if (this.released) throw new Error('send after release: the file is closed');
      // A stored file holds every byte: nothing to wait for.
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
