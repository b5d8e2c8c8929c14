/**
 * writeFileAtomic (src/storage/atomic-file.ts) on a disk that fills up mid-write: a 1 MiB
 * tmpfs, the real ENOSPC (ordinary files cannot make it; mounting one needs root, and without
 * it the test skips saying so).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { writeFileAtomic } from '../../src/storage/atomic-file.ts';
import { mountTmpfs } from '../support/tmpfs.ts';

describe('writeFileAtomic', () => {
  it('on a full disk fails with ENOSPC, keeps the old file, and leaves no temporary file behind', async (t) => {
    const area = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-atomic-full-'));
    const disk = await mountTmpfs(path.join(area, 'disk'), 1);
    try {
      if (typeof disk === 'string') return t.skip(disk);
      const tmpDir = path.join(disk.path, 'tmp');
      mkdirSync(tmpDir);
      const target = path.join(disk.path, 'hosts.toml');
      writeFileSync(target, 'before');
      await assert.rejects(writeFileAtomic(target, Buffer.alloc(2 * 1024 * 1024, 'x'), tmpDir), (error: NodeJS.ErrnoException) => error.code === 'ENOSPC');
      assert.equal(readFileSync(target, 'utf8'), 'before', 'readers still see the old content');
      assert.deepEqual(readdirSync(tmpDir), [], 'the part written is removed');
      // The space it took is free again: a small write after it succeeds.
      await writeFileAtomic(target, 'after', tmpDir);
      assert.equal(readFileSync(target, 'utf8'), 'after');
    } finally {
      if (typeof disk === 'object') await disk.unmount();
      rmSync(area, { recursive: true, force: true });
    }
  });
});
