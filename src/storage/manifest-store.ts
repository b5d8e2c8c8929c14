import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../registry/digest.ts';
import { parseDigest } from '../registry/digest.ts';
import { writeFileAtomic } from './atomic-file.ts';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import { isNotFound, type FilesystemBlobStore } from './blob-store.ts';
import type { StorePaths } from './paths.ts';
import { manifestReferences } from '../registry/manifest-references.ts';
import { RepositoryLinks } from './repository-links.ts';
import { listDir } from './repository-walk.ts';

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

/**
 * Per-repository manifest links and tags on top of the blob store. A manifest is served for a
 * repository only when that repository links it, as distribution does.
 */
export class FilesystemManifestStore {
  private readonly paths: StorePaths;
  private readonly blobs: FilesystemBlobStore;
  /** The repository's blob links, written with each manifest (what the manifest references). */
  readonly links: RepositoryLinks;
  listener?: ManifestStoreListener;

  constructor(paths: StorePaths, blobs: FilesystemBlobStore) {
    this.paths = paths;
    this.blobs = blobs;
    this.links = new RepositoryLinks(paths, blobs.tempDir);
  }

  private get tempDir(): string {
    return this.blobs.tempDir;
  }

  async getLink(name: string, digest: Digest): Promise<ManifestDescriptor | undefined> {
    try {
      const link = JSON.parse(await readFile(this.paths.manifestLink(name, digest), 'utf8')) as { mediaType: string; size: number };
      return { digest: digest.value, size: link.size, mediaType: link.mediaType };
    } catch (error) {
      if (isNotFound(error) || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  /** Up to `limit` manifests a repository links, with their media types (for a walk of its indexes). */
  async linkedManifests(name: string, limit: number): Promise<ManifestDescriptor[]> {
    const out: ManifestDescriptor[] = [];
    const dir = join(this.paths.repository(name), '_manifests');
    for (const algorithm of await listDir(dir)) {
      for (const hex of await listDir(join(dir, algorithm))) {
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

  async read(digest: Digest): Promise<Buffer | undefined> {
    return this.blobs.readSmall(digest);
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
    await writeFileAtomic(this.paths.manifestLink(name, digest), link, this.tempDir);
    if (newRepository) this.listener?.repositoryAdded(name);
    if (newBlob) this.listener?.manifestAdded(bytes.length);
  }

  /** A repository counts once it holds a manifest link or a tag (two stats, on a miss only). */
  private async isNewRepository(name: string): Promise<boolean> {
    const dir = this.paths.repository(name);
    const exists = (path: string) => access(path).then(() => true, () => false);
    return !(await exists(join(dir, '_manifests'))) && !(await exists(join(dir, '_tags')));
  }

  async readTag(name: string, tag: string): Promise<string | undefined> {
    try {
      return (await readFile(this.paths.tag(name, tag), 'utf8')).trim();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** `previous`: what readTag answered just before (undefined: the tag is new to the store). */
  async writeTag(name: string, tag: string, digest: string, previous: string | undefined): Promise<void> {
    const path = this.paths.tag(name, tag);
    const newTag = this.listener !== undefined && previous === undefined;
    const newRepository = newTag && (await this.isNewRepository(name));
    await writeFileAtomic(path, digest, this.tempDir);
    if (newRepository) this.listener?.repositoryAdded(name);
    if (newTag) this.listener?.tagAdded(name);
  }
}
