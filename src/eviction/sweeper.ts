import { monitorEventLoopDelay } from 'node:perf_hooks';
import { evictedBytes, evictions } from '../metrics/metrics.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import { parseDigest } from '../registry/digest.ts';
import { splitRepositoryKey, StoreKeys } from '../storage/paths.ts';
import { KeepRules } from './keep.ts';
import { Yielder } from '../util/yielder.ts';
import { readInventory, type Inventory, type StoreReader } from './inventory.ts';
import { listNames, walkRepositories } from '../storage/repository-walk.ts';
import { accessItem, LOOKUP_BATCH } from './access-clock.ts';
import type { PassLease, PassLock } from './pass-lock.ts';
import { mapLimited } from '../util/map-limited.ts';
import { graceHeldBack, pinsOf, planEviction, type EvictionPlan, type GraceHeldBack, type PlannedBlob, type PlannedLink, type PlannedTag } from './plan.ts';
import { manifestReferences, type ManifestReferences } from '../registry/manifest-references.ts';

/** What a running mirror tells a sweep, and learns from it. */
export interface SweepHooks {
  /** A blob a fill is writing right now, here or (a fill lease in Redis) on another instance: never deleted under it. */
  isBusy?(digest: string): boolean | Promise<boolean>;
  /** Forget in-memory knowledge of what was deleted (descriptor cache, manifest caches). */
  manifestRemoved?(repository: string, digest: string): void;
  blobRemoved?(digest: string, size: number): Promise<void> | void;
}

export interface SweepSettings {
  ttlMs: number;
  /** Per registry: proxy.remotes[].ttl for its repositories (keys as paths.ts's repositoryKey). */
  ttlFor?: (repository: string) => number;
  graceMs: number;
  maxSize: number;
  highWatermark: number;
  lowWatermark: number;
  /** storage.eviction.keep */
  keep?: KeepRules;
}

export interface SweepOptions extends SweepSettings {
  /** The driver the store is read and deleted through, its layout, and the access clock. */
  store: StoreReader;
  logger: Logger;
  /**
   * One pass at a time (the fleet's lock in Redis, see pass-lock.ts): a pass that deletes takes
   * it first (PassHeldElsewhere when another holds it) and checks it before each deletion. A
   * dry run deletes nothing and takes none.
   */
  lock?: PassLock;
  /**
   * The clock the pass is planned by (default: now): TTL, recency and the grace period all count
   * from it, so a dry run with a later `now` shows what a pass at that moment would take. A pass
   * that deletes still keeps what was written or used within the grace period of the wall
   * clock: a moved clock never takes a blob a client is pulling now.
   */
  now?: number;
  dryRun?: boolean;
  hooks?: SweepHooks;
  /**
   * Compute what the grace period holds back (a second plan; default true). A scheduled pass
   * skips it: nobody reads it there, and at 150 000 blobs it is a second plan's memory.
   */
  graceReport?: boolean;
  /**
   * Share the event loop with requests (a pass inside a serving mirror): the pass rests 1 ms
   * after each 1 ms of work (see Yielder). `gc` runs alone and does not rest.
   */
  sharesLoop?: boolean;
  /**
   * After the deletions, remove what crashed writers left in the store this long ago or more
   * (driver.cleanup: incomplete multipart uploads on S3); not on a dry run.
   */
  cleanupOlderThanMs?: number;
  /** Told of each item as it is removed (planned, on a dry run), in order: `gc` prints as it goes. */
  onItem?: (item: SweptItem) => void;
}

export type SweptItem = { kind: 'tag'; tag: PlannedTag } | { kind: 'manifest'; link: PlannedLink } | { kind: 'blob'; blob: PlannedBlob };

export interface SweepResult extends EvictionPlan {
  dryRun: boolean;
  /** Items the plan named that were used or rewritten meanwhile, and so kept. */
  kept: number;
  /** Bytes of blobs actually deleted (planned bytes on a dry run). */
  freed: number;
  /** `_layers` links, `_access` files and `_referrers` lists removed with what they described (0 on a dry run). */
  records: number;
  /** What crashed writers left that the driver removed (cleanupOlderThanMs; 0 on a dry run). */
  cleaned: number;
  durationMs: number;
  /** What the grace period kept from this pass (storage.eviction.grace), and until when (unless graceReport was false). */
  graceHeld?: GraceHeldBack;
  graceMs: number;
  /** The event loop's longest delay while the pass ran (ms): what a request waited at worst. */
  maxEventLoopDelayMs: number;
}

