import { LRUCache } from 'lru-cache';
import { mapLimited } from '../util/map-limited.ts';
import { AccessClockUnavailable, accessItem, lastUsesOf } from '../eviction/access-clock.ts';
import { readRepository, type StoreReader } from '../eviction/inventory.ts';
import type { KeepRules } from '../eviction/keep.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import { manifestReferences } from '../registry/manifest-references.ts';
import { MediaType } from '../registry/media-types.ts';
import { blobKey, listNames, storeKey } from '../storage/repository-walk.ts';

/** `lastUseMs`: as a pass counts it, the later of the access clock's record and the object's write. */
export interface SnapshotTag {
  digest?: string;
  lastUseMs: number;
}

export interface SnapshotLink {
  lastUseMs: number;
  mediaType?: string;
}

/** One repository's tags and manifest links, as an eviction pass would see them now. */
export interface RepositorySnapshot {
  key: string;
  tags: Map<string, SnapshotTag>;
  links: Map<string, SnapshotLink>;
  /** Child manifest → the indexes of this repository that list it. */
  parents: Map<string, string[]>;
  /** Manifest → the latest use of the tags pointing at it. */
  tagAccess: Map<string, number>;
}

/** When something goes, and why not: the planner's rules (src/eviction/plan.ts) for one item. */
export interface Lifetime {
  /** Last access as the planner counts it (ms since the epoch). */
  lastAccess: number;
  /** When a pass may take it: last access + the repository's TTL (never before the grace period ends). */
  expiresAt: number | null;
  expiry: 'ttl' | 'never' | 'pinned';
  /** The storage.eviction.keep pattern that holds it, and through what. */
  pinnedBy?: { pattern: string; via: string };
}

export interface LifetimeRules {
  ttlFor(key: string): number;
  graceMs: number;
  keep: KeepRules;
}

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);

/**
 * Reads one repository: every tag file (name, target, mtime) and every manifest link, and the
 * children of its indexes. Reading one repository's `_tags` and `_manifests` is bounded by that
 * repository; pages of a large one are cut from this snapshot, kept a few seconds so that
 * paging does not read it again each time (measured: a 10,000-tag repository is read in about
 * 420 ms, asynchronously, 64 files at a time, before mapLimited went to 8; each further page then takes 2 ms). Every tag's
 * target is needed because a manifest lives as long as the latest tag pointing at it.
 */
export class RepositorySnapshots {
  private readonly store: StoreReader;
  private readonly cache = new LRUCache<string, Promise<RepositorySnapshot | undefined>>({ max: 16, ttl: 10_000 });

  constructor(store: StoreReader) {
    this.store = store;
  }

  /** Undefined when the store holds no such repository. */
  get(key: string): Promise<RepositorySnapshot | undefined> {
    let snapshot = this.cache.get(key);
    if (!snapshot) {
      snapshot = read(this.store, key);
      this.cache.set(key, snapshot);
      snapshot.catch(() => this.cache.delete(key));
    }
    return snapshot;
  }
}

/** The longest link object read for its media type. */
const MAX_LINK_BYTES = 4096;

