import type { StorageDriver } from '../storage/driver/storage-driver.ts';
import type { StorePaths } from '../storage/paths.ts';
import { storeKey, walkRepositories } from '../storage/repository-walk.ts';
import { mapLimited } from '../util/map-limited.ts';
import { Yielder } from '../util/yielder.ts';
import { accessItem, LOOKUP_BATCH, lastUsesOf, type AccessClock } from './access-clock.ts';

/**
 * A stored blob as a sweep sees it: `lastUseMs` is the later of its last recorded use (the
 * access clock) and when it was stored (the object's `modifiedMs`), see access-clock.ts.
 */
export interface StoredBlob {
  size: number;
  lastUseMs: number;
}

/** One step of BlobIndex.entries(): reused from step to step (150 000 blobs make no garbage). */
export interface BlobCursor extends StoredBlob {
  digest: string;
}

/**
 * Every stored blob's size and last use, compact: keyed by the hex name the directory listing
 * gave (no "sha256:" string built per blob), sizes and times in typed arrays. At 150 000 blobs
 * this is about 17 MiB where a Map of objects took about 40 (measured with
 * spec/bench/scale-memory.ts), and an eviction pass inside a serving mirror stays small.
 */
export class BlobIndex {
  private readonly byAlgorithm = new Map<string, Map<string, number>>();
  private sizes: Float64Array<ArrayBuffer> = new Float64Array(1024);
  private lastUses: Float64Array<ArrayBuffer> = new Float64Array(1024);
  private filled = 0;

  get count(): number {
    return this.filled;
  }

  add(algorithm: string, hex: string, size: number, lastUseMs: number): void {
    let slots = this.byAlgorithm.get(algorithm);
    if (!slots) this.byAlgorithm.set(algorithm, (slots = new Map<string, number>()));
    const existing = slots.get(hex);
    const slot = existing ?? this.filled++;
    if (slot >= this.sizes.length) {
      this.sizes = grow(this.sizes);
      this.lastUses = grow(this.lastUses);
    }
    this.sizes[slot] = size;
    this.lastUses[slot] = lastUseMs;
    if (existing === undefined) slots.set(hex, slot);
  }

  size(digest: string): number | undefined {
    const slot = this.slot(digest);
    return slot === undefined ? undefined : this.sizes[slot];
  }

  lastUse(digest: string): number | undefined {
    const slot = this.slot(digest);
    return slot === undefined ? undefined : this.lastUses[slot];
  }

  /** A use recorded later than what the index holds moves its last use forward (never back). */
  used(digest: string, atMs: number): void {
    const slot = this.slot(digest);
    if (slot !== undefined && atMs > this.lastUses[slot]) this.lastUses[slot] = atMs;
  }

  /** Every blob; the cursor is the same object at every step (copy what must outlive it). */
  *entries(): Generator<BlobCursor> {
    const cursor: BlobCursor = { digest: '', size: 0, lastUseMs: 0 };
    for (const [algorithm, slots] of this.byAlgorithm) {
      for (const [hex, slot] of slots) {
        cursor.digest = `${algorithm}:${hex}`;
        cursor.size = this.sizes[slot];
        cursor.lastUseMs = this.lastUses[slot];
        yield cursor;
      }
    }
  }

  private slot(digest: string): number | undefined {
    const colon = digest.indexOf(':');
    return this.byAlgorithm.get(digest.slice(0, colon))?.get(digest.slice(colon + 1));
  }
}

function grow(array: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const bigger = new Float64Array(array.length * 2);
  bigger.set(array);
  return bigger;
}

/** A repository's link to a manifest (the manifest's bytes are a blob). */
export interface StoredLink {
  repository: string;
  digest: string;
  /** The later of the link's last recorded use and its write. */
  lastUseMs: number;
}

export interface StoredTag {
  repository: string;
  tag: string;
  /** What the tag points at; undefined when the object does not hold a digest. */
  digest: string | undefined;
  /** The later of the tag's last recorded use and its write (a tag check that moved it). */
  lastUseMs: number;
}

/**
 * Everything a sweep decides on, read in one walk of the store. A repository's bookkeeping
 * (`_layers` links, `_access`) is not in it: the sweep reads that one repository at a time
 * when it removes what went stale (see sweeper.ts), so 90 000 layer links are never held.
 */
export interface Inventory {
  blobs: BlobIndex;
  links: StoredLink[];
  tags: StoredTag[];
}

/** What a walk reads the store through. */
export interface StoreReader {
  driver: StorageDriver;
  paths: StorePaths;
  clock: AccessClock;
}

/** The longest tag object read: a digest and a newline (a longer one holds no digest). */
const MAX_TAG_BYTES = 256;
const ALGORITHM = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$/;
const HEX = /^[a-f0-9]+$/;

