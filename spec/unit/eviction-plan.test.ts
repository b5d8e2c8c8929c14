import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { BlobIndex, type Inventory } from '../../src/eviction/inventory.ts';
import { KeepRules, parseKeepPattern } from '../../src/eviction/keep.ts';
import { graceHeldBack, planEviction, type EvictionPolicy } from '../../src/eviction/plan.ts';
import { manifestReferences, type ManifestReferences } from '../../src/registry/manifest-references.ts';

const d = (label: string) => `sha256:${label.padEnd(64, '0')}`;
const HOUR = 3_600_000;
const NOW = 1_000 * HOUR;
const policy = (over: Partial<EvictionPolicy> = {}): EvictionPolicy => ({
  now: NOW, ttlMs: 10 * HOUR, protectedSince: NOW + HOUR, maxSize: 0, highWatermark: 90, lowWatermark: 80, ...over,
});

/** A store with an index (two platform manifests) in repo r, and an image sharing a layer in repo s. */
function store(access: { index: number; amd: number; arm: number; image: number }) {
  const refs = new Map<string, ManifestReferences>([
    [d('1'), { manifests: [d('a'), d('b')], blobs: [] }],
    [d('a'), { manifests: [], blobs: [d('ca'), d('la'), d('shared')] }],
    [d('b'), { manifests: [], blobs: [d('cb'), d('lb')] }],
    [d('2'), { manifests: [], blobs: [d('c2'), d('shared')] }],
  ]);
  const blobs = new BlobIndex();
  for (const [digest, size] of Object.entries({ 1: 1, a: 1, b: 1, ca: 1, la: 100, cb: 1, lb: 100, shared: 50, 2: 1, c2: 1, orphan: 7 })) {
    blobs.add('sha256', d(digest).slice(7), size, 0);
  }
  const inventory: Inventory = {
    blobs,
    links: [
      { repository: 'r', digest: d('1'), lastUseMs: access.index },
      { repository: 'r', digest: d('a'), lastUseMs: access.amd },
      { repository: 'r', digest: d('b'), lastUseMs: access.arm },
      { repository: 's', digest: d('2'), lastUseMs: access.image },
    ],
    tags: [
      { repository: 'r', tag: 'latest', digest: d('1'), lastUseMs: access.index },
      { repository: 's', tag: 'v1', digest: d('2'), lastUseMs: access.image },
      { repository: 's', tag: 'gone', digest: d('9'), lastUseMs: 0 },
    ],
  };
  return { inventory, refs };
}

/**
 * The same store with what refers to r's index and its amd64 manifest: a cosign signature of the
 * index (a manifest tagged `sha256-<hex of the index>.sig`, its config and payload), and an SBOM
 * of the amd64 manifest whose `subject` names it (linked by digest, no tag), signed in turn by a
 * referrer of its own. `access` is when the attachments themselves were last used.
 */
function storeWithAttachments(access: { index: number; amd: number; arm: number; image: number }, attachmentsUsed: number) {
  const { inventory, refs } = store(access);
  refs.set(d('5'), { manifests: [], blobs: [d('5c'), d('5p')] });
  refs.set(d('6'), { manifests: [], blobs: [d('6c'), d('6l')], subject: d('a') });
  refs.set(d('7'), { manifests: [], blobs: [d('7c')], subject: d('6') });
  for (const [digest, size] of Object.entries({ 5: 1, '5c': 1, '5p': 2, 6: 1, '6c': 1, '6l': 30, 7: 1, '7c': 1 })) inventory.blobs.add('sha256', d(digest).slice(7), size, 0);
  inventory.links.push(
    { repository: 'r', digest: d('5'), lastUseMs: attachmentsUsed },
    { repository: 'r', digest: d('6'), lastUseMs: attachmentsUsed },
    { repository: 'r', digest: d('7'), lastUseMs: attachmentsUsed },
  );
  inventory.tags.push({ repository: 'r', tag: `sha256-${d('1').slice(7)}.sig`, digest: d('5'), lastUseMs: attachmentsUsed });
  return { inventory, refs };
}

const ATTACHMENT_BLOBS = ['5', '5c', '5p', '6', '6c', '6l', '7', '7c'];

const names = (items: { digest: string }[]) => items.map((item) => item.digest.slice(7).replace(/0+$/, '')).sort();

