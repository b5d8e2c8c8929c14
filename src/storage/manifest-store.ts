import type { Digest } from '../registry/digest.ts';
import { parseDigest } from '../registry/digest.ts';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import type { BlobStore } from './blob-store.ts';
import type { StorageDriver } from './driver/storage-driver.ts';
import { StoreKeys } from './paths.ts';
import { manifestReferences } from '../registry/manifest-references.ts';
import { RepositoryLinks } from './repository-links.ts';
import { readSmallObject } from './small-object.ts';

/** A manifest as stored: its bytes live in the blob store, this is what a repository links. */
export interface ManifestDescriptor extends BlobDescriptor {
  mediaType: string;
}

/** Told of what this process adds to repositories (the live store figures). */
export interface ManifestStoreListener {
  repositoryAdded(key: string): void;
  tagAdded(key: string): void;
  /** A manifest stored for the first time (its blob was new to the store). */
  manifestAdded(size: number): void;
}

/** A link or a tag is a few dozen bytes: anything larger at their keys is not one this store wrote. */
const MAX_LINK_BYTES = 4096;

/**
 * Per-repository manifest links and tags on top of the blob store, over the storage driver. A
 * manifest is served for a repository only when that repository links it, as distribution does.
 */
export class ManifestStore {
  private readonly driver: StorageDriver;
  private readonly blobs: BlobStore;
  /** The repository's blob links, written with each manifest (what the manifest references). */
  readonly links: RepositoryLinks;
  listener?: ManifestStoreListener;

  constructor(blobs: BlobStore) {
    this.driver = blobs.driver;
    this.blobs = blobs;
    this.links = new RepositoryLinks(blobs.driver);
  }

  async getLink(name: string, digest: Digest): Promise<ManifestDescriptor | undefined> {
    const content = await this.readSmall(StoreKeys.manifestLink(name, digest));
    if (content === undefined) return undefined;
    let link: { mediaType?: unknown; size?: unknown };
    try {
      link = JSON.parse(content) as typeof link;
    } catch {
      return undefined; // not a link this store wrote
    }
    if (typeof link.mediaType !== 'string' || typeof link.size !== 'number') return undefined;
    return { digest: digest.value, size: link.size, mediaType: link.mediaType };
  }

  /** Up to `limit` manifests a repository links, with their media types (for a walk of its indexes). */
  async linkedManifests(name: string, limit: number): Promise<ManifestDescriptor[]> {
    const out: ManifestDescriptor[] = [];
    const prefix = StoreKeys.manifestLinks(name);
    for (const algorithm of await collect(this.driver.children(prefix))) {
      for await (const hex of this.driver.children(`${prefix}/${algorithm}`)) {
        if (out.length >= limit) return out;
        let digest: Digest;
        try {
          digest = parseDigest(`${algorithm}:${hex}`);
        } catch {
          continue; // not a link this store wrote
        }
        const link = await this.getLink(name, digest);
        if (link) out.push(link);
      }
    }
    return out;
  }

  /** A stored manifest's bytes; undefined when they are not stored (or are no manifest's: past MAX_MANIFEST_BYTES). */
  async read(digest: Digest): Promise<Buffer | undefined> {
    return readSmallObject(this.driver, StoreKeys.blob(digest), MAX_MANIFEST_BYTES);
  }

  /** Stores verified manifest bytes and links them, and the blobs they reference, to the repository. */
  async put(name: string, descriptor: ManifestDescriptor, bytes: Uint8Array): Promise<void> {
    const digest = parseDigest(descriptor.digest);
    const newBlob = !(await this.blobs.stat({ digest }));
    if (newBlob) await this.blobs.putSmall(digest, bytes);
    // Blob links first: a manifest visible in a repository always has its blobs linked.
    await this.links.linkBlobs(name, manifestReferences(bytes).blobs);
    const newRepository = this.listener && (await this.isNewRepository(name));
    const link = JSON.stringify({ mediaType: descriptor.mediaType, size: descriptor.size });
    await this.driver.putContent(StoreKeys.manifestLink(name, digest), link);
    if (newRepository) this.listener?.repositoryAdded(name);
    if (newBlob) this.listener?.manifestAdded(bytes.length);
  }

  /** A repository counts once it holds a manifest link or a tag (one listing of its few entries, on a miss only). */
  private async isNewRepository(name: string): Promise<boolean> {
    for await (const entry of this.driver.children(StoreKeys.repository(name))) {
      if (entry === '_manifests' || entry === '_tags') return false;
    }
    return true;
  }

  async readTag(name: string, tag: string): Promise<string | undefined> {
    return (await this.readSmall(StoreKeys.tag(name, tag)))?.trim();
  }

  /**
   * Points the tag at `digest`: readers see the old digest or the new, never a part (putContent).
   * `previous`: what readTag answered just before (undefined: the tag is new to the store).
   */
  async writeTag(name: string, tag: string, digest: string, previous: string | undefined): Promise<void> {
    const newTag = this.listener !== undefined && previous === undefined;
    const newRepository = newTag && (await this.isNewRepository(name));
    await this.driver.putContent(StoreKeys.tag(name, tag), digest);
    if (newRepository) this.listener?.repositoryAdded(name);
    if (newTag) this.listener?.tagAdded(name);
  }

  private async readSmall(key: string): Promise<string | undefined> {
    return (await readSmallObject(this.driver, key, MAX_LINK_BYTES))?.toString('utf8');
  }
}

async function collect(names: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const name of names) out.push(name);
  return out;
}
