import type { Writable } from 'node:stream';
import { fillSentBytes } from '../metrics/metrics.ts';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import type { OpenedObject } from '../storage/driver/storage-driver.ts';
import type { BlobSource, ByteRange } from '../storage/readable-blob-store.ts';
import { closeFd, sendFileRange, type FileBytes, type SentListener } from '../storage/send-file.ts';

/**
 * What one reader of a fill gets: the bytes as they land in a local file (FileBytes; the caller
 * closes the descriptor), or the stored object once the content is committed and no file of
 * the fill is there to read (its spool was renamed or uploaded, or it is another instance's,
 * not shared; the caller releases it).
 */
export type FillBytes = FileBytes | OpenedObject;

export function isStoredObject(bytes: FillBytes): bytes is OpenedObject {
  return 'send' in bytes;
}

/**
 * A download in flight that any number of clients read as it lands: a fill of this instance
 * (BlobFill) or another instance's that this one follows (fleet/RemoteFill).
 */
export interface SharedFill {
  readonly size: number | undefined;
  /** The bytes for one client as they arrive, or the committed object (see FillBytes). */
  openBytes(): Promise<FillBytes>;
  /** Resolves with the committed blob, or rejects with why the download failed. */
  readonly done: Promise<BlobDescriptor>;
  /** Every byte is here and verified (the file may still be being made durable). */
  readonly complete: boolean;
}

const sentFromMemory = fillSentBytes.cell('memory');
const sentFromFile = fillSentBytes.cell('file');
const countSent: SentListener = (bytes, from) => {
  (from === 'memory' ? sentFromMemory : sentFromFile).value += bytes;
};

/** One client's view of a shared fill: a source like any other, that only sends bytes. */
export function fillSource(digest: string, fill: SharedFill): BlobSource {
  return {
    digest,
    size: fill.size,
    // Joined after the last byte verified: served as the store would, so it counts as a hit.
    origin: fill.complete ? 'cache' : 'upstream',
    ranged: true,
    async send(res: Writable, range?: ByteRange) {
      const start = range?.start ?? 0;
      const end = range?.end ?? (fill.size === undefined ? Number.MAX_SAFE_INTEGER : fill.size - 1);
      const bytes = await fill.openBytes();
      if (isStoredObject(bytes)) {
        try {
          const last = Math.min(end, bytes.size - 1);
          await bytes.send(res, { start, end: last });
          countSent(Math.max(0, last - start + 1), 'file');
        } finally {
          bytes.release();
        }
        return;
      }
      try {
        await sendFileRange(bytes, res, start, end, countSent);
      } finally {
        closeFd(bytes.fd);
      }
    },
    // Nothing is held until send() opens the file; the fill itself belongs to every reader.
    release() {},
  };
}
