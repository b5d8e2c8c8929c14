import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { digestOf, parseDigest, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { MANIFEST_ACCEPT, sniffManifestMediaType } from '../registry/media-types.ts';
import type { FilesystemManifestStore, ManifestDescriptor } from '../storage/manifest-store.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { SingleFlight } from '../util/single-flight.ts';

/** distribution refuses manifests above 4 MiB; so do we, so no upstream can make us buffer more. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Bytes of manifest content kept in memory for the hot by-digest path. */
const CONTENT_CACHE_BYTES = 64 * 1024 * 1024;

export interface ManifestResult {
  descriptor: ManifestDescriptor;
  /** Where the answer came from; `stale` when upstream could not be asked and the cache answered. */
  origin: 'cache' | 'upstream' | 'stale';
}

/**
 * The pull-through manifest store. By digest: immutable, served from disk once verified. By
 * tag: a HEAD upstream (free of Docker Hub's pull count) gives the current digest, which is
 * served locally when cached and fetched by digest otherwise; concurrent checks of one tag
 * share one upstream request.
 */
export class ProxyManifestStore {
  private readonly manifests: FilesystemManifestStore;
  private readonly logger: Logger;
  private readonly tagChecks = new SingleFlight<ManifestResult>();
  private readonly fetches = new SingleFlight<ManifestResult>();
  /** `name@digest` → link: the repository has this manifest (positive answers only). */
  private readonly links = new LRUCache<string, ManifestDescriptor>({ max: 50_000 });
  private readonly contents = new LRUCache<string, Buffer>({ maxSize: CONTENT_CACHE_BYTES, sizeCalculation: (b) => b.length || 1 });

  constructor(options: { manifests: FilesystemManifestStore; logger: Logger }) {
    this.manifests = options.manifests;
    this.logger = options.logger;
  }

  async byDigest(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<ManifestResult> {
    const local = await this.localLink(name, digest);
    if (local) return { descriptor: local, origin: 'cache' };
    return this.fetches.do(`${upstream.namespace}/${name}@${digest.value}`, () => this.fetch(upstream, name, digest.value));
  }

  async byTag(upstream: UpstreamRegistry, name: string, tag: string): Promise<ManifestResult> {
    return this.tagChecks.do(`${upstream.namespace}/${name}:${tag}`, () => this.checkTag(upstream, name, tag));
  }

  /** The bytes of a manifest this store answered for. */
  async content(descriptor: ManifestDescriptor): Promise<Buffer> {
    const cached = this.contents.get(descriptor.digest);
    if (cached) return cached;
    const bytes = await this.manifests.read(parseDigest(descriptor.digest));
    if (!bytes) throw new RegistryError('MANIFEST_UNKNOWN', 'manifest content missing from the store');
    this.contents.set(descriptor.digest, bytes);
    return bytes;
  }

  private async localLink(name: string, digest: Digest): Promise<ManifestDescriptor | undefined> {
    const key = `${name}@${digest.value}`;
    const cached = this.links.get(key);
    if (cached) return cached;
    const link = await this.manifests.getLink(name, digest);
    if (link) this.links.set(key, link);
    return link;
  }

  private async checkTag(upstream: UpstreamRegistry, name: string, tag: string): Promise<ManifestResult> {
    let response: Dispatcher.ResponseData;
    try {
      response = await upstream.request({ method: 'HEAD', path: `/v2/${name}/manifests/${tag}`, repository: name, headers: { accept: MANIFEST_ACCEPT } });
      await response.body.dump();
    } catch (error) {
      return this.staleTag(name, tag, error as RegistryError);
    }
    if (response.statusCode !== 200) {
      const error = upstreamStatusError(response, 'MANIFEST_UNKNOWN');
      if (response.statusCode === 404) throw error;
      return this.staleTag(name, tag, error);
    }
    const announced = header(response, 'docker-content-digest');
    let result: ManifestResult;
    if (announced) {
      const digest = parseDigest(announced);
      const local = await this.localLink(name, digest);
      result = local ? { descriptor: local, origin: 'cache' } : await this.fetches.do(`${upstream.namespace}/${name}@${digest.value}`, () => this.fetch(upstream, name, digest.value));
    } else {
      // An upstream that does not say the digest on HEAD: fetch by tag and hash what came.
      result = await this.fetch(upstream, name, tag);
    }
    if ((await this.manifests.readTag(name, tag)) !== result.descriptor.digest) {
      await this.manifests.writeTag(name, tag, result.descriptor.digest);
    }
    return result;
  }

  /** Upstream could not be asked about a tag: answer with what the tag last pointed at, if anything. */
  private async staleTag(name: string, tag: string, error: RegistryError): Promise<ManifestResult> {
    const last = await this.manifests.readTag(name, tag);
    const local = last ? await this.localLink(name, parseDigest(last)) : undefined;
    if (!local) throw error;
    this.logger.warn('serving stale tag', { repository: name, tag, digest: local.digest, reason: error.message });
    return { descriptor: local, origin: 'stale' };
  }

  /** GETs a manifest by digest (or by tag), verifies it and stores it. */
  private async fetch(upstream: UpstreamRegistry, name: string, reference: string): Promise<ManifestResult> {
    const response = await upstream.request({ method: 'GET', path: `/v2/${name}/manifests/${reference}`, repository: name, headers: { accept: MANIFEST_ACCEPT } });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw upstreamStatusError(response, 'MANIFEST_UNKNOWN');
    }
    const bytes = await readLimited(response.body, MAX_MANIFEST_BYTES);
    const expected = reference.includes(':') ? reference : header(response, 'docker-content-digest');
    const algorithm = expected ? parseDigest(expected).algorithm : 'sha256';
    const actual = digestOf(bytes, algorithm);
    if (expected && actual !== expected) {
      this.logger.warn('upstream manifest digest mismatch', { repository: name, expected, actual });
      throw new RegistryError('DIGEST_INVALID', 'upstream manifest does not match its digest', { status: 502, detail: { expected, actual } });
    }
    const contentType = header(response, 'content-type')?.split(';')[0].trim();
    const mediaType = contentType && contentType.startsWith('application/vnd.') ? contentType : sniffManifestMediaType(bytes);
    const descriptor: ManifestDescriptor = { digest: actual, size: bytes.length, mediaType };
    await this.manifests.put(name, descriptor, bytes);
    this.links.set(`${name}@${actual}`, descriptor);
    this.contents.set(actual, bytes);
    this.logger.info('manifest cached', { repository: name, digest: actual, mediaType });
    return { descriptor, origin: 'upstream' };
  }
}

async function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      throw new RegistryError('MANIFEST_INVALID', `upstream manifest larger than ${limit} bytes`, { status: 502 });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
