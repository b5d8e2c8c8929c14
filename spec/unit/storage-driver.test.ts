import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { collect } from '../support/collect.ts';
import { describeDriverConformance, isFault, Pattern } from '../support/driver-conformance.ts';
import { blobPath } from '../support/store.ts';
import { mountTmpfs, type Tmpfs } from '../support/tmpfs.ts';

/** Descriptors this process holds on files under `root` (/proc/self/fd: what a leak would leave open). */
function descriptorsUnder(root: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(root + path.sep)) count++;
    } catch {
      // closed meanwhile (the descriptor readdir itself used)
    }
  }
  return count;
}

/**
 * A store as an instance lays it out: the root, and the instance's temp directory in
 * `_tmp/<instance>` (TempArea), where fills spool, on the same file system.
 */
function filesystemStore(): { root: string; tempDir: string; spoolDir: string; driver: FilesystemDriver; remove(): void } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-fs-driver-'));
  const tempDir = path.join(root, '_tmp', 'test-host-1-0123abcd');
  const spoolDir = path.join(root, '_tmp', 'spool');
  mkdirSync(tempDir, { recursive: true });
  mkdirSync(spoolDir, { recursive: true });
  return { root, tempDir, spoolDir, driver: new FilesystemDriver({ root, tempDir }), remove: () => rmSync(root, { recursive: true, force: true }) };
}

describeDriverConformance('filesystem', async () => {
  const store = filesystemStore();
  return {
    driver: store.driver,
    spoolDir: store.spoolDir,
    openResources: async () => descriptorsUnder(store.root),
    teardown: async () => {
      await store.driver.close();
      store.remove();
    },
  };
});

describeDriverConformance('inmemory', async () => {
  const driver = new MemoryDriver();
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-memory-driver-'));
  return {
    driver,
    spoolDir,
    teardown: async () => {
      await driver.close();
      rmSync(spoolDir, { recursive: true, force: true });
    },
  };
});