/**
 * Walks the store (layout in src/storage/paths.ts) through its driver, then asks the access
 * clock for every item's last use. Cost grows with the store, which is why only a sweep does
 * it, never start-up. Objects that vanish during the walk are skipped.
 */
export async function readInventory(store: StoreReader, turn = new Yielder()): Promise<Inventory> {
  const [blobs, repositories] = await Promise.all([readBlobs(store, turn), readAllRepositories(store)]);
  await applyClock(store.clock, blobs, repositories, turn);
  return { blobs, ...repositories };
}

/** The default remote's repositories and every other registry's (keys as in paths.ts repositoryKey). */
async function readAllRepositories(store: StoreReader): Promise<{ links: StoredLink[]; tags: StoredTag[] }> {
  const all = { links: [] as StoredLink[], tags: [] as StoredTag[] };
  await walkRepositories(store.driver, store.paths, async (prefix, name, entries) => {
    const found = await readRepository(store.driver, prefix, name, entries);
    for (const link of found.links) all.links.push(link);
    for (const tag of found.tags) all.tags.push(tag);
  });
  return all;
}

/**
 * Every blob's size and write time from one walk of `blobs/` (`blobs/<algorithm>/<xx>/<hex>`);
 * the walk yields to the event loop as it goes, and so does this loop (Yielder), so a mirror
 * running the pass is never held for long.
 */
async function readBlobs(store: StoreReader, turn: Yielder): Promise<BlobIndex> {
  const blobs = new BlobIndex();
  const prefix = storeKey(store.paths, store.paths.blobsDir());
  for await (const object of store.driver.walk(prefix)) {
    const parts = object.key.slice(prefix.length + 1).split('/');
    if (parts.length === 3 && ALGORITHM.test(parts[0]) && HEX.test(parts[2]) && parts[2].startsWith(parts[1]) && parts[1].length === 2) {
      blobs.add(parts[0], parts[2], object.size, object.modifiedMs);
    }
    if (turn.due()) await turn.pause();
  }
  return blobs;
}

/** One repository's manifest links and tags. */
export async function readRepository(driver: StorageDriver, prefix: string, name: string, entries: string[]): Promise<{ links: StoredLink[]; tags: StoredTag[] }> {
  const links: StoredLink[] = [];
  const tags: StoredTag[] = [];
  if (entries.includes('_manifests')) {
    const root = `${prefix}/_manifests/`;
    for await (const object of driver.walk(root)) {
      const [algorithm, hex, ...more] = object.key.slice(root.length).split('/');
      if (more.length === 0 && hex !== undefined && ALGORITHM.test(algorithm) && HEX.test(hex)) links.push({ repository: name, digest: `${algorithm}:${hex}`, lastUseMs: object.modifiedMs });
    }
  }
  if (entries.includes('_tags')) {
    const root = `${prefix}/_tags/`;
    const found: { tag: string; key: string; modifiedMs: number }[] = [];
    for await (const object of driver.walk(root)) {
      const tag = object.key.slice(root.length);
      if (!tag.includes('/')) found.push({ tag, key: object.key, modifiedMs: object.modifiedMs });
    }
    await mapLimited(found, async ({ tag, key, modifiedMs }) => {
      const content = (await driver.getContent(key, MAX_TAG_BYTES).catch(() => undefined))?.toString('utf8').trim() ?? '';
      tags.push({ repository: name, tag, digest: /^[a-z0-9]+:[a-f0-9]+$/.test(content) ? content : undefined, lastUseMs: modifiedMs });
    });
  }
  return { links, tags };
}

/** Moves every item's last use to its clock record where that is later than the object's write. */
async function applyClock(clock: AccessClock, blobs: BlobIndex, repositories: { links: StoredLink[]; tags: StoredTag[] }, turn: Yielder): Promise<void> {
  const pause = async () => {
    if (turn.due()) await turn.pause();
  };
  // Blobs in the index's own order, a batch of names at a time (no array of 150 000 names).
  let batch: string[] = [];
  const lookUp = async () => {
    const digests = batch;
    batch = [];
    const uses = await clock.lastUses(digests.map(accessItem.blob));
    for (let i = 0; i < digests.length; i++) {
      const use = uses[i];
      if (use !== undefined) blobs.used(digests[i], use);
    }
    await pause();
  };
  for (const blob of blobs.entries()) {
    batch.push(blob.digest);
    if (batch.length === LOOKUP_BATCH) await lookUp();
  }
  if (batch.length > 0) await lookUp();
  const { links, tags } = repositories;
  await lastUsesOf(clock, links.length, (i) => accessItem.manifest(links[i].repository, links[i].digest), (i, ms) => {
    links[i].lastUseMs = Math.max(links[i].lastUseMs, ms);
  }, pause);
  await lastUsesOf(clock, tags.length, (i) => accessItem.tag(tags[i].repository, tags[i].tag), (i, ms) => {
    tags[i].lastUseMs = Math.max(tags[i].lastUseMs, ms);
  }, pause);
}
