import type { Inventory, StoredLink, StoredTag } from './inventory.ts';
import type { ManifestReferences } from '../registry/manifest-references.ts';
import type { KeepRules } from './keep.ts';
import { parseAttachmentTag, type AttachmentTag } from '../registry/attachment-tags.ts';
import { Yielder } from '../util/yielder.ts';

export interface EvictionPolicy {
  /** The sweep's clock for TTL and recency (ms since the epoch); `gc --now` moves it. */
  now: number;
  /** proxy.ttl in ms from last access; 0 disables expiry. */
  ttlMs: number;
  /** A repository's own TTL when its registry has one (proxy.remotes[].ttl); ttlMs otherwise. */
  ttlFor?: (repository: string) => number;
  /** Wall-clock time (ms) after which anything written or used is protected (grace period). */
  protectedSince: number;
  /** Size cap in bytes (0: none) and its watermarks in percent. */
  maxSize: number;
  highWatermark: number;
  lowWatermark: number;
  /** storage.eviction.keep: tags and manifests no pass evicts. */
  keep?: KeepRules;
}

/** A watermark in bytes: `percent` of the size cap, whole bytes (the plan, the gauges and the status page use this one). */
export function watermarkBytes(maxSize: number, percent: number): number {
  return Math.floor((maxSize * percent) / 100);
}

/** Why a manifest link goes: its TTL, the size cap, or the manifest it is attached to went. */
export type LinkReason = 'ttl' | 'size' | 'subject evicted';

export interface PlannedLink extends StoredLink {
  lastAccess: number;
  reason: LinkReason;
  /** Blobs this link kept alive (its manifest, children, config, layers). */
  pins: string[];
}

export interface PlannedTag extends StoredTag {
  reason: 'ttl' | 'manifest evicted' | 'manifest missing' | 'subject evicted';
}

export interface PlannedBlob {
  digest: string;
  size: number;
}

export interface EvictionPlan {
  tags: PlannedTag[];
  links: PlannedLink[];
  blobs: PlannedBlob[];
  /** Bytes of blobs before and (as planned) after the pass. */
  sizeBefore: number;
  sizeAfter: number;
  /** The size cap asked for eviction but protected or pinned content kept the store above the low mark. */
  capUnreached: boolean;
  /**
   * What storage.eviction.keep holds: the tags it matched and the manifest links it holds
   * (directly, through a kept tag, or as a kept index's child), and the items the patterns
   * name directly, each with its pattern (what the status page lists).
   */
  pinned: { tags: number; manifests: number; items: KeptItem[] };
}

/** A tag, or a manifest link, that a storage.eviction.keep pattern names. */
export interface KeptItem {
  repository: string;
  tag?: string;
  /** The tag's target, or the kept manifest. */
  digest?: string;
  pattern: string;
}

interface LinkState extends StoredLink {
  lastAccess: number;
  pins: string[];
  isIndex: boolean;
  evicted?: LinkReason;
  /** Held by storage.eviction.keep (directly, through a kept tag, as a kept index's child, or attached to a kept manifest). */
  pinned?: boolean;
  /**
   * Manifests of the repository attached to this one: those whose `subject` it is, and the
   * targets of its attachment tags (`sha256-<hex>.sig`, `.att`, `.sbom`, the referrers tag).
   */
  attachments?: LinkState[];
}

/** How deep attachments of attachments are followed (a signature of an SBOM of an image is 2). */
const ATTACHMENT_DEPTH = 4;

/**
 * Decides one pass, mark and sweep as distribution's garbage-collect: first manifests and tags
 * go (TTL from last access, then least recently used images while the size cap asks), then
 * exactly the blobs that no remaining manifest link references. Pure: the sweeper reads the
 * store and carries the plan out.
 *
 * An image's last access is the latest of its link, the tags pointing at it, and for a child
 * manifest the index that lists it, so a platform manifest never goes before its index.
 * Signatures, attestations, SBOMs and other referrers follow the manifest they are about (by
 * `subject`, or by an attachment tag naming its digest): used when it is used, kept when it is
 * kept, evicted with it, their attachment tags too.
 *
 * A store of 150 000 blobs makes this loop over them several times; it yields to the event
 * loop every few milliseconds (Yielder), so a serving mirror's requests do not wait on it.
 */