describe('filesystem driver: the store on disk', () => {
  it('reads an existing store as it is laid out, and writes where that layout says', async () => {
    const store = filesystemStore();
    try {
      // Written as a store made before the driver layer holds them (spec/support/store.ts draws the layout apart from the code).
      const digest = `sha256:ab${'0123456789abcdef'.repeat(3)}0123456789abcd`;
      const file = blobPath(store.root, digest);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, 'layer bytes');
      mkdirSync(path.join(store.root, 'repositories/library/alpine/_tags'), { recursive: true });
      writeFileSync(path.join(store.root, 'repositories/library/alpine/_tags/latest'), digest);
      const key = path.relative(store.root, file).split(path.sep).join('/');

      assert.equal((await store.driver.getContent(key))?.toString(), 'layer bytes');
      assert.equal((await store.driver.stat(key))?.size, 'layer bytes'.length);
      assert.deepEqual(await collect(store.driver.children('blobs/sha256')), ['ab']);
      assert.deepEqual((await collect(store.driver.walk('blobs'))).map((object) => object.key), [key]);
      assert.equal((await store.driver.getContent('repositories/library/alpine/_tags/latest'))?.toString(), digest);

      await store.driver.putContent('repositories/library/alpine/_tags/edge', digest);
      assert.equal(readFileSync(path.join(store.root, 'repositories/library/alpine/_tags/edge'), 'utf8'), digest);
      assert.deepEqual(readdirSync(store.tempDir), [], 'no temp file is left behind');
    } finally {
      store.remove();
    }
  });

  it('lists neither dot files (other tools\' temp files) nor what a directory symlink leads to, and a symlink loop ends the walk', async () => {
    const store = filesystemStore();
    try {
      await store.driver.putContent('blobs/sha256/aa/one', '1');
      writeFileSync(path.join(store.root, 'blobs/sha256/aa/.nfs000123'), 'x');
      symlinkSync(path.join(store.root, 'blobs'), path.join(store.root, 'blobs/sha256/aa/loop'));
      assert.deepEqual((await collect(store.driver.walk('blobs'))).map((object) => object.key), ['blobs/sha256/aa/one']);
      assert.deepEqual((await collect(store.driver.children('blobs/sha256/aa'))).sort(), ['loop', 'one']);
    } finally {
      store.remove();
    }
  });

  it('a refused key creates nothing outside the root', async () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-fs-driver-parent-'));
    try {
      const root = path.join(parent, 'store');
      mkdirSync(path.join(root, '_tmp', 'i'), { recursive: true });
      const driver = new FilesystemDriver({ root, tempDir: path.join(root, '_tmp', 'i') });
      for (const key of ['../outside', '../store-sibling/x', 'a/../../outside', '/tmp/absolute']) {
        await assert.rejects(driver.putContent(key, 'x'), isFault('invalid-key'));
        const spool = path.join(root, '_tmp', 'i', 'spool');
        writeFileSync(spool, 'x');
        await assert.rejects(driver.commitFile(spool, key), isFault('invalid-key'));
        await assert.rejects(driver.delete(key), isFault('invalid-key'));
      }
      assert.deepEqual(readdirSync(parent), ['store']);
      assert.equal(existsSync('/tmp/absolute'), false);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('commits a file from another file system (EXDEV) whole, through its own temp directory', async (t) => {
    const store = filesystemStore();
    const other = process.platform === 'linux' && existsSync('/dev/shm') ? mkdtempSync('/dev/shm/pullmirror-spool-') : undefined;
    try {
      if (!other || statSync(other).dev === statSync(store.root).dev) return t.skip('no second file system (/dev/shm) beside the temp dir');
      const content = new Pattern(12 * 1024 * 1024);
      const spool = path.join(other, 'spool');
      await content.writeTo(spool);
      await store.driver.commitFile(spool, 'blobs/sha256/ee/moved');
      assert.equal(existsSync(spool), false, 'the spool file is gone');
      const file = path.join(store.root, 'blobs/sha256/ee/moved');
      assert.equal(createHash('sha256').update(readFileSync(file)).digest('hex'), content.sha256(0, content.size - 1));
      assert.deepEqual(readdirSync(store.tempDir), [], 'the copy was renamed, nothing left in the temp dir');
    } finally {
      store.remove();
      if (other) rmSync(other, { recursive: true, force: true });
    }
  });

  it("a store whose root is gone answers 'missing-store' to writes and probe, and is not made again", async () => {
    const store = filesystemStore();
    store.remove();
    await assert.rejects(store.driver.putContent('repositories/x/_tags/latest', 'x'), isFault('missing-store'));
    const spool = path.join(mkdtempSync(path.join(os.tmpdir(), 'pullmirror-spool-')), 'spool');
    try {
      writeFileSync(spool, 'x');
      await assert.rejects(store.driver.commitFile(spool, 'blobs/sha256/00/x'), isFault('missing-store'));
      assert.equal(existsSync(spool), false);
    } finally {
      rmSync(path.dirname(spool), { recursive: true, force: true });
    }
    await assert.rejects(store.driver.probe(), isFault('missing-store'));
    await assert.rejects(store.driver.usage(), isFault('missing-store'));
    assert.equal(existsSync(store.root), false, 'the root was not created (an unmounted volume stays visible as such)');
    // Reads are answers all the same: nothing is there.
    assert.equal(await store.driver.getContent('repositories/x/_tags/latest'), undefined);
    assert.deepEqual(await collect(store.driver.walk('')), []);

    // A root that is a file is no store either.
    writeFileSync(store.root, '');
    try {
      await assert.rejects(store.driver.probe(), isFault('missing-store'));
    } finally {
      rmSync(store.root, { force: true });
    }
  });
});

/*
 * Faults of a real medium. A root process ignores permissions, so as root a read-only store is
 * a tmpfs remounted read-only and a full one a 1 MiB tmpfs (CI runs as root); without root the
 * read-only case uses permissions, and the full case skips with the reason (no way to fill a
 * disk without a mount).
 */
describe('filesystem driver: faults of the medium', () => {
  it("a read-only store: reads and probe work, writes answer 'denied' and leave nothing", async (t) => {
    const area = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-fs-driver-ro-'));
    const spoolArea = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-spool-'));
    let disk: Tmpfs | string | undefined;
    try {
      const root = path.join(area, 'store');
      const asRoot = process.getuid?.() === 0;
      if (asRoot) {
        disk = await mountTmpfs(root, 4);
        if (typeof disk === 'string') return t.skip(disk);
      }
      const tempDir = path.join(root, '_tmp', 'i');
      mkdirSync(tempDir, { recursive: true });
      const driver = new FilesystemDriver({ root, tempDir });
      await driver.putContent('repositories/x/_tags/latest', 'before');
      if (typeof disk === 'object') await disk.remountReadOnly();
      else for (const dir of [root, path.join(root, 'repositories/x/_tags'), path.join(root, '_tmp'), tempDir]) chmodSync(dir, 0o555);

      assert.equal((await driver.getContent('repositories/x/_tags/latest'))?.toString(), 'before');
      await driver.probe();
      await assert.rejects(driver.putContent('repositories/x/_tags/latest', 'after'), isFault('denied'));
      await assert.rejects(driver.putContent('repositories/y/_tags/latest', 'new'), isFault('denied'));
      // A spool on another file system (a read-only store could not have taken it): copied, refused, removed.
      const spool = path.join(spoolArea, 'spool');
      writeFileSync(spool, 'blob');
      await assert.rejects(driver.commitFile(spool, 'blobs/sha256/00/x'), isFault('denied'));
      assert.equal(existsSync(spool), false, 'the spool file is gone');
      assert.equal((await driver.getContent('repositories/x/_tags/latest'))?.toString(), 'before');
      assert.equal(await driver.stat('blobs/sha256/00/x'), undefined);
    } finally {
      if (typeof disk === 'object') await disk.unmount();
      else if (existsSync(area)) chmodRecursive(area);
      rmSync(area, { recursive: true, force: true });
      rmSync(spoolArea, { recursive: true, force: true });
    }
  });

  it("a full store answers 'full', keeps the old content, and leaves no temp file", async (t) => {
    const area = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-fs-driver-full-'));
    const spoolArea = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-spool-'));
    const disk = await mountTmpfs(path.join(area, 'store'), 1);
    try {
      if (typeof disk === 'string') return t.skip(disk);
      const tempDir = path.join(disk.path, '_tmp', 'i');
      mkdirSync(tempDir, { recursive: true });
      const driver = new FilesystemDriver({ root: disk.path, tempDir });
      await driver.putContent('repositories/x/_manifests/sha256/aa', 'small');
      await assert.rejects(driver.putContent('repositories/x/_manifests/sha256/aa', Buffer.alloc(2 * 1024 * 1024, 'm')), isFault('full'));
      assert.equal((await driver.getContent('repositories/x/_manifests/sha256/aa'))?.toString(), 'small');
      const spool = path.join(spoolArea, 'spool');
      writeFileSync(spool, Buffer.alloc(2 * 1024 * 1024, 'b'));
      await assert.rejects(driver.commitFile(spool, 'blobs/sha256/bb/big'), isFault('full'));
      assert.equal(existsSync(spool), false, 'the spool file is gone');
      assert.equal(await driver.stat('blobs/sha256/bb/big'), undefined);
      assert.deepEqual(readdirSync(tempDir), [], 'no temp file fills the disk');
      assert.ok(((await driver.usage()).totalBytes ?? 0) <= 1024 * 1024, 'usage is the small disk\'s');
    } finally {
      if (typeof disk === 'object') await disk.unmount();
      rmSync(area, { recursive: true, force: true });
      rmSync(spoolArea, { recursive: true, force: true });
    }
  });
});

/** Gives every directory under `dir` its write permission back (the non-root read-only case). */
function chmodRecursive(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) chmodRecursive(path.join(dir, entry.name));
}
