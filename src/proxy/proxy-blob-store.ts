import type { DescriptorCache } from '../cache/descriptor-cache.ts';
import { isStoreUnwritable, type BlobStore } from '../storage/blob-store.ts';
import type { BlobInfo, BlobSource, ReadableBlobStore } from '../storage/readable-blob-store.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { BlobDownloads } from './blob-downloads.ts';
import type { UpstreamBlobRef } from './upstream-blob.ts';

/**
 * The pull-through blob store, with the local store's interface (STYLE habit 1): a blob the
 * store holds is served from its file; any other is downloaded once, whatever the number of
 * clients, and streamed to all of them while it is written and verified (BlobDownloads).
 */
export class ProxyBlobStore implements ReadableBlobStore<UpstreamBlobRef> {
  private readonly local: BlobStore;
  private readonly descriptors: DescriptorCache;
  readonly downloads: BlobDownloads;

  constructor(options: { local: BlobStore; descriptors: DescriptorCache; downloads: BlobDownloads }) {
    this.local = options.local;
    this.descriptors = options.descriptors;
    this.downloads = options.downloads;
  }

  /**
   * For HEAD: what the blob is, without downloading it. The descriptor cache spares the disk
   * (it never fails: a cache that errs or hangs answers "not cached", see RedisDescriptorCache);
   * a blob held nowhere here is asked upstream with a HEAD. Undefined: upstream does not have it.
   */
  async stat(ref: UpstreamBlobRef): Promise<BlobInfo | undefined> {
    const digest = ref.digest.value;
    const known = await this.descriptors.get(digest);
    if (known) return { digest, size: known.size, origin: 'cache' };
    const stored = await this.storedOrNothing(this.local.stat(ref));
    if (stored?.size !== undefined) {
      void this.descriptors.set({ digest, size: stored.size });
      return stored;
    }
    const filling = await this.downloads.fillSize(digest);
    if (filling !== undefined) return { digest, size: filling, origin: 'upstream' };
    const { upstream, name } = ref;
    const response = await upstream.request({ method: 'HEAD', path: `/v2/${name}/blobs/${digest}`, repository: name });
    await response.body.dump();
    if (response.statusCode === 404) return undefined;
    if (response.statusCode !== 200) throw upstreamStatusError(response, 'BLOB_UNKNOWN');
    const length = header(response, 'content-length');
    return { digest, size: length === undefined ? undefined : Number(length), origin: 'upstream' };
  }

  /** Whether the store holds the blob (a stat through the driver; nothing is asked upstream). */
  async isStored(ref: UpstreamBlobRef): Promise<boolean> {
    return (await this.local.stat(ref)) !== undefined;
  }

  /** Whether stored blobs are redirected to (storage.redirect, on a driver with URLs): a hit first asks `redirect`. */
  get redirects(): boolean {
    return this.local.redirects;
  }

  /**
   * A URL the client may fetch a stored blob from itself (storage.redirect), with its size; undefined:
   * the blob is served here (redirects off, not stored, or the store cannot be asked now).
   */
  redirect(ref: UpstreamBlobRef): Promise<{ url: string; size: number } | undefined> {
    return this.storedOrNothing(this.local.redirect(ref.digest));
  }

  /** Opens a blob for one response: the stored blob, else the download of it (started if none runs). */
  async open(ref: UpstreamBlobRef): Promise<BlobSource> {
    // A driver over the network opens with one request when it knows the size (one GET per
    // blob on S3); the filesystem's open is cheaper than asking the cache.
    const knownSize = this.local.sizeSavesARequest ? (await this.descriptors.get(ref.digest.value))?.size : undefined;
    return (await this.storedOrNothing(this.local.open(ref, knownSize))) ?? this.downloads.open(ref);
  }

  /**
   * What the store answered, or undefined when it cannot be read now (a bucket unreachable,
   * hung past its deadline, refusing the credentials, gone): the blob then comes from upstream,
   * verified on the way, as if it were not stored; the store is told it failed, so the download
   * passes through rather than trying to write to it too.
   */
  private async storedOrNothing<T>(reading: Promise<T>): Promise<T | undefined> {
    try {
      return await reading;
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.downloads.storeFailed(error);
      return undefined;
    }
  }

  /** Drops a deleted blob from the descriptor cache (eviction, or a gc in another process). */
  async forget(digest: string): Promise<void> {
    await this.descriptors.delete(digest).catch(() => {});
  }
}
