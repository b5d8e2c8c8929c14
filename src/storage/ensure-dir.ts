import { mkdir } from 'node:fs/promises';

/**
 * `mkdir -p` that tells the real reason it failed. Node's recursive mkdir answers ENOENT for a
 * parent it could not create (on a read-only filesystem, say), which reads as a bug instead of
 * "the store is not writable"; asking again without recursion for the first missing directory
 * gives the true code (EROFS, EACCES, ENOSPC), so callers can pass content through instead.
 */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException;
    if (failure.code !== 'ENOENT' || !failure.path) throw error;
    await mkdir(failure.path);
    await mkdir(dir, { recursive: true });
  }
}
