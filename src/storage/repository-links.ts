import { ensureDir } from './ensure-dir.ts';
import { access, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseDigest, type Digest } from '../registry/digest.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { isNotFound } from './blob-store.ts';
import type { StorePaths } from './paths.ts';

export type AccessVerdict = 'public' | 'private';

/**
 * Which blobs a repository holds, and whether the upstream lets anonymous clients pull it:
 * what keeps one repository's clients from reading another repository's blobs by digest out of
 * the shared blob store (the store is content-addressed, the permission is per repository).
 * Like distribution's `_layers` links: one small file per repository and blob.
 */
export class RepositoryLinks {
  private readonly paths: StorePaths;
  private readonly tempDir: string;
  /**
   * False in read-only maintenance mode: links and verdicts are then kept only in the callers'
   * memory (a lost link costs an upstream check, nothing more), and the store is not touched.
   */
  writable = true;

  constructor(paths: StorePaths, tempDir: string) {
    this.paths = paths;
    this.tempDir = tempDir;
  }

  async hasBlob(name: string, digest: Digest): Promise<boolean> {
    try {
      await access(this.paths.layerLink(name, digest));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /**
   * Records that the repository holds these blobs. A lost link only costs an upstream check
   * later, so the files are written without fsync; the content is the digest, as distribution's.
   */
  async linkBlobs(name: string, digests: Iterable<string>): Promise<void> {
    if (!this.writable) return;
    for (const value of digests) {
      const path = this.paths.layerLink(name, parseDigest(value));
      await ensureDir(dirname(path));
      await writeFile(path, value);
    }
  }

  async readVerdict(name: string): Promise<AccessVerdict | undefined> {
    try {
      const text = (await readFile(this.paths.accessVerdict(name), 'utf8')).trim();
      return text === 'public' || text === 'private' ? text : undefined;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async writeVerdict(name: string, verdict: AccessVerdict): Promise<void> {
    if (!this.writable) return;
    await writeFileAtomic(this.paths.accessVerdict(name), verdict, this.tempDir);
  }
}