/** How old an incomplete upload must be before a pass removes it: no fill takes a day. */
export const STALE_UPLOAD_MS = 24 * 3_600_000;

export function sweepSettings(config: Config): Required<SweepSettings> {
  const eviction = config.storage.eviction;
  const remoteTtl = new Map(config.proxy.remotes.map((remote) => [remote.namespace, remote.ttl]));
  return {
    ttlMs: config.proxy.ttl,
    ttlFor: (repository) => {
      const { namespace } = splitRepositoryKey(repository);
      return (namespace === undefined ? undefined : remoteTtl.get(namespace)) ?? config.proxy.ttl;
    },
    graceMs: eviction.grace,
    maxSize: eviction.maxsize,
    highWatermark: eviction.highwatermark,
    lowWatermark: eviction.lowwatermark,
    keep: new KeepRules(eviction.keep, config.proxy.namespace),
  };
}

/**
 * One eviction pass: walk the store, plan (see planEviction), then delete tags, manifest
 * links, and last the blobs nothing references any more. Before each deletion the item is
 * looked at again: one used (the access clock) or rewritten (the object) since the walk stays,
 * and so do the blobs of a manifest that stays. A reader that already opened a deleted blob
 * keeps reading it (an open descriptor outlives the unlink); a later request fetches it from
 * upstream again.
 */
export async function sweep(options: SweepOptions): Promise<SweepResult> {
  const lease = options.dryRun || !options.lock ? undefined : await options.lock.acquire();
  // A pass shares the event loop with the requests it must not hold up: it says how well it did.
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  try {
    const result = await sweepMeasured(options, lease);
    return { ...result, maxEventLoopDelayMs: delay.max / 1e6 };
  } finally {
    delay.disable();
    await lease?.release();
  }
}

/** Thrown when the fleet's lock was lost mid-pass: what was deleted stays deleted, the rest waits for the next pass. */
export class PassLeaseLost extends Error {
  constructor() {
    super("the fleet's eviction lock was lost during the pass (another pass may run now); it stopped deleting");
    this.name = 'PassLeaseLost';
  }
}

