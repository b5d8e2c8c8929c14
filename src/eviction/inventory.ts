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
 * Every stored blob's size and last use, compact: a digest is kept as its bytes (32 for a
 * sha256) in one typed array, found through an open-addressing table of slots, with sizes and
 * times in typed arrays beside it; no string and no Map entry per blob. At 150 000 blobs that is
 * about 9 MiB, where a Map of hex strings took 20 and a Map of objects 40 (heap measured with
 * spec/bench/scale-memory.ts): the blob index is most of what an eviction pass holds, and what
 * a pass holds is what a serving mirror's RSS grows by (bench -- scale).
 */
export class BlobIndex {
  private readonly byAlgorithm = new Map<string, DigestTable>();
  private sizes: Float64Array<ArrayBuffer> = new Float64Array(1024);
  private lastUses: Float64Array<ArrayBuffer> = new Float64Array(1024);
  private filled = 0;

  get count(): number {
    return this.filled;
  }

  add(algorithm: string, hex: string, size: number, lastUseMs: number): void {
    let table = this.byAlgorithm.get(algorithm);
    if (!table) this.byAlgorithm.set(algorithm, (table = new DigestTable(HEX_LENGTH[algorithm] ?? 0)));
    const existing = table.get(hex);
    const slot = existing ?? this.filled++;
    if (slot >= this.sizes.length) {
      this.sizes = grow(this.sizes);
      this.lastUses = grow(this.lastUses);
    }
    this.sizes[slot] = size;
    this.lastUses[slot] = lastUseMs;
    if (existing === undefined) table.set(hex, slot);
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
    for (const [algorithm, table] of this.byAlgorithm) {
      for (const [hex, slot] of table.entries()) {
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

/** The hex length of the algorithms a store keeps (src/registry/digest.ts). */
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

/**
 * The digests of one algorithm: each as its bytes at `entry * width` in one array, found by
 * open addressing on its first bytes (digests are uniformly spread). A name that is not lowercase
 * hex of the algorithm's length (none the store writes; tests use labels) goes to a small Map.
 */
class DigestTable {
  private readonly width: number;
  private bytes: Buffer;
  private slots: Int32Array<ArrayBuffer>;
  /** Entry + 1 per bucket, 0 when empty; a power of two, at most half full. */
  private buckets: Int32Array<ArrayBuffer>;
  private entriesFilled = 0;
  private readonly other = new Map<string, number>();
  private readonly scratch: Buffer;

  constructor(hexLength: number) {
    this.width = hexLength / 2;
    this.bytes = Buffer.alloc(this.width * 1024);
    this.slots = new Int32Array(1024);
    this.buckets = new Int32Array(2048);
    this.scratch = Buffer.alloc(this.width);
  }

  get(hex: string): number | undefined {
    if (!this.decode(hex)) return this.other.get(hex);
    const entry = this.buckets[this.bucketOf()] - 1;
    return entry < 0 ? undefined : this.slots[entry];
  }

  /** Adds a digest not in the table (get answered undefined). */
  set(hex: string, slot: number): void {
    if (!this.decode(hex)) {
      this.other.set(hex, slot);
      return;
    }
    if (this.entriesFilled === this.slots.length) this.grow();
    const entry = this.entriesFilled++;
    this.scratch.copy(this.bytes, entry * this.width);
    this.slots[entry] = slot;
    this.buckets[this.bucketOf()] = entry + 1;
  }

  *entries(): Generator<[string, number]> {
    for (let entry = 0; entry < this.entriesFilled; entry++) yield [this.bytes.toString('hex', entry * this.width, (entry + 1) * this.width), this.slots[entry]];
    yield* this.other;
  }

  /** Puts `hex` in the scratch buffer as bytes; false when it is not hex of this table's width. */
  private decode(hex: string): boolean {
    return this.width > 0 && hex.length === 2 * this.width && HEX.test(hex) && this.scratch.write(hex, 'hex') === this.width;
  }

  /** The bucket holding the scratch digest, or the empty one where it would go. */
  private bucketOf(): number {
    const mask = this.buckets.length - 1;
    let bucket = (Math.imul(this.scratch.readUInt32LE(0), 0x9e3779b1) >>> 0) & mask;
    for (;;) {
      const entry = this.buckets[bucket] - 1;
      if (entry < 0 || this.scratch.compare(this.bytes, entry * this.width, (entry + 1) * this.width) === 0) return bucket;
      bucket = (bucket + 1) & mask;
    }
  }

  private grow(): void {
    const bytes = Buffer.alloc(this.bytes.length * 2);
    this.bytes.copy(bytes);
    this.bytes = bytes;
    const slots = new Int32Array(this.slots.length * 2);
    slots.set(this.slots);
    this.slots = slots;
    // Rehash into a table twice as large.
    this.buckets = new Int32Array(this.buckets.length * 2);
    const mask = this.buckets.length - 1;
    for (let entry = 0; entry < this.entriesFilled; entry++) {
      let bucket = (Math.imul(this.bytes.readUInt32LE(entry * this.width), 0x9e3779b1) >>> 0) & mask;
      while (this.buckets[bucket] !== 0) bucket = (bucket + 1) & mask;
      this.buckets[bucket] = entry + 1;
    }
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
