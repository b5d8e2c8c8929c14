import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { mapLimited } from '../util/map-limited.ts';
import type { KeepRules } from '../eviction/keep.ts';
import { manifestReferences } from '../registry/manifest-references.ts';
import { MediaType } from '../registry/media-types.ts';
import { parseDigest } from '../registry/digest.ts';
import type { StorePaths } from '../storage/paths.ts';
import { listDir } from '../storage/repository-walk.ts';

export interface SnapshotTag {
  digest?: string;
  mtimeMs: number;
}

export interface SnapshotLink {
  mtimeMs: number;
  mediaType?: string;
}

/** One repository's tags and manifest links, as an eviction pass would see them now. */
export interface RepositorySnapshot {
  key: string;
  tags: Map<string, SnapshotTag>;
  links: Map<string, SnapshotLink>;
  /** Child manifest → the indexes of this repository that list it. */
  parents: Map<string, string[]>;
  /** Manifest → the latest mtime of the tags pointing at it. */
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
  private readonly paths: StorePaths;
  private readonly cache = new LRUCache<string, Promise<RepositorySnapshot | undefined>>({ max: 16, ttl: 10_000 });

  constructor(paths: StorePaths) {
    this.paths = paths;
  }

  /** Undefined when the store holds no such repository. */
  get(key: string): Promise<RepositorySnapshot | undefined> {
    let snapshot = this.cache.get(key);
    if (!snapshot) {
      snapshot = read(this.paths, key);
      this.cache.set(key, snapshot);
      snapshot.catch(() => this.cache.delete(key));
    }
    return snapshot;
  }
}

async function read(paths: StorePaths, key: string): Promise<RepositorySnapshot | undefined> {
  const root = paths.repository(key);
  const entries = await listDir(root);
  if (!entries.includes('_tags') && !entries.includes('_manifests')) return undefined;
  const tags = new Map<string, SnapshotTag>();
  await mapLimited(await listDir(join(root, '_tags')), async (tag) => {
    const file = join(root, '_tags', tag);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return;
    const content = (await readFile(file, 'utf8').catch(() => '')).trim();
    tags.set(tag, { digest: /^[a-z0-9]+:[a-f0-9]+$/.test(content) ? content : undefined, mtimeMs: info.mtimeMs });
  });
  const links = new Map<string, SnapshotLink>();
  for (const algorithm of await listDir(join(root, '_manifests'))) {
    await mapLimited(await listDir(join(root, '_manifests', algorithm)), async (hex) => {
      const file = join(root, '_manifests', algorithm, hex);
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile()) return;
      let mediaType: string | undefined;
      try {
        mediaType = (JSON.parse(await readFile(file, 'utf8')) as { mediaType?: string }).mediaType;
      } catch {
        // an unreadable link still counts as a link; its type stays unknown
      }
      links.set(`${algorithm}:${hex}`, { mtimeMs: info.mtimeMs, mediaType });
    });
  }
  // Only indexes are parsed (their link says so): what a child lives as long as.
  const parents = new Map<string, string[]>();
  const indexes = [...links].filter(([, link]) => link.mediaType && INDEX_TYPES.has(link.mediaType)).map(([digest]) => digest);
  await mapLimited(indexes, async (digest) => {
    const bytes = await readFile(paths.blob(parseDigest(digest))).catch(() => undefined);
    if (!bytes) return;
    for (const child of manifestReferences(bytes).manifests) parents.set(child, [...(parents.get(child) ?? []), digest]);
  });
  const tagAccess = new Map<string, number>();
  for (const tag of tags.values()) if (tag.digest) tagAccess.set(tag.digest, Math.max(tagAccess.get(tag.digest) ?? 0, tag.mtimeMs));
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
  return lifetime(entry?.mtimeMs ?? 0, rules.ttlFor(snapshot.key), rules.graceMs, kept ? { pattern: kept.source, via: `tag ${tag}` } : undefined);
}

function lifetime(lastAccess: number, ttl: number, graceMs: number, pinnedBy: Lifetime['pinnedBy']): Lifetime {
  if (pinnedBy) return { lastAccess, expiresAt: null, expiry: 'pinned', pinnedBy };
  if (ttl <= 0) return { lastAccess, expiresAt: null, expiry: 'never' };
  // Due once past the TTL and out of the grace period (plan.ts: lastAccess < now - ttl and < protectedSince).
  return { lastAccess, expiresAt: lastAccess + Math.max(ttl, graceMs), expiry: 'ttl' };
}

function ownAccess(snapshot: RepositorySnapshot, digest: string): number {
  return Math.max(snapshot.links.get(digest)?.mtimeMs ?? 0, snapshot.tagAccess.get(digest) ?? 0);
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