export async function planEviction(inventory: Inventory, references: Map<string, ManifestReferences>, policy: EvictionPolicy, turn = new Yielder()): Promise<EvictionPlan> {
  const key = (repository: string, digest: string) => `${repository}@${digest}`;
  const links = new Map<string, LinkState>();
  for (const link of inventory.links) {
    if (turn.due()) await turn.pause();
    const refs = references.get(link.digest);
    links.set(key(link.repository, link.digest), {
      ...link,
      lastAccess: link.lastUseMs,
      pins: pinsOf(link.digest, references),
      isIndex: (refs?.manifests.length ?? 0) > 0,
    });
  }
  for (const tag of inventory.tags) {
    if (turn.due()) await turn.pause();
    const target = tag.digest && links.get(key(tag.repository, tag.digest));
    if (target) target.lastAccess = Math.max(target.lastAccess, tag.lastUseMs);
  }
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    if (!link.isIndex) continue;
    for (const child of references.get(link.digest)?.manifests ?? []) {
      if (turn.due()) await turn.pause();
      const childLink = links.get(key(link.repository, child));
      if (childLink) childLink.lastAccess = Math.max(childLink.lastAccess, link.lastAccess);
    }
  }
  // Attachments, and the manifests attachment tags are about.
  const subjectOfTag = new Map<StoredTag, LinkState>();
  const findSubject = subjectFinder(links.values());
  const attach = (subject: LinkState | undefined, attachment: LinkState | undefined) => {
    if (subject && attachment && subject !== attachment) (subject.attachments ??= []).push(attachment);
  };
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    const subject = references.get(link.digest)?.subject;
    if (subject) attach(links.get(key(link.repository, subject)), link);
  }
  for (const tag of inventory.tags) {
    if (turn.due()) await turn.pause();
    const attachment = parseAttachmentTag(tag.tag);
    const subject = attachment && findSubject(tag.repository, attachment);
    if (!subject) continue;
    subjectOfTag.set(tag, subject);
    attach(subject, tag.digest ? links.get(key(tag.repository, tag.digest)) : undefined);
  }
  const inheritAccess = (subject: LinkState, depth: number): void => {
    for (const attachment of subject.attachments ?? []) {
      if (attachment.lastAccess >= subject.lastAccess) continue;
      attachment.lastAccess = subject.lastAccess;
      if (depth < ATTACHMENT_DEPTH) inheritAccess(attachment, depth + 1);
    }
  };
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    inheritAccess(link, 0);
  }
  // Pins: a kept manifest, the target of a kept tag, and (below) a kept index's children and what is attached to a kept manifest.
  const keep = policy.keep && !policy.keep.empty ? policy.keep : undefined;
  const keptTags = new Set<StoredTag>();
  const keptItems: KeptItem[] = [];
  if (keep) {
    for (const link of links.values()) {
      const pattern = keep.keepsManifest(link.repository, link.digest);
      if (!pattern) continue;
      link.pinned = true;
      keptItems.push({ repository: link.repository, digest: link.digest, pattern: pattern.source });
    }
    for (const tag of inventory.tags) {
      if (turn.due()) await turn.pause();
      const pattern = keep.keepsTag(tag.repository, tag.tag);
      if (!pattern) continue;
      keptTags.add(tag);
      keptItems.push({ repository: tag.repository, tag: tag.tag, ...(tag.digest ? { digest: tag.digest } : {}), pattern: pattern.source });
      const target = tag.digest && links.get(key(tag.repository, tag.digest));
      if (target) target.pinned = true;
    }
    for (const link of links.values()) {
      if (turn.due()) await turn.pause();
      if (!link.pinned || !link.isIndex) continue;
      for (const child of references.get(link.digest)?.manifests ?? []) {
        if (turn.due()) await turn.pause();
        const childLink = links.get(key(link.repository, child));
        if (childLink) childLink.pinned = true;
      }
    }
    const inheritPin = (subject: LinkState, depth: number): void => {
      for (const attachment of subject.attachments ?? []) {
        if (attachment.pinned) continue;
        attachment.pinned = true;
        if (depth < ATTACHMENT_DEPTH) inheritPin(attachment, depth + 1);
      }
    };
    for (const link of links.values()) {
      if (turn.due()) await turn.pause();
      if (link.pinned) inheritPin(link, 0);
    }
    // A kept image's attachment tags are kept with it.
    for (const [tag, subject] of subjectOfTag) if (subject.pinned) keptTags.add(tag);
  }
  const isProtected = (link: LinkState) => link.pinned === true || link.lastAccess >= policy.protectedSince;
  /** Evicts a link and, unless protected, what is attached to it; every link it evicted. */
  const evict = (link: LinkState, reason: LinkReason, evicted: LinkState[] = [], depth = 0): LinkState[] => {
    link.evicted = reason;
    evicted.push(link);
    for (const attachment of link.attachments ?? []) {
      if (!attachment.evicted && !isProtected(attachment) && depth < ATTACHMENT_DEPTH) evict(attachment, 'subject evicted', evicted, depth + 1);
    }
    return evicted;
  };

  // 1. TTL from last access (each registry's own).
  const ttlOf = (repository: string) => policy.ttlFor?.(repository) ?? policy.ttlMs;
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    const ttl = ttlOf(link.repository);
    if (ttl > 0 && !link.evicted && !isProtected(link) && link.lastAccess < policy.now - ttl) evict(link, 'ttl');
  }

  // 2. Reference counts over what remains, and the size that would remain.
  const refCount = new Map<string, number>();
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    if (link.evicted) continue;
    for (const pin of link.pins) refCount.set(pin, (refCount.get(pin) ?? 0) + 1);
  }
  const blobProtected = (digest: string) => (inventory.blobs.lastUse(digest) ?? Infinity) >= policy.protectedSince;
  let sizeBefore = 0;
  let sizeAfter = 0;
  for (const blob of inventory.blobs.entries()) {
    if (turn.due()) await turn.pause();
    sizeBefore += blob.size;
    if (refCount.has(blob.digest) || blob.lastUseMs >= policy.protectedSince) sizeAfter += blob.size;
  }

  // 3. Size cap: least recently used images go until the store is under the low mark.
  let capUnreached = false;
  if (policy.maxSize > 0 && sizeAfter > watermarkBytes(policy.maxSize, policy.highWatermark)) {
    const low = watermarkBytes(policy.maxSize, policy.lowWatermark);
    const candidates = [...links.values()]
      .filter((link) => !link.evicted && !isProtected(link))
      // Oldest first; on a tie an index before its children.
      .sort((a, b) => a.lastAccess - b.lastAccess || Number(b.isIndex) - Number(a.isIndex));
    for (const candidate of candidates) {
      if (turn.due()) await turn.pause();
      if (sizeAfter <= low) break;
      if (candidate.evicted) continue;
      for (const link of evict(candidate, 'size')) {
        for (const pin of link.pins) {
          if (turn.due()) await turn.pause();
          const left = (refCount.get(pin) ?? 0) - 1;
          if (left > 0) {
            refCount.set(pin, left);
            continue;
          }
          refCount.delete(pin);
          const size = inventory.blobs.size(pin);
          if (size !== undefined && !blobProtected(pin)) sizeAfter -= size;
        }
      }
    }
    capUnreached = sizeAfter > low;
  }

  // 4. Tags whose manifest goes (or was never stored), or unused past the TTL.
  const tags: PlannedTag[] = [];
  for (const tag of inventory.tags) {
    if (turn.due()) await turn.pause();
    if (tag.lastUseMs >= policy.protectedSince || keptTags.has(tag)) continue;
    const target = tag.digest ? links.get(key(tag.repository, tag.digest)) : undefined;
    // An attachment tag is used when the manifest it is about is, and goes when it goes.
    const subject = subjectOfTag.get(tag);
    const lastUse = Math.max(tag.lastUseMs, subject?.lastAccess ?? 0);
    if (subject?.evicted) tags.push({ ...tag, reason: 'subject evicted' });
    else if (!target) tags.push({ ...tag, reason: 'manifest missing' });
    else if (target.evicted) tags.push({ ...tag, reason: 'manifest evicted' });
    else if (ttlOf(tag.repository) > 0 && lastUse < policy.now - ttlOf(tag.repository)) tags.push({ ...tag, reason: 'ttl' });
  }

  const plannedLinks: PlannedLink[] = [];
  let pinnedLinks = 0;
  for (const link of links.values()) {
    if (turn.due()) await turn.pause();
    if (link.pinned) pinnedLinks++;
    if (link.evicted) plannedLinks.push({ repository: link.repository, digest: link.digest, lastUseMs: link.lastUseMs, lastAccess: link.lastAccess, reason: link.evicted, pins: link.pins });
  }
  const blobs: PlannedBlob[] = [];
  for (const blob of inventory.blobs.entries()) {
    if (turn.due()) await turn.pause();
    if (!refCount.has(blob.digest) && blob.lastUseMs < policy.protectedSince) blobs.push({ digest: blob.digest, size: blob.size });
  }
  return { tags, links: plannedLinks, blobs, sizeBefore, sizeAfter, capUnreached, pinned: { tags: keptTags.size, manifests: pinnedLinks, items: keptItems } };
}