async function sweepMeasured(options: SweepOptions, lease: PassLease | undefined): Promise<Omit<SweepResult, 'maxEventLoopDelayMs'>> {
  // Wall time for what is compared with the access clock's records and the objects' write times; the duration on the monotonic clock.
  const started = Date.now();
  const startedMono = performance.now();
  const now = options.now ?? started;
  const protectedSince = (options.dryRun ? now : Math.min(now, started)) - options.graceMs;
  const { plan, graceHeld, links: storedLinks, tags: storedTags, references } = await planPass(options, started, protectedSince);
  const grace = { graceHeld, graceMs: options.graceMs };
  const onItem = options.onItem ?? (() => {});
  if (options.dryRun) {
    for (const tag of plan.tags) onItem({ kind: 'tag', tag });
    for (const link of plan.links) onItem({ kind: 'manifest', link });
    for (const blob of plan.blobs) onItem({ kind: 'blob', blob });
    return { ...plan, ...grace, dryRun: true, kept: 0, freed: plan.sizeBefore - plan.sizeAfter, records: 0, cleaned: 0, durationMs: Math.round(performance.now() - startedMono) };
  }
  const { store, hooks = {} } = options;
  const { driver, clock } = store;
  const fenced = async () => {
    if (lease && !(await lease.stillHeld())) throw new PassLeaseLost();
  };
  /**
   * Deletes an object unless written since the grace period began (or gone already). Keys are
   * drawn by StoreKeys directly: through StorePaths and back (join, relative, split) each of
   * 100 000 deletions made half a dozen strings more for the collector.
   */
  const removeUntouched = async (key: string): Promise<boolean> => {
    const info = await driver.stat(key);
    if (!info || info.modifiedMs >= protectedSince) return false;
    await fenced();
    return driver.delete(key);
  };
  /**
   * Runs a phase over `items` a batch (LOOKUP_BATCH) at a time: the clock is asked about the
   * batch, then the batch is deleted, so a use recorded (by any instance) up to a moment before
   * an item's deletion keeps it, as the mtime checked just before an unlink did. The records of
   * what the batch removed go with it (a record left behind would be harmless, not useful): a
   * batch at a time, as 100 000 records forgotten at once held the event loop for a second
   * (bench -- scale) and their names as many megabytes.
   */
  const phase = async <T>(items: T[], itemOf: (item: T) => string, remove: (item: T, used: boolean) => Promise<boolean>): Promise<void> => {
    for (let start = 0; start < items.length; start += LOOKUP_BATCH) {
      const batch = items.slice(start, start + LOOKUP_BATCH);
      const names = batch.map(itemOf);
      const uses = await clock.lastUses(names);
      const gone: string[] = [];
      await mapLimited([...batch.keys()], async (i) => {
        if (await remove(batch[i], (uses[i] ?? 0) >= protectedSince)) gone.push(names[i]);
      });
      if (gone.length > 0) await clock.forget(gone);
    }
  };
  // Tags, then manifest links, then blobs: each phase in parallel, the phases in this order.
  let kept = 0;
  const tags: EvictionPlan['tags'] = [];
  await phase(plan.tags, (tag) => accessItem.tag(tag.repository, tag.tag), async (tag, used) => {
    if (used || !(await removeUntouched(StoreKeys.tag(tag.repository, tag.tag)))) {
      kept++;
      return false;
    }
    tags.push(tag);
    onItem({ kind: 'tag', tag });
    return true;
  });
  const links: PlannedLink[] = [];
  const stillPinned = new Set<string>();
  await phase(plan.links, (link) => accessItem.manifest(link.repository, link.digest), async (link, used) => {
    if (used || !(await removeUntouched(StoreKeys.manifestLink(link.repository, parseDigest(link.digest))))) {
      kept++;
      for (const pin of link.pins) stillPinned.add(pin);
      return false;
    }
    links.push(link);
    onItem({ kind: 'manifest', link });
    hooks.manifestRemoved?.(link.repository, link.digest);
    return true;
  });
  const blobs: EvictionPlan['blobs'] = [];
  let freed = 0;
  await phase(plan.blobs, (blob) => accessItem.blob(blob.digest), async (blob, used) => {
    if (used || stillPinned.has(blob.digest) || (await hooks.isBusy?.(blob.digest)) || !(await removeUntouched(StoreKeys.blob(parseDigest(blob.digest))))) {
      kept++;
      return false;
    }
    blobs.push(blob);
    onItem({ kind: 'blob', blob });
    freed += blob.size;
    await hooks.blobRemoved?.(blob.digest, blob.size);
    return true;
  });
  const records = await removeStaleRecords(store, { links: storedLinks, tags: storedTags }, references, { tags, links }, removeUntouched);
  const cleaned = options.cleanupOlderThanMs === undefined ? 0 : await driver.cleanup(options.cleanupOlderThanMs);
  evictions.labels('tag').inc(tags.length);
  evictions.labels('manifest').inc(links.length);
  evictions.labels('blob').inc(blobs.length);
  evictedBytes.inc(freed);
  return { ...plan, ...grace, tags, links, blobs, sizeAfter: plan.sizeBefore - freed, dryRun: false, kept, freed, records, cleaned, durationMs: Math.round(performance.now() - startedMono) };
}

/**
 * Reads the store and plans the pass. The blob index (the largest part of the inventory) is
 * not returned: it is garbage before the first deletion.
 */
async function planPass(options: SweepOptions, started: number, protectedSince: number) {
  const turn = new Yielder({ restMs: options.sharesLoop ? 1 : 0 });
  const inventory = await readInventory(options.store, turn);
  const references = await readReferences(options.store, inventory);
  const policy = {
    now: options.now ?? started,
    ttlMs: options.ttlMs,
    ttlFor: options.ttlFor,
    protectedSince,
    maxSize: options.maxSize,
    highWatermark: options.highWatermark,
    lowWatermark: options.lowWatermark,
    keep: options.keep,
  };
  const plan = await planEviction(inventory, references, policy, turn);
  const graceHeld = options.graceReport === false ? undefined : await graceHeldBack(inventory, references, policy, options.graceMs, plan, turn);
  return { plan, graceHeld, links: inventory.links, tags: inventory.tags, references };
}