describe('eviction plan', () => {
  it('TTL: an expired image goes with its own blobs, a shared layer stays with the image that uses it', async () => {
    const { inventory, refs } = store({ index: NOW - 11 * HOUR, amd: NOW - 11 * HOUR, arm: NOW - 11 * HOUR, image: NOW - HOUR });
    const plan = await planEviction(inventory, refs, policy());
    assert.deepEqual(names(plan.links), ['1', 'a', 'b']);
    assert.deepEqual(names(plan.blobs), ['1', 'a', 'b', 'ca', 'cb', 'la', 'lb', 'orphan']);
    assert.deepEqual(plan.tags.map((t) => `${t.tag}:${t.reason}`).sort(), ['gone:manifest missing', 'latest:manifest evicted']);
    assert.equal(plan.sizeAfter, 50 + 1 + 1);
  });

  it('a platform manifest lives as long as the index that lists it was used', async () => {
    const { inventory, refs } = store({ index: NOW - HOUR, amd: NOW - 20 * HOUR, arm: NOW - 20 * HOUR, image: NOW });
    assert.deepEqual(names((await planEviction(inventory, refs, policy())).links), []);
  });

  it('size cap: least recently used first until under the low mark; nothing below the high mark', async () => {
    const { inventory, refs } = store({ index: NOW - 2 * HOUR, amd: NOW - 2 * HOUR, arm: NOW - 2 * HOUR, image: NOW - HOUR });
    // 257 bytes of referenced blobs (+7 orphan, which goes anyway).
    assert.deepEqual(names((await planEviction(inventory, refs, policy({ ttlMs: 0, maxSize: 300 }))).links), [], 'under the high mark');
    const plan = await planEviction(inventory, refs, policy({ ttlMs: 0, maxSize: 100, highWatermark: 90, lowWatermark: 60 }));
    assert.deepEqual(names(plan.links), ['1', 'a', 'b']);
    assert.equal(plan.links.every((link) => link.reason === 'size'), true);
    assert.equal(plan.sizeAfter, 52);
    assert.equal(plan.capUnreached, false);
  });

  it('content used within the grace period is never taken, and a cap it blocks is reported', async () => {
    const { inventory, refs } = store({ index: NOW - 20 * HOUR, amd: NOW - 20 * HOUR, arm: NOW - 20 * HOUR, image: NOW - 20 * HOUR });
    const plan = await planEviction(inventory, refs, policy({ protectedSince: NOW - 30 * HOUR, maxSize: 10 }));
    assert.deepEqual(plan.links, []);
    assert.deepEqual(names(plan.blobs), ['orphan'], 'only the old unreferenced blob');
    assert.equal(plan.capUnreached, true);
  });

  it('reads references from every manifest shape, ignoring what is not a digest', async () => {
    const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));
    assert.deepEqual(manifestReferences(bytes({ manifests: [{ digest: d('a') }, { digest: 'nope' }] })), { manifests: [d('a')], blobs: [] });
    assert.deepEqual(manifestReferences(bytes({ config: { digest: d('c') }, layers: [{ digest: d('e') }, { digest: 'sha256:not-hex' }] })).blobs, [d('c'), d('e')]);
    assert.deepEqual(manifestReferences(bytes({ schemaVersion: 1, fsLayers: [{ blobSum: d('f') }] })).blobs, [d('f')]);
    assert.deepEqual(manifestReferences(Buffer.from('not json')), { manifests: [], blobs: [] });
    assert.deepEqual(manifestReferences(bytes({ config: { digest: d('c') }, layers: [], subject: { digest: d('5e') } })), { manifests: [], blobs: [d('c')], subject: d('5e') }, 'an artifact names its subject');
    assert.equal(manifestReferences(bytes({ layers: [], subject: { digest: 'sha256:nope' } })).subject, undefined);
  });

  it('says what the grace period holds back from a pass, and when the last of it is released', async () => {
    // Everything unused past the TTL, but the orphan blob and the image in s were written 5 minutes ago.
    const { inventory, refs } = store({ index: 0, amd: 0, arm: 0, image: NOW - 5 * 60_000 });
    inventory.blobs.add('sha256', d('orphan').slice(7), 7, NOW - 2 * 60_000);
    const grace = 10 * 60_000;
    const withGrace = policy({ protectedSince: NOW - grace, now: NOW + 20 * HOUR });
    const plan = await planEviction(inventory, refs, withGrace);
    const held = await graceHeldBack(inventory, refs, withGrace, grace, plan);
    assert.deepEqual(names(plan.links), ['1', 'a', 'b']);
    assert.equal(held.links, 1, "s's image manifest");
    assert.equal(held.tags, 1, 's:v1');
    assert.equal(held.blobs, 4, 'the orphan, and the manifest, config and shared layer of the image in s');
    assert.equal(held.bytes, 7 + 1 + 1 + 50);
    assert.equal(held.from, NOW - 5 * 60_000 + grace);
    assert.equal(held.until, NOW - 2 * 60_000 + grace, 'the orphan, written last, is released last');
    const none = await graceHeldBack(inventory, refs, { ...withGrace, protectedSince: Infinity }, 0, await planEviction(inventory, refs, { ...withGrace, protectedSince: Infinity }));
    assert.deepEqual(none, { tags: 0, links: 0, blobs: 0, bytes: 0 });
  });
  it('storage.eviction.keep: a kept tag holds its index, the platform manifests and their blobs against TTL and size cap', async () => {
    const old = NOW - 50 * HOUR;
    const { inventory, refs } = store({ index: old, amd: old, arm: old, image: old });
    const keep = new KeepRules(['registry.local:5000/r:latest'], 'registry.local:5000');
    const ttl = await planEviction(inventory, refs, policy({ keep }));
    assert.deepEqual(names(ttl.links), ['2'], 'only the unpinned image goes');
    assert.deepEqual(ttl.tags.map((t) => t.tag).sort(), ['gone', 'v1']);
    assert.deepEqual(names(ttl.blobs), ['2', 'c2', 'orphan'], 'the shared layer stays with the pinned index');
    assert.deepEqual(ttl.pinned, { tags: 1, manifests: 3, items: [{ repository: 'r', tag: 'latest', digest: d('1'), pattern: 'registry.local:5000/r:latest' }] });
    // The size cap cannot take pinned content either: it says so instead.
    const capped = await planEviction(inventory, refs, policy({ keep, ttlMs: 0, maxSize: 100 }));
    assert.deepEqual(names(capped.links), ['2']);
    assert.equal(capped.capUnreached, true);
    // Without the pin the same passes take everything.
    assert.deepEqual(names((await planEviction(inventory, refs, policy())).links), ['1', '2', 'a', 'b']);
  });

  it('attachments follow their image: used when it is used, evicted with it by TTL, their tags too', async () => {
    const old = NOW - 50 * HOUR;
    // The image is used, its signature and SBOM were fetched long ago: they stay.
    const used = storeWithAttachments({ index: NOW - HOUR, amd: NOW - HOUR, arm: NOW - HOUR, image: NOW - HOUR }, old);
    const kept = await planEviction(used.inventory, used.refs, policy());
    assert.deepEqual(names(kept.links), []);
    assert.deepEqual(kept.tags.map((t) => t.tag), ['gone']);
    assert.deepEqual(names(kept.blobs), ['orphan']);
    // The image expires: its signature, SBOM and the SBOM's signature go with it, whenever they were used.
    const expired = storeWithAttachments({ index: old, amd: old, arm: old, image: NOW - HOUR }, NOW - 2 * HOUR);
    const plan = await planEviction(expired.inventory, expired.refs, policy());
    assert.deepEqual(names(plan.links), ['1', '5', '6', '7', 'a', 'b']);
    assert.deepEqual(
      plan.links.filter((link) => ['5', '6', '7'].includes(names([link])[0])).map((link) => link.reason),
      ['subject evicted', 'subject evicted', 'subject evicted'],
    );
    assert.deepEqual(plan.tags.map((t) => `${t.tag}:${t.reason}`).sort(), ['gone:manifest missing', 'latest:manifest evicted', `sha256-${d('1').slice(7)}.sig:subject evicted`]);
    assert.deepEqual(names(plan.blobs), ['1', 'a', 'b', 'ca', 'cb', 'la', 'lb', 'orphan', ...ATTACHMENT_BLOBS].sort());
    // Written within the grace period, an attachment stays even when its image goes.
    const fresh = await planEviction(expired.inventory, expired.refs, policy({ protectedSince: NOW - 3 * HOUR }));
    assert.deepEqual(names(fresh.links), ['1', 'a', 'b']);
  });

  it('attachments follow their image under the size cap, and a kept image keeps them', async () => {
    const { inventory, refs } = storeWithAttachments({ index: NOW - 3 * HOUR, amd: NOW - 3 * HOUR, arm: NOW - 3 * HOUR, image: NOW - HOUR }, NOW - 2 * HOUR);
    const capped = await planEviction(inventory, refs, policy({ ttlMs: 0, maxSize: 100, highWatermark: 90, lowWatermark: 60 }));
    assert.deepEqual(names(capped.links), ['1', '5', '6', '7', 'a', 'b'], 'the index was the least recently used: its attachments go with it');
    assert.equal(capped.sizeAfter, 52, 'their blobs are counted as freed');
    const keep = new KeepRules(['registry.local:5000/r:latest'], 'registry.local:5000');
    const pinned = await planEviction(inventory, refs, policy({ keep, now: NOW + 100 * HOUR }));
    assert.deepEqual(names(pinned.links), ['2']);
    assert.deepEqual(pinned.tags.map((t) => t.tag).sort(), ['gone', 'v1'], 'the signature tag stays with the kept tag');
    assert.deepEqual(names(pinned.blobs), ['2', 'c2', 'orphan']);
    assert.equal(pinned.pinned.tags, 2, 'latest, and the signature tag held through it');
    assert.equal(pinned.pinned.manifests, 6, 'the index, its platforms, the signature, the SBOM and its signature');
    // A pattern naming only the signature's tag keeps the signature, not the image.
    const sigOnly = await planEviction(inventory, refs, policy({ keep: new KeepRules(['registry.local:5000/r:sha256-*.sig'], 'registry.local:5000'), now: NOW + 100 * HOUR }));
    assert.deepEqual(names(sigOnly.links), ['1', '2', '6', '7', 'a', 'b']);
  });

  it('keep patterns: registries by their client name, globs per component, digests, whole repositories', async () => {
    const rules = new KeepRules(['docker.io/alpine:3.*', 'ghcr.io/acme/**', 'quay.io/org/app@sha256:' + 'ab'.repeat(32), 'index.docker.io/library/node'], 'docker.io');
    assert.ok(rules.keepsTag('library/alpine', '3.20'));
    assert.equal(rules.keepsTag('library/alpine', 'edge'), undefined);
    assert.equal(rules.keepsTag('other/alpine', '3.20'), undefined, 'docker.io/alpine means library/alpine');
    assert.ok(rules.keepsTag('ghcr.io/acme/team/base', 'stable'), '** crosses components');
    assert.ok(rules.keepsManifest('ghcr.io/acme/x', d('1')), 'a repository pattern keeps its manifests');
    assert.equal(rules.keepsTag('ghcr.io/other/x', 'v1'), undefined);
    assert.ok(rules.keepsManifest('quay.io/org/app', 'sha256:' + 'ab'.repeat(32)));
    assert.equal(rules.keepsTag('quay.io/org/app', 'v1'), undefined, 'a digest pattern keeps no tag');
    assert.ok(rules.keepsTag('library/node', '22'));
    assert.equal(rules.keepsTag('docker.io/library/node', '22')?.source, 'index.docker.io/library/node', 'a default-remote key with a host');
    assert.throws(() => parseKeepPattern('alpine:latest'), /name the registry first/);
    assert.throws(() => parseKeepPattern('docker.io/Alpine'), /not a repository name/);
    assert.throws(() => parseKeepPattern('docker.io/alpine@sha256'), /not a digest/);
  });
});

