import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { attachmentTag } from '../registry/attachment-tags.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import type { Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { MediaType } from '../registry/media-types.ts';
import { parseReferrers, referrersIndex, type ReferrerDescriptor } from '../registry/referrers.ts';
import { isStoreUnwritable } from '../storage/blob-store.ts';
import type { StorageDriver } from '../storage/driver/storage-driver.ts';
import { StoreKeys } from '../storage/paths.ts';
import { readSmallObject } from '../storage/small-object.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { Remote } from '../upstream/remotes.ts';
import { SingleFlight } from '../util/single-flight.ts';
import type { ProxyManifestStore } from './proxy-manifest-store.ts';
import { readWithin } from './small-blob.ts';

/** Pages of an upstream's referrers answer followed (its `Link: rel="next"`), and entries kept in all. */
const MAX_UPSTREAM_PAGES = 32;
const MAX_REFERRERS = 10_000;
/** A saved list is read back within this (MAX_REFERRERS entries with their annotations fit). */
const MAX_SAVED_BYTES = 16 * 1024 * 1024;

export interface ReferrersResult {
  descriptors: ReferrerDescriptor[];
  origin: 'cache' | 'upstream' | 'stale';
}

/**
 * The referrers of a manifest, through the mirror. Upstream's referrers API first (every page
 * of it); an upstream without the API answers 404, and then the referrers tag schema
 * (`<alg>-<hex>`, read through the manifest store, so it is cached as any tag); no tag there
 * means nothing refers. Each answer is kept in the store per repository and subject: while upstream
 * is down the last one is served. Within the tag freshness window an answer is served from
 * memory without asking upstream.
 */
export class ProxyReferrers {
  private readonly manifests: ProxyManifestStore;
  private readonly driver: StorageDriver;
  private readonly readOnly: boolean;
  private readonly logger: Logger;
  private readonly flights = new SingleFlight<ReferrersResult>();
  private readonly recent = new LRUCache<string, { descriptors: ReferrerDescriptor[]; at: number }>({ max: 10_000 });

  constructor(options: { manifests: ProxyManifestStore; driver: StorageDriver; readOnly: boolean; logger: Logger }) {
    this.manifests = options.manifests;
    this.driver = options.driver;
    this.readOnly = options.readOnly;
    this.logger = options.logger;
  }

  list(remote: Remote, name: string, subject: Digest): Promise<ReferrersResult> {
    const key = `${remote.key(name)}@${subject.value}`;
    const recent = this.recent.get(key);
    if (recent && performance.now() - recent.at < remote.policy.tagFreshnessMs) return Promise.resolve({ descriptors: recent.descriptors, origin: 'cache' });
    return this.flights.do(key, async () => {
      let descriptors: ReferrerDescriptor[];
      try {
        descriptors = (await this.fromUpstreamApi(remote, name, subject)) ?? (await this.fromTagSchema(remote, name, subject));
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        const saved = await this.saved(remote, name, subject);
        if (!saved) throw error;
        this.logger.warn('serving stale referrers', { repository: remote.key(name), subject: subject.value, reason: error.message });
        return { descriptors: saved, origin: 'stale' };
      }
      this.recent.set(key, { descriptors, at: performance.now() });
      await this.save(remote, name, subject, descriptors);
      return { descriptors, origin: 'upstream' };
    });
  }

  /** Every page of upstream's referrers API; undefined when upstream has no such API (404). */
  private async fromUpstreamApi(remote: Remote, name: string, subject: Digest): Promise<ReferrerDescriptor[] | undefined> {
    const descriptors: ReferrerDescriptor[] = [];
    let path: string | undefined = `/v2/${name}/referrers/${subject.value}`;
    for (let page = 0; path && page < MAX_UPSTREAM_PAGES && descriptors.length < MAX_REFERRERS; page++) {
      const response = await remote.upstream.request({ method: 'GET', path, repository: name, headers: { accept: MediaType.ociIndex } });
      if (response.statusCode === 404 && page === 0) {
        await response.body.dump();
        return undefined;
      }
      if (response.statusCode !== 200) {
        await response.body.dump();
        throw upstreamStatusError(response, 'MANIFEST_UNKNOWN');
      }
      const bytes = await readWithin(response.body, MAX_MANIFEST_BYTES, () => new RegistryError('UPSTREAM_UNAVAILABLE', 'upstream referrers page too large', { status: 502 }));
      const parsed = parseReferrers(bytes);
      if (!parsed) throw new RegistryError('UPSTREAM_UNAVAILABLE', 'upstream referrers answer is not an image index', { status: 502 });
      descriptors.push(...parsed);
      path = nextPage(header(response, 'link'), remote, name);
    }
    return descriptors.slice(0, MAX_REFERRERS);
  }

  /** The referrers tag schema's index, or nothing refers (no such tag upstream). */
  private async fromTagSchema(remote: Remote, name: string, subject: Digest): Promise<ReferrerDescriptor[]> {
    let bytes: Buffer;
    try {
      const tag = attachmentTag(subject, 'referrers');
      const result = await this.manifests.byTag(remote, name, tag);
      bytes = await this.manifests.bytesFor(remote, name, result);
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'MANIFEST_UNKNOWN') return [];
      throw error;
    }
    return parseReferrers(bytes) ?? [];
  }

  private async saved(remote: Remote, name: string, subject: Digest): Promise<ReferrerDescriptor[] | undefined> {
    const bytes = await readSmallObject(this.driver, StoreKeys.referrers(remote.key(name), subject), MAX_SAVED_BYTES);
    return bytes && parseReferrers(bytes);
  }

  private async save(remote: Remote, name: string, subject: Digest, descriptors: ReferrerDescriptor[]): Promise<void> {
    if (this.readOnly) return;
    try {
      await this.driver.putContent(StoreKeys.referrers(remote.key(name), subject), referrersIndex(descriptors));
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.logger.warn('store unwritable: referrers not recorded', { repository: remote.key(name), subject: subject.value });
    }
  }
}

/**
 * The path of upstream's next page (`Link: </v2/…/referrers/…?…>; rel="next"`), only when it
 * stays on this repository's referrers of the upstream: a Link cannot send the mirror elsewhere.
 */
function nextPage(link: string | undefined, remote: Remote, name: string): string | undefined {
  const match = link && /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  if (!match) return undefined;
  const base = remote.upstream.url;
  const url = new URL(match[1], base);
  const prefix = base.pathname.replace(/\/$/, '');
  if (url.origin !== base.origin || !url.pathname.startsWith(`${prefix}/v2/${name}/referrers/`)) return undefined;
  return url.pathname.slice(prefix.length) + url.search;
}
