/**
 * An eviction pass, the store's figures and the browser's snapshot read through the storage
 * driver: run here on the in-memory driver (no disk), with the local access clock.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, beforeEach, describe, it } from 'node:test';
import winston from 'winston';
import { RepositorySnapshots } from '../../src/browse/repository-snapshot.ts';
import { accessItem, LOOKUP_BATCH } from '../../src/eviction/access-clock.ts';
import type { StoreReader } from '../../src/eviction/inventory.ts';
import { LocalAccessClock } from '../../src/eviction/local-access-clock.ts';
import { PassHeldElsewhere, type PassLock } from '../../src/eviction/pass-lock.ts';
import { PassLeaseLost, sweep, type SweepOptions } from '../../src/eviction/sweeper.ts';
import { MediaType } from '../../src/registry/media-types.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { computeStoreFigures } from '../../src/storage/store-stats.ts';
import { tempDir } from '../support/processes.ts';

const HOUR = 3_600_000;
const logger = winston.createLogger({ silent: true });
const sha = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

interface Image {
  manifest: string;
  config: string;
  layer: string;
}

describe('an eviction pass on the in-memory driver, with the access clock', () => {
  const work = tempDir('pullmirror-sweeper');
  after(() => work.cleanup());
  // Keys are drawn by StorePaths; the root is only where a filesystem driver would keep them.
  const paths = new StorePaths(path.join(work.path, 'store'));
  const key = (absolute: string) => path.relative(paths.root, absolute);
  let driver: MemoryDriver;
  let clock: LocalAccessClock;
  let store: StoreReader;
  let n = 0;

  /** Stores an image as a pull through the mirror does: blobs, the repository's link, its tag. */
  async function storeImage(repository: string, tag: string, label: string): Promise<Image> {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', label }));
    const layer = Buffer.from(`layer of ${label}`.repeat(50));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha(layer), size: layer.length }],
      }),
    );
    const image = { manifest: sha(manifest), config: sha(config), layer: sha(layer) };
    for (const [digest, bytes] of [[image.manifest, manifest], [image.config, config], [image.layer, layer]] as const) {
      await driver.putContent(key(paths.blob(parse(digest))), bytes);
    }
    await driver.putContent(key(paths.manifestLink(repository, parse(image.manifest))), JSON.stringify({ mediaType: MediaType.dockerManifest, size: manifest.length }));
    await driver.putContent(key(paths.tag(repository, tag)), image.manifest);
    return image;
  }

  const parse = (digest: string) => ({ algorithm: 'sha256' as const, hex: digest.slice(7), value: digest });
  const has = async (digest: string) => (await driver.stat(key(paths.blob(parse(digest))))) !== undefined;
  /** A pass `hours` from now with proxy.ttl 168h and no grace period (every object was just written). */
  const pass = async (hours: number, over: Partial<SweepOptions> = {}) => {
    // A deleting pass keeps what was written in its own millisecond (the grace period's edge).
    await sleep(5);
    return sweep({ store, logger, now: Date.now() + hours * HOUR, ttlMs: 168 * HOUR, graceMs: 0, maxSize: 0, highWatermark: 90, lowWatermark: 80, ...over });
  };

  beforeEach(() => {
    driver = new MemoryDriver();
    clock = new LocalAccessClock({ dir: path.join(work.path, `clock-${n++}`), logger });
    store = { driver, paths, clock };
  });

  it('takes what is unused past the TTL: tags, links and blobs go from the driver, their clock records with them', async () => {
    const app = await storeImage('team/app', 'v1', 'app');
    const orphan = Buffer.from('nobody links me');
    await driver.putContent(key(paths.blob(parse(sha(orphan)))), orphan);
    clock.touch(accessItem.blob(app.layer), Date.now());
    const early = await pass(100);
    assert.deepEqual([early.tags.length, early.links.length, early.blobs.map((b) => b.digest)], [0, 0, [sha(orphan)]], 'before the TTL only what nothing references goes');
    const result = await pass(200);
    assert.deepEqual(result.tags.map((t) => `${t.repository}:${t.tag}`), ['team/app:v1']);
    assert.deepEqual(result.links.map((l) => l.digest), [app.manifest]);
    assert.deepEqual(new Set(result.blobs.map((b) => b.digest)), new Set([app.manifest, app.config, app.layer]));
    for (const digest of [app.manifest, app.config, app.layer]) assert.equal(await has(digest), false, digest);
    assert.equal(await driver.stat(key(paths.tag('team/app', 'v1'))), undefined);
    assert.deepEqual(await clock.lastUses([accessItem.blob(app.layer)]), [undefined], 'the record went with the blob');
    await clock.close();
  });

  it("keeps an image its clock says was used, however old its objects: last use is the record's", async () => {
    const used = await storeImage('team/used', 'v1', 'used');
    const idle = await storeImage('team/idle', 'v1', 'idle');
    // Used (as far as the clock knows) an hour before the pass's moment: within the TTL.
    clock.touch(accessItem.manifest('team/used', used.manifest), Date.now() + 199 * HOUR);
    const result = await pass(200);
    assert.deepEqual(result.links.map((l) => l.repository), ['team/idle']);
    for (const digest of [used.manifest, used.config, used.layer]) assert.ok(await has(digest), digest);
    for (const digest of [idle.manifest, idle.config, idle.layer]) assert.equal(await has(digest), false, digest);
    // Its tag was not used past the TTL on its own (a tag lives as long as its own use).
    assert.deepEqual(result.tags.map((t) => t.repository).sort(), ['team/idle', 'team/used']);
    await clock.close();
  });

  it('forgets the records of what it deleted a batch at a time, never the whole pass at once', async () => {
    // More unreferenced blobs than one batch of the clock (LOOKUP_BATCH), each with a record.
    const orphans: string[] = [];
    for (let i = 0; i < 2 * LOOKUP_BATCH + 500; i++) {
      const bytes = Buffer.from(`orphan ${i}`);
      orphans.push(sha(bytes));
      await driver.putContent(key(paths.blob(parse(sha(bytes)))), bytes);
      clock.touch(accessItem.blob(sha(bytes)), Date.now() - 300 * HOUR);
    }
    const forgotten: number[] = [];
    const forget = clock.forget.bind(clock);
    clock.forget = (items) => (forgotten.push(items.length), forget(items));
    const result = await pass(0);
    assert.equal(result.blobs.length, orphans.length);
    assert.ok(forgotten.length > 1 && Math.max(...forgotten) <= LOOKUP_BATCH, `forgotten in batches of at most ${LOOKUP_BATCH}: ${forgotten.join(', ')}`);
    assert.equal(forgotten.reduce((a, b) => a + b, 0), orphans.length, 'each removed blob forgotten once');
    assert.deepEqual(new Set(await clock.lastUses(orphans.slice(0, LOOKUP_BATCH).map(accessItem.blob))), new Set([undefined]), 'their records are gone');
    await clock.close();
  });

  it('keeps a blob another instance is filling (an async answer, as a fill lease in Redis gives)', async () => {
    const app = await storeImage('team/app', 'v1', 'busy');
    const result = await pass(200, { hooks: { isBusy: async (digest) => digest === app.layer } });
    assert.equal(result.kept, 1);
    assert.ok(await has(app.layer));
    assert.equal(await has(app.config), false);
    await clock.close();
  });

  it('a pass whose lock another holds deletes nothing; one that loses its lock stops deleting', async () => {
    const app = await storeImage('team/app', 'v1', 'locked');
    const heldElsewhere: PassLock = { acquire: async () => Promise.reject(new PassHeldElsewhere('other', Date.now())) };
    await assert.rejects(pass(200, { lock: heldElsewhere }), PassHeldElsewhere);
    assert.ok(await has(app.manifest));
    // A dry run takes no lock.
    assert.equal((await pass(200, { lock: heldElsewhere, dryRun: true })).blobs.length, 3);
    let released = false;
    const lost: PassLock = { acquire: async () => ({ stillHeld: async () => false, release: async () => void (released = true) }) };
    await assert.rejects(pass(200, { lock: lost }), PassLeaseLost);
    assert.ok(released, 'the lease is released whatever happens');
    assert.ok(await has(app.manifest) && (await driver.stat(key(paths.tag('team/app', 'v1')))) !== undefined, 'nothing deleted once the fence says no');
    await clock.close();
  });

  it('a pass asks the driver to remove what crashed writers left, a dry run does not', async () => {
    const asked: number[] = [];
    // The in-memory driver has no incomplete uploads; what is checked here is that the pass asks (S3's driver answers with its own).
    store.driver = Object.assign(driver, { cleanup: async (olderThanMs: number) => (asked.push(olderThanMs), 2) });
    await storeImage('team/app', 'v1', 'cleanup');
    assert.equal((await pass(1, { dryRun: true, cleanupOlderThanMs: 86_400_000 })).cleaned, 0);
    assert.deepEqual(asked, []);
    assert.equal((await pass(1, { cleanupOlderThanMs: 86_400_000 })).cleaned, 2);
    assert.deepEqual(asked, [86_400_000]);
    await clock.close();
  });

  it("the store's figures and the browser's snapshot read the same driver and clock", async () => {
    const app = await storeImage('team/app', 'v1', 'figures');
    await storeImage('ghcr.io/acme/tool', 'latest', 'tool');
    const figures = await computeStoreFigures({ driver, paths });
    assert.equal(figures.blobs, 6);
    assert.equal(figures.manifests, 2);
    assert.equal(figures.repositories, 2);
    assert.deepEqual(figures.registries, { '': { repositories: 1, tags: 1 }, 'ghcr.io': { repositories: 1, tags: 1 } });
    const usedAt = Date.now() + 5 * HOUR;
    clock.touch(accessItem.tag('team/app', 'v1'), usedAt);
    const snapshot = await new RepositorySnapshots(store).get('team/app');
    assert.ok(snapshot);
    assert.equal(snapshot.tags.get('v1')?.digest, app.manifest);
    assert.equal(snapshot.tags.get('v1')?.lastUseMs, usedAt, "the tag's last use is the clock's record");
    assert.equal(snapshot.links.get(app.manifest)?.mediaType, MediaType.dockerManifest);
    assert.equal(await new RepositorySnapshots(store).get('team/none'), undefined);
    await clock.close();
  });
});