describe('the blob index of a pass', () => {
  it('finds every blob by digest, its size and last use, past many growths of its table', () => {
    const index = new BlobIndex();
    const digests = Array.from({ length: 5000 }, (_, i) => createHash('sha256').update(`blob ${i}`).digest('hex'));
    digests.forEach((hex, i) => index.add('sha256', hex, i, 1000 + i));
    const long = createHash('sha512').update('a sha512 blob').digest('hex');
    index.add('sha512', long, 7, 1);
    // Added again (listed twice during a walk): replaced, not counted twice.
    index.add('sha256', digests[42], 4242, 5);
    index.used(`sha256:${digests[43]}`, 99_999);
    index.used(`sha256:${digests[44]}`, 1);
    assert.equal(index.count, 5001);
    assert.equal(index.size(`sha256:${digests[4999]}`), 4999);
    assert.equal(index.size(`sha256:${digests[42]}`), 4242);
    assert.equal(index.lastUse(`sha256:${digests[43]}`), 99_999, 'a later use moves it forward');
    assert.equal(index.lastUse(`sha256:${digests[44]}`), 1044, 'an earlier one does not');
    assert.equal(index.size(`sha512:${long}`), 7);
    assert.equal(index.size(`sha256:${'0'.repeat(64)}`), undefined);
    assert.equal(index.size(`sha256:${long.slice(0, 64)}`), undefined);
    const listed = new Map<string, number>();
    for (const blob of index.entries()) listed.set(blob.digest, blob.size);
    assert.equal(listed.size, 5001);
    assert.equal(listed.get(`sha256:${digests[0]}`), 0);
    assert.equal(listed.get(`sha512:${long}`), 7);
  });
});
