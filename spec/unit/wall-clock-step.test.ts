/**
 * The mirror's own intervals and deadlines run on a monotonic clock: a step of the wall clock
 * (a VM resumed, NTP correcting a drift) must not end a window early nor make one seem over.
 *
 * Why Date.now is replaced here: a real clock step cannot be made on a test machine without
 * changing its time for every process on it (and it needs root). Moving Date.now within this
 * process, for the duration of one step only, is what such a step looks like to the mirror's
 * code; performance.now, which the mirror measures intervals with, is left alone as a real
 * step leaves it. Everything else is real: a real store directory, real filesystem errors.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import winston from 'winston';
import { CachedCheck } from '../../src/health/checks.ts';
import { StoreAdmission } from '../../src/proxy/store-admission.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { FilesystemBlobStore } from '../../src/storage/blob-store.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { tempDir } from '../support/processes.ts';

const HOUR = 3_600_000;

/** Runs `body` with the wall clock (Date.now) an hour ahead, as after a step; restores it after. */
async function withWallClockStepped<T>(body: () => Promise<T>): Promise<T> {
  const real = Date.now;
  Date.now = () => real() + HOUR;
  try {
    return await body();
  } finally {
    Date.now = real;
  }
}

describe('a wall-clock step', () => {
  it('does not end the store admission\'s pass-through window after a write failure', async () => {
    const dir = tempDir('pullmirror-clock-step');
    after(() => dir.cleanup());
    // The temp area's parent is a file: creating a writer fails as a broken store does (ENOTDIR).
    const blocker = path.join(dir.path, '_tmp');
    writeFileSync(blocker, 'not a directory');
    const store = new FilesystemBlobStore(new StorePaths(dir.path), path.join(blocker, 'test'));
    const admission = new StoreAdmission({ blobs: store, readOnly: false, minFreeBytes: 0, logger: winston.createLogger({ silent: true }) });
    const digest = parseDigest(`sha256:${'a'.repeat(64)}`);

    assert.equal(await admission.writerFor(digest, 10), undefined, 'the store cannot take the blob: passed through');
    // The store works again, but the window (30 s) keeps the mirror from trying it at once.
    rmSync(blocker);
    assert.equal(await admission.writerFor(digest, 10), undefined, 'within the window: passed through');
    const writer = await withWallClockStepped(() => admission.writerFor(digest, 10));
    await writer?.abort();
    assert.equal(writer, undefined, 'an hour of wall clock later, but a moment of real time: still passed through');
  });

  it('does not expire the health check\'s cached answer', async () => {
    let probes = 0;
    const check = new CachedCheck('store', async () => {
      probes++;
    }, { intervalMs: 60_000, threshold: 1 });
    const first = await check.status();
    assert.equal(first.ok, true);
    const later = await withWallClockStepped(() => check.status());
    assert.equal(probes, 1, 'one probe per interval of real time, not a second one for a clock step');
    assert.equal(later, first, 'the cached answer');
  });
});