async function read(store: StoreReader, key: string): Promise<RepositorySnapshot | undefined> {
  const { driver, paths, clock } = store;
  const prefix = storeKey(paths, paths.repository(key));
  const entries = await listNames(driver, prefix);
  if (!entries.includes('_tags') && !entries.includes('_manifests')) return undefined;
  // What a pass reads of the repository (inventory.ts), with the access clock's records.
  const found = await readRepository(driver, prefix, key, entries);
  try {
    await lastUsesOf(clock, found.tags.length, (i) => accessItem.tag(key, found.tags[i].tag), (i, ms) => {
      found.tags[i].lastUseMs = Math.max(found.tags[i].lastUseMs, ms);
    });
    await lastUsesOf(clock, found.links.length, (i) => accessItem.manifest(key, found.links[i].digest), (i, ms) => {
      found.links[i].lastUseMs = Math.max(found.links[i].lastUseMs, ms);
    });
  } catch (error) {
    // The browser still shows the repository (no pass runs meanwhile): ages from the objects' writes.
    if (!(error instanceof AccessClockUnavailable)) throw error;
  }
  const tags = new Map<string, SnapshotTag>();
  for (const tag of found.tags) tags.set(tag.tag, { digest: tag.digest, lastUseMs: tag.lastUseMs });
  const links = new Map<string, SnapshotLink>();
  await mapLimited(found.links, async (link) => {
    let mediaType: string | undefined;
    try {
      const [algorithm, hex] = link.digest.split(':');
      const bytes = await driver.getContent(`${prefix}/_manifests/${algorithm}/${hex}`, MAX_LINK_BYTES);
      mediaType = bytes ? (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType : undefined;
    } catch {
      // an unreadable link still counts as a link; its type stays unknown
    }
    links.set(link.digest, { lastUseMs: link.lastUseMs, mediaType });
  });
  // Only indexes are parsed (their link says so): what a child lives as long as.
  const parents = new Map<string, string[]>();
  const indexes = [...links].filter(([, link]) => link.mediaType && INDEX_TYPES.has(link.mediaType)).map(([digest]) => digest);
  await mapLimited(indexes, async (digest) => {
    const blob = blobKey(paths, digest);
    const bytes = blob === undefined ? undefined : await driver.getContent(blob, MAX_MANIFEST_BYTES).catch(() => undefined);
    if (!bytes) return;
    for (const child of manifestReferences(bytes).manifests) parents.set(child, [...(parents.get(child) ?? []), digest]);
  });
  const tagAccess = new Map<string, number>();
  for (const tag of tags.values()) if (tag.digest) tagAccess.set(tag.digest, Math.max(tagAccess.get(tag.digest) ?? 0, tag.lastUseMs));
  return { key, tags, links, parents, tagAccess };
}

/**
 * A manifest's last access and expiry, as planEviction decides them: the latest of its link,
 * the tags pointing at it, and for a child the index listing it; pinned by a pattern for the
 * manifest, a kept tag pointing at it, or a kept index listing it.
 */
export function manifestLifetime(snapshot: RepositorySnapshot, digest: string, rules: LifetimeRules): Lifetime {
  const own = ownAccess(snapshot, digest);
  const parents = snapshot.parents.get(digest) ?? [];
  const lastAccess = Math.max(own, ...parents.map((parent) => ownAccess(snapshot, parent)));
  const pinnedBy = pinOf(snapshot, digest, rules) ?? parents.map((parent) => pinOf(snapshot, parent, rules, `index ${parent.slice(0, 19)}`)).find(Boolean);
  return lifetime(lastAccess, rules.ttlFor(snapshot.key), rules.graceMs, pinnedBy);
}

/** A tag's own expiry: it goes past the TTL from its last use even while its manifest stays. */
export function tagLifetime(snapshot: RepositorySnapshot, tag: string, rules: LifetimeRules): Lifetime {
  const entry = snapshot.tags.get(tag);
  const kept = rules.keep.keepsTag(snapshot.key, tag);
  return lifetime(entry?.lastUseMs ?? 0, rules.ttlFor(snapshot.key), rules.graceMs, kept ? { pattern: kept.source, via: `tag ${tag}` } : undefined);
}

function lifetime(lastAccess: number, ttl: number, graceMs: number, pinnedBy: Lifetime['pinnedBy']): Lifetime {
  if (pinnedBy) return { lastAccess, expiresAt: null, expiry: 'pinned', pinnedBy };
  if (ttl <= 0) return { lastAccess, expiresAt: null, expiry: 'never' };
  // Due once past the TTL and out of the grace period (plan.ts: lastAccess < now - ttl and < protectedSince).
  return { lastAccess, expiresAt: lastAccess + Math.max(ttl, graceMs), expiry: 'ttl' };
}

function ownAccess(snapshot: RepositorySnapshot, digest: string): number {
  return Math.max(snapshot.links.get(digest)?.lastUseMs ?? 0, snapshot.tagAccess.get(digest) ?? 0);
}

function pinOf(snapshot: RepositorySnapshot, digest: string, rules: LifetimeRules, via?: string): Lifetime['pinnedBy'] {
  const direct = rules.keep.keepsManifest(snapshot.key, digest);
  if (direct) return { pattern: direct.source, via: via ?? 'manifest' };
  for (const [name, tag] of snapshot.tags) {
    if (tag.digest !== digest) continue;
    const kept = rules.keep.keepsTag(snapshot.key, name);
    if (kept) return { pattern: kept.source, via: via ?? `tag ${name}` };
  }
  return undefined;
}