/**
 * Finds the manifest an attachment tag is about among a store's links: by its digest, or for a
 * sha512 by the 64 hex characters the referrers tag schema keeps of it.
 */
function subjectFinder(links: Iterable<LinkState>): (repository: string, tag: AttachmentTag) => LinkState | undefined {
  const byTagForm = new Map<string, LinkState>();
  for (const link of links) {
    const colon = link.digest.indexOf(':');
    byTagForm.set(`${link.repository}@${link.digest.slice(0, colon)}-${link.digest.slice(colon + 1, colon + 65)}`, link);
  }
  return (repository, tag) => byTagForm.get(`${repository}@${tag.algorithm}-${tag.hex}`);
}

/** The blobs a manifest keeps alive: itself, its config and layers, and its children's, recursively. */
export function pinsOf(digest: string, references: Map<string, ManifestReferences>): string[] {
  const pins = new Set<string>();
  const visit = (manifest: string, depth: number): void => {
    if (pins.has(manifest)) return;
    pins.add(manifest);
    const refs = references.get(manifest);
    if (!refs) return;
    for (const blob of refs.blobs) pins.add(blob);
    if (depth < 4) for (const child of refs.manifests) visit(child, depth + 1);
  };
  visit(digest, 0);
  return [...pins];
}

/** What the grace period kept out of a plan: items a pass without it would take, and when the last of them is released. */
export interface GraceHeldBack {
  tags: number;
  links: number;
  blobs: number;
  bytes: number;
  /** Wall-clock time (ms) the first and the last held item leave the grace period; undefined when none is held. */
  from?: number;
  until?: number;
}

