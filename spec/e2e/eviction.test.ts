import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { pushImage, pushIndex, randomLayer, type PushedImage, type PushedIndex } from '../support/images.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { scrape, sum } from '../support/prometheus.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { blobPath, stored } from '../support/store.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const HOUR = 3_600_000;
const TTL = 168 * HOUR;
/** No grace period: a pass may take anything the TTL or the cap names (the tests move the clock instead). */
const NO_GRACE = { proxy: { tagfreshness: '0' }, storage: { eviction: { grace: '0s' } } };

/** `pullmirror gc ARGS config.yml` against a mirror's store; resolves with stdout. */
function gc(mirror: RunningMirror, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MAIN, 'gc', ...args, mirror.configFile], { env: cleanEnv(['REGISTRY_']) }, (error, stdout, stderr) => {
      if (error) reject(new Error(`pullmirror gc failed: ${stderr || stdout}`));
      else resolve(stdout);
    });
  });
}

/**
 * Every file in the store but the per-instance temporary area and the access clock's journal
 * (the running mirror appends to it as it serves; a dry run never does, see access-clock.test.ts), with size and mtime.
 */
function storeFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (!entry.isFile() || file.includes(`${path.sep}_tmp${path.sep}`) || file.includes(`${path.sep}_access-clock${path.sep}`)) continue;
    const info = statSync(file);
    files.set(path.relative(root, file), `${info.size}@${info.mtimeMs}`);
  }
  return files;
}

function hasBlob(root: string, digest: string): boolean {
  return existsSync(blobPath(root, digest));
}

