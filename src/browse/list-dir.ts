import { readdir } from 'node:fs/promises';

/** A directory's entries; none when it does not exist (or vanished during a walk). */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
