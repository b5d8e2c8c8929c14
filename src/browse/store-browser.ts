import { mapLimited } from '../util/map-limited.ts';
import { repositoryKey, splitRepositoryKey } from '../storage/paths.ts';
import type { Remote, Remotes } from '../upstream/remotes.ts';
import { summarizeManifest, type ManifestSummary } from './manifest-summary.ts';
import { RepositoryIndex } from './repository-index.ts';
import { manifestLifetime, RepositorySnapshots, tagLifetime, type Lifetime, type LifetimeRules } from './repository-snapshot.ts';
import { listNames, storeKey } from '../storage/repository-walk.ts';
import type { StoreReader } from '../eviction/inventory.ts';

/** A page of a listing: `next` is the cursor of the following page (null on the last). */
export interface Page<T> {
  total: number;
  items: T[];
  next: string | null;
}

export interface RepositoryRow {
  name: string;
  tags: number;
  manifests: number;
}

export interface TagRow {
  tag: string;
  digest?: string;
  manifest?: Pick<ManifestSummary, 'kind' | 'mediaType' | 'size'> & { platforms: { os?: string; architecture?: string; variant?: string; size: number; stored: boolean }[] };
  /** The tag file's own expiry (a tag unused past the TTL goes even while its manifest stays). */
  tagLifetime: Lifetime;
  /** The manifest's: the latest access of it, its tags and its index. */
  lifetime?: Lifetime;
}

export interface ManifestView {
  digest: string;
  tags: string[];
  summary: ManifestSummary;
  lifetime: Lifetime;
  /** An index's children, each with its own lifetime (at least the index's). */
  platforms: { digest: string; lifetime: Lifetime; linked: boolean }[];
}

/**
 * Reads the store for the browser: registries → repositories → tags → manifests. Every
 * listing comes in pages; a page reads only its own rows' files. The repository list comes
 * from a short-lived walk of names (RepositoryIndex), a repository's tags from one read of
 * that repository (RepositorySnapshots). Nothing here runs on the blob path.
 */
export class StoreBrowser {
  private readonly store: StoreReader;
  private readonly remotes: Remotes;
  private readonly rules: LifetimeRules;
  readonly index: RepositoryIndex;
  private readonly snapshots: RepositorySnapshots;

  constructor(options: { store: StoreReader; remotes: Remotes; rules: LifetimeRules }) {
    this.store = options.store;
    this.remotes = options.remotes;
    this.rules = options.rules;
    this.index = new RepositoryIndex(options.store);
    this.snapshots = new RepositorySnapshots(options.store);
  }

  /** The remote a store key belongs to, and the name in it. */
  private owner(key: string): { remote?: Remote; name: string } {
    const { namespace, name } = splitRepositoryKey(key);
    return namespace === undefined ? { remote: this.remotes.default, name } : { remote: this.remotes.forNamespace(namespace), name };
  }

  /** Names of one registry's repositories, sorted. */
  private async namesOf(remote: Remote): Promise<string[]> {
    const names: string[] = [];
    for (const key of await this.index.all()) {
      const owner = this.owner(key);
      if (owner.remote === remote) names.push(owner.name);
    }
    return remote.isDefault ? names.sort() : names;
  }

  async registries(): Promise<{ namespace: string; default: boolean; url: string; repositories: number }[]> {
    const counts = new Map<Remote, number>();
    for (const key of await this.index.all()) {
      const { remote } = this.owner(key);
      if (remote) counts.set(remote, (counts.get(remote) ?? 0) + 1);
    }
    return this.remotes.all.map((remote) => ({ namespace: remote.namespace, default: remote.isDefault, url: remote.upstream.url.origin, repositories: counts.get(remote) ?? 0 }));
  }