/**
 * The same plan without the grace period, compared with `plan`: a dry run that says "0 to free"
 * while minutes-old content waits is a trap, so the preview says how much waits and until when.
 */
export async function graceHeldBack(
  inventory: Inventory,
  references: Map<string, ManifestReferences>,
  policy: EvictionPolicy,
  graceMs: number,
  plan: EvictionPlan,
  turn = new Yielder(),
): Promise<GraceHeldBack> {
  const without = await planEviction(inventory, references, { ...policy, protectedSince: Infinity }, turn);
  const planned = {
    tags: new Set(plan.tags.map((tag) => `${tag.repository}:${tag.tag}`)),
    links: new Set(plan.links.map((link) => `${link.repository}@${link.digest}`)),
    blobs: new Set(plan.blobs.map((blob) => blob.digest)),
  };
  const held: GraceHeldBack = { tags: 0, links: 0, blobs: 0, bytes: 0 };
  const release = (time: number) => {
    const at = time + graceMs;
    held.from = Math.min(held.from ?? at, at);
    held.until = Math.max(held.until ?? at, at);
  };
  for (const tag of without.tags) {
    if (turn.due()) await turn.pause();
    if (planned.tags.has(`${tag.repository}:${tag.tag}`)) continue;
    held.tags++;
    release(tag.lastUseMs);
  }
  for (const link of without.links) {
    if (turn.due()) await turn.pause();
    if (planned.links.has(`${link.repository}@${link.digest}`)) continue;
    held.links++;
    release(link.lastAccess);
  }
  for (const blob of without.blobs) {
    if (turn.due()) await turn.pause();
    if (planned.blobs.has(blob.digest)) continue;
    held.blobs++;
    held.bytes += blob.size;
    // A blob kept by a held manifest is released with it; one protected itself has its own time.
    const lastUseMs = inventory.blobs.lastUse(blob.digest) ?? 0;
    if (lastUseMs >= policy.protectedSince) release(lastUseMs);
  }
  return held;
}
