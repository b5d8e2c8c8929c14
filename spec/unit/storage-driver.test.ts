import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { describeDriverConformance } from '../support/driver-conformance.ts';

/** Descriptors this process holds on files under `root` (/proc/self/fd: what a leak would leave open). */
export function descriptorsUnder(root: string): number {
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
export function filesystemStore(): { root: string; tempDir: string; spoolDir: string; driver: FilesystemDriver; remove(): void } {
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
