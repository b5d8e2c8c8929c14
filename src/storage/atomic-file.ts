import { ensureDir } from './ensure-dir.ts';
import { randomUUID } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** A temporary file name in `tmpDir`; the caller renames it into place or unlinks it. */
export function tmpPath(tmpDir: string): string {
  return join(tmpDir, randomUUID());
}

/**
 * Writes a small file so that readers see the old content or the new, never a part: write a
 * temporary file, flush it, rename it over the target. On any failure (a full disk at the
 * write or the flush, the rename) the temporary file is removed: nothing is left behind in
 * `tmpDir`, and the error is the one that stopped the write.
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, tmpDir: string): Promise<void> {
  await ensureDir(tmpDir);
  const temp = tmpPath(tmpDir);
  const handle = await open(temp, 'w');
  try {
    try {
      await handle.writeFile(data);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await ensureDir(dirname(target));
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}