function blobsSize(root: string): number {
  let total = 0;
  const dir = path.join(root, 'blobs');
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

const blobsOf = (image: PushedImage) => [image.manifestDigest, image.configDigest, ...image.layerDigests];

describe('eviction and garbage collection: never breaks an image', { skip: missingBinaries }, () => {
  let world: World;
  const work = tempDir('pullmirror-eviction');
  const images: Record<string, PushedImage> = {};
  let index: PushedIndex;

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    const push = (name: string, layers: ReturnType<typeof randomLayer>[]) => pushImage(reg, PUSHER, { name, tag: '1', layers, format: 'docker' });
    images.old = await push('library/old', [randomLayer('old-0', 200 * 1024)]);
    images.kept = await push('library/kept', [randomLayer('kept-0', 100 * 1024)]);
    const shared = randomLayer('shared-base', 300 * 1024);
    images.sa = await push('library/sa', [shared, randomLayer('sa-top', 50 * 1024)]);
    images.sb = await push('library/sb', [shared, randomLayer('sb-top', 60 * 1024)]);
    for (const name of ['a', 'b', 'c']) images[`cap${name}`] = await push(`library/cap${name}`, [randomLayer(`cap-${name}`, 1024 * 1024)]);
    images.slow = await push('library/slow', [randomLayer('slow-0', 3 * 1024 * 1024)]);
    const platforms = [
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('multi-amd64')], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('multi-arm64')], platform: { os: 'linux', architecture: 'arm64' }, format: 'oci' }),
    ];
    images.multiAmd64 = platforms[0];
    images.multiArm64 = platforms[1];
    index = await pushIndex(reg, PUSHER, { name: 'team/multi', tag: 'latest', images: platforms, format: 'oci-index' });
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  async function pull(mirror: RunningMirror, ref: string, options: { all?: boolean } = {}) {
    const dest = path.join(work.path, `${ref.replace(/[^a-z0-9]/gi, '_')}-${Math.random().toString(36).slice(2)}`);
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${dest}`, { all: options.all });
    return readDirImage(dest);
  }

  const upstreamBlobGets = (digests: string[]) => digests.reduce((n, d) => n + world.proxy.count('GET', new RegExp(`/blobs/${d}$`)), 0);

  it('gc --dry-run prints the plan and removes nothing; a pass past the TTL evicts an unused image, which is fetched again later', async () => {
    // A short TTL (120 s) so that access records are debounced for 5 s only (TTL/24).
    const mirror = await world.startMirror({ config: { ...NO_GRACE, proxy: { tagfreshness: '0', ttl: '120s' } } });
    await pull(mirror, 'library/old:1');
    await pull(mirror, 'team/multi:latest', { all: true });
    await sleep(200); // access records are written in the background
    const before = storeFiles(mirror.root);

    assert.match(await gc(mirror, '--dry-run', '--now', '+100s'), /^dry run: 0 tags, 0 manifests, 0 blobs/m, 'nothing is due before the TTL');
    const plan = await gc(mirror, '--dry-run', '--now', '+130s');
    assert.match(plan, new RegExp(`would remove tag library/old:1 \\(manifest evicted\\)`));
    assert.match(plan, new RegExp(`would remove manifest library/old@${images.old.manifestDigest} \\(ttl, last used `));
    assert.match(plan, new RegExp(`would remove manifest team/multi@${index.digest} `));
    assert.match(plan, new RegExp(`would remove blob ${images.old.layerDigests[0]} \\d+(\\.\\d+)? KiB`));
    assert.match(plan, /^dry run: 2 tags, 4 manifests, 10 blobs, .* to free; store .* -> 0 B/m);
    assert.deepEqual(storeFiles(mirror.root), before, 'a dry run changes nothing, not even access times');

    const done = await gc(mirror, '--now', '+130s');
    assert.match(done, new RegExp(`removed blob ${images.old.layerDigests[0]} `));
    assert.match(done, /^2 tags, 4 manifests, 10 blobs, .* freed; store .* -> 0 B/m);
    for (const digest of [...blobsOf(images.old), index.digest, ...blobsOf(images.multiAmd64), ...blobsOf(images.multiArm64)]) {
      assert.equal(hasBlob(mirror.root, digest), false, digest);
    }
    assert.equal(mirror.logLines().some((line) => line.message === 'eviction scheduled'), false, 'no scheduler without storage.delete.enabled');

    // The running mirror still knows the image in memory; the blobs come from upstream again.
    const gets = upstreamBlobGets(images.old.layerDigests);
    const again = await pull(mirror, 'library/old:1');
    assert.equal(again.manifest.digest, images.old.manifestDigest);
    assert.equal(upstreamBlobGets(images.old.layerDigests), gets + 1, 'the evicted layer was fetched again');
    assert.ok(await stored(mirror.root, images.old.layerDigests[0]));
    // Its next recorded access finds the manifest gone from the store: the pull after that stores it again.
    await sleep(5500);
    await pull(mirror, 'library/old:1');
    await sleep(200);
    await pull(mirror, 'library/old:1');
    const link = path.join(mirror.root, 'repositories', 'library', 'old', '_manifests', 'sha256', images.old.manifestDigest.slice(7));
    assert.ok(existsSync(link), 'the mirror noticed the manifest had gone from the store and stored it again');
    assert.equal((await pull(mirror, 'team/multi:latest', { all: true })).manifest.digest, index.digest);
    await mirror.stop();
  });

  it('an image pulled again keeps living; access records survive a crash and a restart', async () => {
    const first = await world.startMirror({ config: NO_GRACE });
    await pull(first, 'library/kept:1');
    await pull(first, 'library/old:1');
    await sleep(200);
    const firstPullsDone = Date.now();
    process.kill(first.process.pid, 'SIGKILL');
    await first.process.exited;
    await sleep(1100);

    const second = await world.startMirror({ root: first.root, config: NO_GRACE });
    const pulledAgainAt = Date.now();
    await pull(second, 'library/kept:1');
    await sleep(200);
    // A pass one TTL after a moment between the two pulls: old is stale, kept was used since.
    const now = Math.round((firstPullsDone + pulledAgainAt) / 2) + TTL;
    const output = await gc(second, '--now', String(now));
    assert.match(output, new RegExp(`removed manifest library/old@${images.old.manifestDigest} \\(ttl`));
    assert.doesNotMatch(output, /library\/kept/);
    for (const digest of blobsOf(images.old)) assert.equal(hasBlob(second.root, digest), false, digest);
    for (const digest of blobsOf(images.kept)) assert.ok(await stored(second.root, digest), digest);

    const gets = upstreamBlobGets(blobsOf(images.kept));
    await pull(second, 'library/kept:1');
    assert.equal(upstreamBlobGets(blobsOf(images.kept)), gets, 'the kept image is served from the store');
    await second.stop();
  });

  it('two images sharing a layer: evicting one keeps the other whole and pullable', async () => {
    const mirror = await world.startMirror({ config: NO_GRACE });
    await pull(mirror, 'library/sa:1');
    await sleep(200);
    const saDone = Date.now();
    await sleep(1100);
    const sbAt = Date.now();
    await pull(mirror, 'library/sb:1');
    await sleep(200);
    const shared = images.sa.layerDigests[0];
    assert.equal(shared, images.sb.layerDigests[0]);

    const output = await gc(mirror, '--now', String(Math.round((saDone + sbAt) / 2) + TTL));
    assert.match(output, new RegExp(`removed manifest library/sa@${images.sa.manifestDigest}`));
    assert.doesNotMatch(output, new RegExp(`blob ${shared}`), 'the shared layer stays');
    assert.ok(await stored(mirror.root, shared));
    assert.equal(hasBlob(mirror.root, images.sa.layerDigests[1]), false, "sa's own layer goes");
    for (const digest of blobsOf(images.sb)) assert.ok(await stored(mirror.root, digest), digest);

    const gets = upstreamBlobGets(blobsOf(images.sb));
    const sb = await pull(mirror, 'library/sb:1');
    assert.equal(sb.manifest.digest, images.sb.manifestDigest);
    assert.equal(upstreamBlobGets(blobsOf(images.sb)), gets, 'sb entirely from the store');
    // And sa comes back: its own layer from upstream, the shared one from the store.
    const sa = await pull(mirror, 'library/sa:1');
    assert.ok(sa.blobs.has(images.sa.layerDigests[1]));
    await mirror.stop();
  });

  it('the size cap brings the store under the low mark and keeps the most recently used image', async () => {
    const maxsize = 2 * 1024 * 1024;
    const mirror = await world.startMirror({ config: { ...NO_GRACE, storage: { eviction: { grace: '0s', maxsize, highwatermark: 90, lowwatermark: 60 } } } });
    for (const name of ['capa', 'capb', 'capc']) {
      await pull(mirror, `library/${name}:1`);
      await sleep(1100);
    }
    assert.ok(blobsSize(mirror.root) > maxsize * 0.9, 'over the high mark before the pass');
    const output = await gc(mirror);
    assert.match(output, /removed manifest library\/capa@.* \(size, /);
    assert.match(output, /removed manifest library\/capb@.* \(size, /);
    assert.ok(blobsSize(mirror.root) <= maxsize * 0.6, `under the low mark: ${blobsSize(mirror.root)}`);
    for (const digest of blobsOf(images.capc)) assert.ok(await stored(mirror.root, digest), digest);
    const gets = upstreamBlobGets(blobsOf(images.capc));
    await pull(mirror, 'library/capc:1');
    assert.equal(upstreamBlobGets(blobsOf(images.capc)), gets, 'the most recent image is served from the store');
    await mirror.stop();
  });

  it('a pull running while scheduled passes evict completes, and its content verifies', async () => {
    const mirror = await world.startMirror({
      config: { proxy: { tagfreshness: '0', ttl: '1s' }, storage: { delete: { enabled: true }, eviction: { schedule: '* * * * * *', grace: '0s' } } },
    });
    const layer = images.slow.layerDigests[0];
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 1024 * 1024, match: matchRequests('GET', new RegExp(`/blobs/${layer}$`)) });
    try {
      const pulled = await pull(mirror, 'library/slow:1');
      assert.equal(pulled.manifest.digest, images.slow.manifestDigest);
      assert.ok(pulled.blobs.has(layer), 'the slow layer arrived whole (readDirImage verified its digest)');
    } finally {
      world.proxy.setFault(undefined);
    }
    await sleep(1500);
    const passes = mirror.logLines().filter((line) => line.message === 'eviction pass finished');
    assert.ok(passes.length >= 2, `passes ran during the pull: ${passes.length}`);
    const layerCached = mirror.logLines().find((line) => line.message === 'blob cached' && line.digest === layer);
    assert.ok(layerCached, 'the slow layer was stored');
    assert.ok(
      passes.some((line) => line.manifests > 0 && line.timestamp < layerCached.timestamp),
      'a pass evicted the image while its layer was still being fetched',
    );
    assert.equal(mirror.logLines().some((line) => line.message === 'eviction pass failed'), false);
    const metrics = await scrape(`${mirror.url}/metrics`);
    assert.ok(sum(metrics, 'pullmirror_evictions_total', { kind: 'manifest' }) >= 1, 'evictions counted in the metrics');
    assert.ok(sum(metrics, 'pullmirror_evicted_bytes_total') > 0);
    await mirror.stop();
  });

  it('the grace period protects content just pulled, however far the TTL clock is moved', async () => {
    const mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    await pull(mirror, 'library/kept:1');
    const before = storeFiles(mirror.root);
    const pulledAt = Date.now();
    const output = await gc(mirror, '--now', '+1000h');
    assert.match(output, /^0 tags, 0 manifests, 0 blobs/m);
    assert.deepEqual([...storeFiles(mirror.root).keys()], [...before.keys()]);
    // The preview says what waits and until when, instead of a bare "0 to free".
    const held = /^grace period \(storage\.eviction\.grace 10m\) holds back 1 tag, 1 manifest, (\d+) blobs? \([^)]+\): (?:until|released between \S+ and) (\S+)$/m.exec(output);
    assert.ok(held, output);
    assert.equal(Number(held[1]), [...before.keys()].filter((file) => file.includes('blobs/')).length, 'every stored blob is held back');
    const until = Date.parse(held[2]);
    assert.ok(until >= pulledAt + 10 * 60_000 - 60_000 && until <= Date.now() + 10 * 60_000, `released ten minutes after the pull: ${held[2]}`);
    await mirror.stop();
  });

  it('gc --dry-run --now +200h shows what a pass in 200 hours would take: the grace period counts from that moment too', async () => {
    // The defaults: proxy.ttl 168h, storage.eviction.grace 10m; the image was pulled a moment ago.
    const mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    await pull(mirror, 'library/kept:1');
    await sleep(200);
    const before = storeFiles(mirror.root);
    const plan = await gc(mirror, '--dry-run', '--now', '+200h');
    assert.match(plan, /^dry run: 1 tag, 1 manifest, 3 blobs, .* to free; store .* -> 0 B/m, plan);
    assert.match(plan, new RegExp(`would remove manifest library/kept@${images.kept.manifestDigest} \\(ttl, last used `));
    assert.match(plan, /^grace period \(storage\.eviction\.grace 10m\) holds nothing back$/m);
    // Ten minutes from now the grace period still holds what was pulled, and the TTL takes nothing yet.
    assert.match(await gc(mirror, '--dry-run', '--now', '+5m'), /^dry run: 0 tags, 0 manifests, 0 blobs/m);
    assert.deepEqual(storeFiles(mirror.root), before, 'a dry run changes nothing');
    await mirror.stop();
  });

  it('read-only maintenance mode serves the store, passes new content through, stores and evicts nothing', async () => {
    const filled = await world.startMirror({ config: NO_GRACE });
    await pull(filled, 'library/kept:1');
    await filled.stop();
    const readonly = { ...NO_GRACE, storage: { delete: { enabled: true }, eviction: { grace: '0s', schedule: '* * * * * *' }, maintenance: { readonly: { enabled: true } } } };
    const mirror = await world.startMirror({ root: filled.root, config: readonly });
    const before = storeFiles(mirror.root);
    const gets = upstreamBlobGets(blobsOf(images.kept));
    await pull(mirror, 'library/kept:1');
    assert.equal(upstreamBlobGets(blobsOf(images.kept)), gets, 'stored content is served');
    const fresh = await pull(mirror, 'library/sb:1');
    assert.equal(fresh.manifest.digest, images.sb.manifestDigest, 'content not stored passes through');
    assert.match(await gc(mirror, '--now', '+1000h'), /readonly is enabled/);
    await sleep(1200);
    assert.deepEqual(storeFiles(mirror.root), before, 'nothing written, nothing removed, no access times');
    assert.equal(mirror.logLines().some((line) => line.message === 'eviction scheduled'), false);
    await mirror.stop();
  });

  it("a pass removes a repository's _layers links and _access verdict with its manifests, and keeps those of images still held", async () => {
    const mirror = await world.startMirror({ config: { ...NO_GRACE, proxy: { tagfreshness: '0', ttl: '120s' } } });
    const records = (name: string) => {
      const dir = path.join(mirror.root, 'repositories', ...name.split('/'));
      const layers = path.join(dir, '_layers', 'sha256');
      return { access: existsSync(path.join(dir, '_access')), layers: existsSync(layers) ? readdirSync(layers).length : 0 };
    };
    await pull(mirror, 'library/old:1');
    await sleep(200);
    assert.deepEqual(records('library/old'), { access: true, layers: 2 }, 'the pull wrote the verdict and a link per blob of the image');
    const output = await gc(mirror, '--now', '+130s');
    assert.match(output, /^1 tag, 1 manifest, 3 blobs/m);
    assert.deepEqual(records('library/old'), { access: false, layers: 0 }, 'they went with the image');

    await pull(mirror, 'library/kept:1');
    await sleep(200);
    await gc(mirror, '--now', '+60s');
    assert.deepEqual(records('library/kept'), { access: true, layers: 2 }, 'an image that stays keeps them');
    assert.equal((await pull(mirror, 'library/old:1')).manifest.digest, images.old.manifestDigest, 'and the evicted one is pulled again as before');
    await mirror.stop();
  });

  it("a pass removes a repository's kept referrers lists with the manifests they are about, and keeps those of images still held", async () => {
    const mirror = await world.startMirror({ config: { ...NO_GRACE, proxy: { tagfreshness: '0', ttl: '120s' } } });
    /** The subjects a repository keeps a referrers list of (`_referrers/sha256/<hex>`, served while upstream is down). */
    const lists = (name: string) => {
      const dir = path.join(mirror.root, 'repositories', ...name.split('/'), '_referrers', 'sha256');
      return existsSync(dir) ? readdirSync(dir).map((hex) => `sha256:${hex}`).sort() : [];
    };
    const askReferrers = async (name: string, digest: string) => {
      const response = await fetch(`${mirror.url}/v2/${name}/referrers/${digest}`);
      assert.equal(response.status, 200, await response.text());
    };
    await pull(mirror, 'library/old:1');
    await askReferrers('library/old', images.old.manifestDigest);
    assert.deepEqual(lists('library/old'), [images.old.manifestDigest], 'the answer was kept for an outage');
    await sleep(200);
    assert.match(await gc(mirror, '--now', '+130s'), /^1 tag, 1 manifest, 3 blobs/m);
    assert.deepEqual(lists('library/old'), [], 'it went with the image');

    await pull(mirror, 'library/kept:1');
    await askReferrers('library/kept', images.kept.manifestDigest);
    // A list of a manifest the repository never held (asked without a pull) is about nothing stored.
    const never = `sha256:${'e'.repeat(64)}`;
    await askReferrers('library/kept', never);
    assert.deepEqual(lists('library/kept'), [images.kept.manifestDigest, never].sort());
    await sleep(200);
    await gc(mirror, '--now', '+60s');
    assert.deepEqual(lists('library/kept'), [images.kept.manifestDigest], "an image that stays keeps its list; the other's goes");
    await mirror.stop();
  });
});