  /** One page of a registry's repositories, those whose name contains `q` when given. */
  async repositories(remote: Remote, options: { q?: string; cursor?: string; limit: number }): Promise<Page<RepositoryRow>> {
    const q = options.q?.toLowerCase();
    const names = (await this.namesOf(remote)).filter((name) => !q || name.includes(q));
    const page = cut(names, options.cursor, options.limit);
    const items: RepositoryRow[] = [];
    await mapLimited(page.items, async (name) => {
      const { driver, paths } = this.store;
      const prefix = storeKey(paths, paths.repository(repositoryKey(remote, name)));
      const tags = (await listNames(driver, `${prefix}/_tags`)).length;
      let manifests = 0;
      for (const algorithm of await listNames(driver, `${prefix}/_manifests`)) manifests += (await listNames(driver, `${prefix}/_manifests/${algorithm}`)).length;
      items.push({ name, tags, manifests });
    });
    items.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { ...page, items };
  }

  /** One page of a repository's tags with what they point at; undefined for a repository the store does not hold. */
  async tags(remote: Remote, name: string, options: { cursor?: string; limit: number }): Promise<(Page<TagRow> & { ttlMs: number; untagged: number }) | undefined> {
    const key = repositoryKey(remote, name);
    const snapshot = await this.snapshots.get(key);
    if (!snapshot) return undefined;
    const page = cut([...snapshot.tags.keys()].sort(), options.cursor, options.limit);
    const summaries = new Map<string, ManifestSummary | undefined>();
    const digests = [...new Set(page.items.map((tag) => snapshot.tags.get(tag)?.digest).filter((d): d is string => Boolean(d)))];
    await mapLimited(digests, async (digest) => void summaries.set(digest, await summarizeManifest(this.store, digest)));
    const items = page.items.map((tag): TagRow => {
      const digest = snapshot.tags.get(tag)?.digest;
      const summary = digest ? summaries.get(digest) : undefined;
      return {
        tag,
        ...(digest ? { digest } : {}),
        ...(summary
          ? {
              manifest: {
                kind: summary.kind,
                mediaType: summary.mediaType,
                size: summary.size,
                platforms: (summary.platforms ?? []).map((p) => ({ ...p.platform, size: p.size, stored: p.stored })),
              },
            }
          : {}),
        tagLifetime: tagLifetime(snapshot, tag, this.rules),
        ...(digest && snapshot.links.has(digest) ? { lifetime: manifestLifetime(snapshot, digest, this.rules) } : {}),
      };
    });
    const tagged = new Set([...snapshot.tags.values()].map((tag) => tag.digest));
    const children = new Set(snapshot.parents.keys());
    const untagged = [...snapshot.links.keys()].filter((digest) => !tagged.has(digest) && !children.has(digest)).length;
    return { ...page, items, ttlMs: this.rules.ttlFor(key), untagged };
  }

  /** A manifest of a repository; undefined when the repository does not link it (or its bytes are gone). */
  async manifest(remote: Remote, name: string, digest: string): Promise<ManifestView | undefined> {
    const key = repositoryKey(remote, name);
    const snapshot = await this.snapshots.get(key);
    if (!snapshot?.links.has(digest)) return undefined;
    const summary = await summarizeManifest(this.store, digest, { detail: true });
    if (!summary) return undefined;
    const tags = [...snapshot.tags].filter(([, tag]) => tag.digest === digest).map(([tag]) => tag).sort();
    return {
      digest,
      tags,
      summary,
      lifetime: manifestLifetime(snapshot, digest, this.rules),
      platforms: (summary.platforms ?? []).map((child) => ({
        digest: child.digest,
        linked: snapshot.links.has(child.digest),
        lifetime: manifestLifetime(snapshot, child.digest, this.rules),
      })),
    };
  }
}

/** The page after `cursor` (the last item of the previous page) from a sorted list. */
function cut(sorted: string[], cursor: string | undefined, limit: number): Page<string> {
  let start = 0;
  if (cursor !== undefined) {
    // Binary search: the first item after the cursor, whether or not the cursor is still there.
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (sorted[mid] <= cursor) low = mid + 1;
      else high = mid;
    }
    start = low;
  }
  const items = sorted.slice(start, start + limit);
  const more = start + limit < sorted.length;
  return { total: sorted.length, items, next: more ? items[items.length - 1] : null };
}