/**
 * A repository's bookkeeping goes with what it describes, or it would grow without bound: a
 * `_layers` link once no manifest the repository still links references the blob, its
 * `_access` verdict once the repository holds no manifest and no tag, a `_referrers` list once
 * the manifest it is about (its subject) is no longer linked, as a tag goes with its manifest.
 * Each is only ever a shortcut or a stand-in (a missing one costs an upstream check; a referrers
 * list is served only while upstream is down, and so only with its image), and recent ones stay
 * for the grace period: a link is written just before the blob it permits is fetched.
 */
async function removeStaleRecords(
  store: StoreReader,
  inventory: Pick<Inventory, 'links' | 'tags'>,
  references: Map<string, ManifestReferences>,
  removed: { tags: EvictionPlan['tags']; links: PlannedLink[] },
  removeUntouched: (key: string) => Promise<boolean>,
): Promise<number> {
  const gone = new Set(removed.links.map((link) => `${link.repository}@${link.digest}`));
  const goneTags = new Set(removed.tags.map((tag) => `${tag.repository}:${tag.tag}`));
  // What each repository still links, and which repositories still hold a tag.
  const remaining = new Map<string, string[]>();
  for (const link of inventory.links) {
    if (gone.has(`${link.repository}@${link.digest}`)) continue;
    let digests = remaining.get(link.repository);
    if (!digests) remaining.set(link.repository, (digests = []));
    digests.push(link.digest);
  }
  const tagged = new Set<string>();
  for (const tag of inventory.tags) if (!goneTags.has(`${tag.repository}:${tag.tag}`)) tagged.add(tag.repository);
  // One repository at a time: its `_layers` listing and the blobs its manifests hold, then the next.
  let count = 0;
  const remove = async (key: string) => {
    if (await removeUntouched(key)) count++;
  };
  /** Of the records `<dir>/<algorithm>/<hex>`, those whose digest is not held. Names only (90 000 links are listed, not stat'ed); the stale ones are looked at as they go. */
  const removeUnheld = async (dir: string, holds: (digest: string) => boolean) => {
    for (const algorithm of await listNames(store.driver, dir)) {
      const stale = (await listNames(store.driver, `${dir}/${algorithm}`)).filter((hex) => !holds(`${algorithm}:${hex}`));
      await mapLimited(stale, (hex) => remove(`${dir}/${algorithm}/${hex}`));
    }
  };
  await walkRepositories(store.driver, store.paths, async (prefix, name, entries) => {
    const links = remaining.get(name) ?? [];
    if (entries.includes('_access') && links.length === 0 && !tagged.has(name)) await remove(`${prefix}/_access`);
    if (entries.includes('_referrers')) {
      const linked = new Set(links);
      await removeUnheld(`${prefix}/_referrers`, (digest) => linked.has(digest));
    }
    if (entries.includes('_layers')) {
      const held = new Set<string>();
      for (const digest of links) for (const pin of pinsOf(digest, references)) held.add(pin);
      await removeUnheld(`${prefix}/_layers`, (digest) => held.has(digest));
    }
  });
  return count;
}

/** Parses every linked manifest (and the children of indexes) once, whatever the number of links. */
async function readReferences(store: StoreReader, inventory: Inventory): Promise<Map<string, ManifestReferences>> {
  const references = new Map<string, ManifestReferences>();
  let pending = [...new Set(inventory.links.map((link) => link.digest))];
  while (pending.length > 0) {
    const children: string[] = [];
    await mapLimited(pending, async (digest) => {
      if (references.has(digest)) return;
      const size = inventory.blobs.size(digest);
      if (size === undefined || size > MAX_MANIFEST_BYTES) return;
      const bytes = await store.driver.getContent(StoreKeys.blob(parseDigest(digest)), MAX_MANIFEST_BYTES);
      if (!bytes) return;
      const refs = manifestReferences(bytes);
      references.set(digest, refs);
      children.push(...refs.manifests);
    });
    pending = [...new Set(children)].filter((digest) => !references.has(digest));
  }
  return references;
}
