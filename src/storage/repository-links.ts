import { parseDigest, type Digest } from '../registry/digest.ts';
import type { StorageDriver } from './driver/storage-driver.ts';
import { StoreKeys } from './paths.ts';
import { readSmallObject } from './small-object.ts';
import { mapLimited } from '../util/map-limited.ts';

export type AccessVerdict = 'public' | 'private';

/**
 * Which blobs a repository holds, and whether the upstream lets anonymous clients pull it:
 * what keeps one repository's clients from reading another repository's blobs by digest out of
 * the shared blob store (the store is content-addressed, the permission is per repository).
 * Like distribution's `_layers` links: one small object per repository and blob.
 */
export class RepositoryLinks {
  private readonly driver: StorageDriver;
  /**
   * False in read-only maintenance mode: links and verdicts are then kept only in the callers'
   * memory (a lost link costs an upstream check, nothing more), and the store is not touched.
   */
  writable = true;

  constructor(driver: StorageDriver) {
    this.driver = driver;
  }

  async hasBlob(name: string, digest: Digest): Promise<boolean> {
    return (await this.driver.stat(StoreKeys.layerLink(name, digest))) !== undefined;
  }

  /**
   * Records that the repository holds these blobs; the content is the digest, as distribution's.
   * Written a few at a time: each is a flushed write (a rename on the filesystem, a PUT on S3),
   * and a manifest's response waits for its links.
   */
  async linkBlobs(name: string, digests: Iterable<string>): Promise<void> {
    if (!this.writable) return;
    await mapLimited([...digests], (value) => this.driver.putContent(StoreKeys.layerLink(name, parseDigest(value)), value));
  }

  async readVerdict(name: string): Promise<AccessVerdict | undefined> {
    const text = (await readSmallObject(this.driver, StoreKeys.accessVerdict(name), 64))?.toString('utf8').trim();
    return text === 'public' || text === 'private' ? text : undefined;
  }

  async writeVerdict(name: string, verdict: AccessVerdict): Promise<void> {
    if (!this.writable) return;
    await this.driver.putContent(StoreKeys.accessVerdict(name), verdict);
  }
}
