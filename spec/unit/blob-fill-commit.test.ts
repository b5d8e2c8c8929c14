/**
 * A fill's readers once its spool file is handed to the store: on the filesystem the file is
 * renamed, on a bucket it is uploaded and removed, and a reader that comes then (a late joiner
 * between the commit and the fill's end) must be served the committed object, on any driver.
 * The upstream body here is chunks from memory: what BlobFill reads of a ResumableBlobBody
 * (its chunks, and close), without an upstream registry; everything else is real.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { BlobFill } from '../../src/proxy/blob-fill.ts';
import { fillSource, isStoredObject } from '../../src/proxy/shared-fill.ts';
import type { ResumableBlobBody } from '../../src/proxy/upstream-blob.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { BlobStore } from '../../src/storage/blob-store.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { collector } from '../support/collect.ts';
import { seededBytes, sha256Digest } from '../support/images.ts';
import { tempDir } from '../support/processes.ts';

/** The blob's bytes in chunks, as an upstream body gives them. */
function bodyOf(bytes: Buffer): ResumableBlobBody {
  return {
    async *chunks() {
      for (let at = 0; at < bytes.length; at += 64 * 1024) yield bytes.subarray(at, at + 64 * 1024);
    },
    close() {},
  } as unknown as ResumableBlobBody;
}

describe('a fill whose file went to the store (a bucket: uploaded and removed)', () => {
  const dir = tempDir('pullmirror-fill-commit');
  after(() => dir.cleanup());

  it('serves a reader that comes after the commit from the stored object, ranges too', async () => {
    const blobs = new BlobStore({ driver: new MemoryDriver(), tempDir: path.join(dir.path, 'spool') });
    const bytes = seededBytes('fill-commit', 400_000);
    const digest = parseDigest(sha256Digest(bytes));
    const early = collector();
    const writer = await blobs.createWriter(digest);
    const fill = new BlobFill({ digest: digest.value, size: bytes.length, writer, openCommitted: () => blobs.openObject(digest, bytes.length), body: bodyOf(bytes) });
    // A reader from the start: it reads the spool file, and keeps its descriptor past the commit.
    const earlyDone = fillSource(digest.value, fill).send(early.res);
    await fill.done;
    await earlyDone;
    assert.deepEqual(early.body(), bytes);

    const late = await fill.openBytes();
    assert.ok(isStoredObject(late), 'the spool is gone: the stored object');
    late.release();
    const whole = collector();
    await fillSource(digest.value, fill).send(whole.res);
    assert.deepEqual(whole.body(), bytes);
    const part = collector();
    await fillSource(digest.value, fill).send(part.res, { start: 1000, end: 1999 });
    assert.deepEqual(part.body(), bytes.subarray(1000, 2000));
  });
});
