import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { isAttachmentTag } from '../registry/attachment-tags.ts';
import { digestOf, parseDigest, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import { MANIFEST_ACCEPT, sniffManifestMediaType } from '../registry/media-types.ts';
import type { ManifestStore, ManifestDescriptor } from '../storage/manifest-store.ts';
import { isStoreUnwritable } from '../storage/blob-store.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { Remote } from '../upstream/remotes.ts';
import { SingleFlight } from '../util/single-flight.ts';
import { LocalFillCoordinator, type FillCoordinator } from '../fleet/fill-coordinator.ts';
import type { ManifestGate } from '../signatures/signature-gate.ts';
import { readWithin } from './small-blob.ts';

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
  private readonly manifests: ManifestStore;
  private readonly logger: Logger;
  private readonly tagChecks = new SingleFlight<ManifestResult>();
  private readonly fetches = new SingleFlight<ManifestResult>();
  /** `<repository key>@digest` → link: the repository has this manifest (positive answers only). */
  private readonly links = new LRUCache<string, ManifestDescriptor>({ max: 50_000 });
  private readonly contents = new LRUCache<string, Buffer>({ maxSize: CONTENT_CACHE_BYTES, sizeCalculation: (b) => b.length || 1 });

  /** When each tag was last confirmed upstream, and what it pointed at (no digest: upstream answered 404). */
  private readonly checkedTags = new LRUCache<string, { digest?: string; at: number }>({ max: 50_000 });
  /** Shares tag checks with the other instances on the store (one upstream check between them). */
  private readonly fleet: FillCoordinator;

  /** storage.maintenance.readonly: nothing is stored, new manifests and tags pass through. */
  private readonly readOnly: boolean;
  /** The signature policy: asked before a manifest is stored (fetch) and before one is served (admit). */
  private readonly gate?: ManifestGate;

  constructor(options: { manifests: ManifestStore; logger: Logger; readOnly?: boolean; fleet?: FillCoordinator; gate?: ManifestGate }) {
    this.manifests = options.manifests;
    this.gate = options.gate;
    this.readOnly = options.readOnly ?? false;
    this.logger = options.logger;
    this.fleet = options.fleet ?? new LocalFillCoordinator();
  }

  async byDigest(remote: Remote, name: string, digest: Digest): Promise<ManifestResult> {
    const local = await this.localLink(remote.key(name), digest);
    if (local) return { descriptor: local, origin: 'cache' };
    return this.fetchByDigest(remote, name, digest.value);
  }

  /**
   * A tag checked within the freshness window is answered without asking upstream, a tag
   * upstream had not (404) included; so is any cached tag while Docker Hub's remaining allowance
   * is low. Otherwise one check per tag runs at a time, whatever the number of clients.
   */
  async byTag(remote: Remote, name: string, tag: string): Promise<ManifestResult> {
    // Per registry: the namespace leads the key of this cache and of the fleet's lookup.
    const key = `${remote.namespace}/${name}:${tag}`;
    const repo = remote.key(name);
    const freshnessMs = remote.policy.tagFreshnessMs;
    const checked = this.checkedTags.get(key);
    if (checked && performance.now() - checked.at < freshnessMs) {
      if (checked.digest === undefined) throw tagUnknownUpstream();
      const local = await this.localLink(repo, parseDigest(checked.digest));
      if (local) return { descriptor: local, origin: 'cache' };
    }
    if (remote.upstream.rateLimitLow(remote.policy.rateLimitReserve)) {
      const saved = await this.lastKnown(repo, tag);
      if (saved) {
        this.logger.info('upstream rate limit low: serving cached tag', { repository: repo, tag, remaining: remote.upstream.rateLimit?.remaining });
        return { descriptor: saved, origin: 'stale' };
      }
    }
    return this.tagChecks.do(key, async () => {
      const result = await this.checkTagOnce(remote, name, tag, key, freshnessMs);
      if (!result) {
        // Most images have no signature or attachment: remembering the 404 spares upstream
        // the same question from every client that looks for them.
        this.checkedTags.set(key, { at: performance.now() });
        throw tagUnknownUpstream();
      }
      if (result.origin !== 'stale') this.checkedTags.set(key, { digest: result.descriptor.digest, at: performance.now() });
      return result;
    });
  }

  /** One check of a tag between this instance and the fleet; undefined when upstream has no such tag. */
  private async checkTagOnce(remote: Remote, name: string, tag: string, key: string, freshnessMs: number): Promise<ManifestResult | undefined> {
    const mine: { asked: boolean; result?: ManifestResult } = { asked: false };
    const digest = await this.fleet.lookupOnce(key, freshnessMs, async () => {
      mine.asked = true;
      mine.result = await this.checkTag(remote, name, tag);
      return mine.result && mine.result.origin !== 'stale' ? mine.result.descriptor.digest : undefined;
    });
    if (mine.asked) return mine.result;
    if (digest) {
      // Another instance checked the tag and stored the manifest in the shared store.
      const local = await this.localLink(remote.key(name), parseDigest(digest));
      if (local) return { descriptor: local, origin: 'cache' };
    }
    return this.checkTag(remote, name, tag);
  }

  /** `repo`: the store's key of the repository (Remote.key). Undefined also when the store cannot be read now. */
  private async lastKnown(repo: string, tag: string): Promise<ManifestDescriptor | undefined> {
    const last = await this.storedOrNothing(this.manifests.readTag(repo, tag), repo);
    return last ? this.localLink(repo, parseDigest(last)) : undefined;
  }

  /**
   * What the store answered, or undefined when it cannot be read now (a bucket unreachable, hung
   * past storage.s3.readtimeout, refusing the credentials): the manifest then comes from upstream,
   * verified, as if it were not stored (and is served uncached if the store cannot take it
   * either), as a blob passes through. Without upstream the client gets upstream's error.
   */
  private async storedOrNothing<T>(reading: Promise<T>, repo: string): Promise<T | undefined> {
    try {
      return await reading;
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      // Not a warning per request: the storage metrics and readiness say the store fails.
      this.logger.debug('store cannot be read: manifest asked upstream', { repository: repo, error: (error as Error).message });
      return undefined;
    }
  }

  /**
   * Throws DENIED when the signature policy refuses to serve an answer of byTag or byDigest
   * (`tag`: the tag asked for). A manifest just fetched passed the policy before it was stored.
   */
  async admit(remote: Remote, name: string, result: ManifestResult, tag?: string): Promise<void> {
    if (!this.gate || result.origin === 'upstream') return;
    await this.gate.admit(remote, name, result.descriptor.digest, () => this.bytesFor(remote, name, result), tag);
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
  async bytesFor(remote: Remote, name: string, result: ManifestResult): Promise<Buffer> {
    if (result.bytes) return result.bytes;
    try {
      return await this.content(result.descriptor);
    } catch (error) {
      // Gone from the store, or the store cannot be read now: upstream has it.
      const missing = error instanceof RegistryError && error.code === 'MANIFEST_UNKNOWN';
      if (!missing && !isStoreUnwritable(error)) throw error;
      this.forget(remote.key(name), result.descriptor.digest);
      const digest = result.descriptor.digest;
      const again = await this.fetchByDigest(remote, name, digest);
      return again.bytes ?? (await this.content(again.descriptor));
    }
  }

  /** Forgets a repository's link (by the store's key of the repository) to a manifest that an eviction pass removed. */
  forget(repo: string, digest: string): void {
    this.links.delete(`${repo}@${digest}`);
  }

  /** Forgets manifest content whose blob an eviction pass removed. */
  forgetContent(digest: string): void {
    this.contents.delete(digest);
  }

  private async localLink(repo: string, digest: Digest): Promise<ManifestDescriptor | undefined> {
    const key = `${repo}@${digest.value}`;
    const cached = this.links.get(key);
    if (cached) return cached;
    const link = await this.storedOrNothing(this.manifests.getLink(repo, digest), repo);
    if (link) this.links.set(key, link);
    return link;
  }

  /** Asks upstream what a tag points at (a HEAD); undefined when upstream has no such tag. */
  private async checkTag(remote: Remote, name: string, tag: string): Promise<ManifestResult | undefined> {
    const repo = remote.key(name);
    let response: Dispatcher.ResponseData;
    try {
      response = await remote.upstream.request({ method: 'HEAD', path: `/v2/${name}/manifests/${tag}`, repository: name, headers: { accept: MANIFEST_ACCEPT } });
      await response.body.dump();
    } catch (error) {
      return this.staleTag(repo, tag, error as RegistryError);
    }
    if (response.statusCode === 404) return undefined;
    if (response.statusCode !== 200) return this.staleTag(repo, tag, upstreamStatusError(response, 'MANIFEST_UNKNOWN'));
    const announced = header(response, 'docker-content-digest');
    let result: ManifestResult;
    if (announced) {
      const digest = parseDigest(announced);
      const local = await this.localLink(repo, digest);
      result = local ? { descriptor: local, origin: 'cache' } : await this.fetchByDigest(remote, name, digest.value);
    } else {
      // An upstream that does not say the digest on HEAD: fetch by tag and hash what came.
      result = await this.fetch(remote, name, tag);
    }
    try {
      const previous = this.readOnly ? undefined : await this.manifests.readTag(repo, tag);
      if (!this.readOnly && previous !== result.descriptor.digest) await this.manifests.writeTag(repo, tag, result.descriptor.digest, previous);
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.logger.warn('store unwritable: tag not recorded', { repository: repo, tag, error: (error as Error).message });
    }
    return result;
  }

  /**
   * Upstream could not be asked about a tag: answer with what the tag last pointed at, if
   * anything. An attachment tag the mirror never saw is answered as unknown: most images have
   * none, and a client that looks for them (skopeo and podman with `use-sigstore-attachments`)
   * fails the whole pull of a cached image on an error, where a 404 means "no signature".
   */
  private async staleTag(repo: string, tag: string, error: RegistryError): Promise<ManifestResult> {
    const local = await this.lastKnown(repo, tag);
    if (local) {
      this.logger.warn('serving stale tag', { repository: repo, tag, digest: local.digest, reason: error.message });
      return { descriptor: local, origin: 'stale' };
    }
    if (isAttachmentTag(tag) && error.code !== 'DENIED') {
      this.logger.info('attachment tag unknown while upstream cannot be asked: answered 404', { repository: repo, tag, reason: error.message });
      throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown: never seen by the mirror, and upstream cannot be asked', { detail: { upstream: error.code } });
    }
    throw error;
  }

  /**
   * A manifest by digest, fetched once: one fetch per digest at a time in this instance, and
   * in a fleet one instance fetches while the others then read what it stored.
   */
  private fetchByDigest(remote: Remote, name: string, digest: string): Promise<ManifestResult> {
    const key = `${remote.namespace}/${name}@${digest}`;
    return this.fetches.do(key, async () => {
      let fetched: ManifestResult | undefined;
      await this.fleet.lookupOnce(key, 0, async () => {
        fetched = await this.fetch(remote, name, digest);
        return fetched.descriptor.digest;
      });
      if (fetched) return fetched;
      // Another instance fetched it into the shared store (or could not: then we fetch).
      const local = await this.localLink(remote.key(name), parseDigest(digest));
      return local ? { descriptor: local, origin: 'cache' } : this.fetch(remote, name, digest);
    });
  }

  /** GETs a manifest by digest (or by tag), verifies it and stores it. */
  private async fetch(remote: Remote, name: string, reference: string): Promise<ManifestResult> {
    const repo = remote.key(name);
    const response = await remote.upstream.request({ method: 'GET', path: `/v2/${name}/manifests/${reference}`, repository: name, headers: { accept: MANIFEST_ACCEPT } });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw upstreamStatusError(response, 'MANIFEST_UNKNOWN');
    }
    const bytes = await readLimited(response.body, MAX_MANIFEST_BYTES);
    const expected = reference.includes(':') ? reference : header(response, 'docker-content-digest');
    const algorithm = expected ? parseDigest(expected).algorithm : 'sha256';
    const actual = digestOf(bytes, algorithm);
    if (expected && actual !== expected) {
      this.logger.warn('upstream manifest digest mismatch', { repository: repo, expected, actual });
      throw new RegistryError('DIGEST_INVALID', 'upstream manifest does not match its digest', { status: 502, detail: { expected, actual } });
    }
    const contentType = header(response, 'content-type')?.split(';')[0].trim();
    const mediaType = contentType && contentType.startsWith('application/vnd.') ? contentType : sniffManifestMediaType(bytes);
    const descriptor: ManifestDescriptor = { digest: actual, size: bytes.length, mediaType };
    // Nothing the signature policy refuses is stored: not the manifest, so no tag and no layer either.
    await this.gate?.admit(remote, name, actual, async () => bytes, reference.includes(':') ? undefined : reference);
    try {
      if (!this.readOnly) {
        await this.manifests.put(repo, descriptor, bytes);
        this.links.set(`${repo}@${actual}`, descriptor);
        this.logger.info('manifest cached', { repository: repo, digest: actual, mediaType });
      }
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.logger.warn('store unwritable: manifest served uncached', { repository: repo, digest: actual, error: (error as Error).message });
    }
    this.contents.set(actual, bytes);
    return { descriptor, origin: 'upstream', bytes };
  }
}

/** What upstream answered for a tag it has not (now or within the freshness window). */
function tagUnknownUpstream(): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { upstream: 404 } });
}

function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
  return readWithin(body, limit, () => new RegistryError('MANIFEST_INVALID', `upstream manifest larger than ${limit} bytes`, { status: 502 }));
}
