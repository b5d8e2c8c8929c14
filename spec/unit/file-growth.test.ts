/**
 * A follower learns that the holder's spool file grew from the file itself: an inotify watch
 * where the system sees the writes, a poll of its size where it cannot watch it. Real files in
 * a temp dir; a file that does not exist yet stands for a watch that cannot be set up.
 */
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { FileGrowth } from '../../src/fleet/file-growth.ts';
import { tempDir } from '../support/processes.ts';

const dir = tempDir('pullmirror-file-growth');
after(() => dir.cleanup());

/** Resolves once `check` holds; fails after 5 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5_000;
  while (!check() && performance.now() < deadline) await sleep(5);
  assert.ok(check(), what);
}

describe('FileGrowth', () => {
  it('tells of each growth of a watched file without polling it', async () => {
    const file = path.join(dir.path, 'watched');
    writeFileSync(file, 'a');
    let told = 0;
    const growth = new FileGrowth(file, () => told++);
    try {
      for (let i = 1; i <= 3; i++) {
        appendFileSync(file, 'more');
        await until(() => told >= i, `growth ${i} told`);
      }
      assert.equal(growth.polling, false, 'the watch sees the writes: no polling');
    } finally {
      growth.close();
    }
  });

  it('polls the size of a file it cannot watch, and still tells of its growth', async () => {
    const file = path.join(dir.path, 'not-yet');
    let told = 0;
    const growth = new FileGrowth(file, () => told++);
    try {
      assert.equal(growth.polling, true);
      writeFileSync(file, 'bytes');
      await until(() => told >= 1, 'the new file told');
      appendFileSync(file, 'more');
      await until(() => told >= 2, 'its growth told');
    } finally {
      growth.close();
    }
  });

  it('tells nothing after close', async () => {
    const file = path.join(dir.path, 'closed');
    writeFileSync(file, 'a');
    let told = 0;
    const growth = new FileGrowth(file, () => told++);
    growth.close();
    appendFileSync(file, 'more');
    await sleep(200);
    assert.equal(told, 0);
  });
});
