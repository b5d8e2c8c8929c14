import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { digestOf, parseDigest, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import { MANIFEST_ACCEPT, sniffManifestMediaType } from '../registry/media-types.ts';
import type { FilesystemManifestStore, ManifestDescriptor } from '../storage/manifest-store.ts';
import { isStoreUnwritable } from '../storage/blob-store.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { SingleFlight } from '../util/single-flight.ts';
import { LocalFillCoordinator, type FillCoordinator } from '../fleet/fill-coordinator.ts';

/** Bytes of manifest content kept in memory for the hot by-digest path. */
const CONTENT_CACHE_BYTES = 64 * 1024 * 1024;

export interface ManifestResult {
  descriptor: ManifestDescriptor;
  /** Where the answer came from; `stale` when upstream could not be asked and the cache answered. */
  origin: 'cache' | 'upstream' | 'stale';
  /** The content, when this answer just fetched it (it may not have been stored). */
  bytes?: Buffer;
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

  /** When each tag was last confirmed upstream, and what it pointed at. */
  private readonly checkedTags = new LRUCache<string, { digest: string; at: number }>({ max: 50_000 });
  private readonly freshnessMs: number;
  private readonly rateLimitReserve: number;
  /** Shares tag checks with the other instances on the store (one upstream check between them). */
  private readonly fleet: FillCoordinator;

  /** storage.maintenance.readonly: nothing is stored, new manifests and tags pass through. */
  private readonly readOnly: boolean;

  constructor(options: { manifests: FilesystemManifestStore; logger: Logger; tagFreshnessMs?: number; rateLimitReserve?: number; readOnly?: boolean; fleet?: FillCoordinator }) {
    this.manifests = options.manifests;
    this.readOnly = options.readOnly ?? false;
    this.logger = options.logger;
    this.freshnessMs = options.tagFreshnessMs ?? 0;
    this.rateLimitReserve = options.rateLimitReserve ?? 0;
    this.fleet = options.fleet ?? new LocalFillCoordinator();
  }

  async byDigest(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<ManifestResult> {
    const local = await this.localLink(name, digest);
    if (local) return { descriptor: local, origin: 'cache' };
    return this.fetchByDigest(upstream, name, digest.value);
  }

  /**
   * A tag checked within the freshness window is answered without asking upstream; so is any
   * cached tag while Docker Hub's remaining allowance is low. Otherwise one check per tag runs
   * at a time, whatever the number of clients.
   */
  async byTag(upstream: UpstreamRegistry, name: string, tag: string): Promise<ManifestResult> {
    const key = `${upstream.namespace}/${name}:${tag}`;
    const checked = this.checkedTags.get(key);
    if (checked && Date.now() - checked.at < this.freshnessMs) {
      const local = await this.localLink(name, parseDigest(checked.digest));
      if (local) return { descriptor: local, origin: 'cache' };
    }
    if (upstream.rateLimitLow(this.rateLimitReserve)) {
      const saved = await this.lastKnown(name, tag);
      if (saved) {
        this.logger.info('upstream rate limit low: serving cached tag', { repository: name, tag, remaining: upstream.rateLimit?.remaining });
        return { descriptor: saved, origin: 'stale' };
      }
    }
    return this.tagChecks.do(key, async () => {
      let result: ManifestResult | undefined;
      const digest = await this.fleet.lookupOnce(key, this.freshnessMs, async () => {
        result = await this.checkTag(upstream, name, tag);
        return result.origin === 'stale' ? undefined : result.descriptor.digest;
      });
      if (!result && digest) {
        // Another instance checked the tag and stored the manifest in the shared store.
        const local = await this.localLink(name, parseDigest(digest));
        result = local ? { descriptor: local, origin: 'cache' } : await this.checkTag(upstream, name, tag);
      }
      if (!result) result = await this.checkTag(upstream, name, tag);
      if (result.origin !== 'stale') this.checkedTags.set(key, { digest: result.descriptor.digest, at: Date.now() });
      return result;
    });
  }

  private async lastKnown(name: string, tag: string): Promise<ManifestDescriptor | undefined> {
    const last = await this.manifests.readTag(name, tag);
    return last ? this.localLink(name, parseDigest(last)) : undefined;
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

  /**
   * The bytes to send for an answer. When they vanished from the store behind the in-memory
   * link (an eviction pass in another process), the manifest is fetched again, not lost.
   */
  async bytesFor(upstream: UpstreamRegistry, name: string, result: ManifestResult): Promise<Buffer> {
    if (result.bytes) return result.bytes;
    try {
      return await this.content(result.descriptor);
    } catch (error) {
      if (!(error instanceof RegistryError) || error.code !== 'MANIFEST_UNKNOWN') throw error;
      this.forget(name, result.descriptor.digest);
      const digest = result.descriptor.digest;
      const again = await this.fetchByDigest(upstream, name, digest);
      return again.bytes ?? (await this.content(again.descriptor));
    }
  }

  /** Forgets a repository's link to a manifest that an eviction pass removed. */
  forget(name: string, digest: string): void {
    this.links.delete(`${name}@${digest}`);
  }

  /** Forgets manifest content whose blob an eviction pass removed. */
  forgetContent(digest: string): void {
    this.contents.delete(digest);
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
      result = local ? { descriptor: local, origin: 'cache' } : await this.fetchByDigest(upstream, name, digest.value);
    } else {
      // An upstream that does not say the digest on HEAD: fetch by tag and hash what came.
      result = await this.fetch(upstream, name, tag);
    }
    try {
      if (!this.readOnly && (await this.manifests.readTag(name, tag)) !== result.descriptor.digest) {
        await this.manifests.writeTag(name, tag, result.descriptor.digest);
      }
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.logger.warn('store unwritable: tag not recorded', { repository: name, tag, error: (error as Error).message });
    }
    return result;
  }

  /** Upstream could not be asked about a tag: answer with what the tag last pointed at, if anything. */
  private async staleTag(name: string, tag: string, error: RegistryError): Promise<ManifestResult> {
    const local = await this.lastKnown(name, tag);
    if (!local) throw error;
    this.logger.warn('serving stale tag', { repository: name, tag, digest: local.digest, reason: error.message });
    return { descriptor: local, origin: 'stale' };
  }

  /**
   * A manifest by digest, fetched once: one fetch per digest at a time in this instance, and
   * in a fleet one instance fetches while the others then read what it stored.
   */
  private fetchByDigest(upstream: UpstreamRegistry, name: string, digest: string): Promise<ManifestResult> {
    const key = `${upstream.namespace}/${name}@${digest}`;
    return this.fetches.do(key, async () => {
      let fetched: ManifestResult | undefined;
      await this.fleet.lookupOnce(key, 0, async () => {
        fetched = await this.fetch(upstream, name, digest);
        return fetched.descriptor.digest;
      });
      if (fetched) return fetched;
      // Another instance fetched it into the shared store (or could not: then we fetch).
      const local = await this.localLink(name, parseDigest(digest));
      return local ? { descriptor: local, origin: 'cache' } : this.fetch(upstream, name, digest);
    });
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
    try {
      if (!this.readOnly) {
        await this.manifests.put(name, descriptor, bytes);
        this.links.set(`${name}@${actual}`, descriptor);
        this.logger.info('manifest cached', { repository: name, digest: actual, mediaType });
      }
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.logger.warn('store unwritable: manifest served uncached', { repository: name, digest: actual, error: (error as Error).message });
    }
    this.contents.set(actual, bytes);
    return { descriptor, origin: 'upstream', bytes };
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
