/**
 * Everything that reads the store, on S3 (issue 25, item 4): a real RADOS Gateway holds the
 * store, real clients pull through it, and each test checks the bucket itself (listed with the
 * S3 client) besides what the mirror answers: serving (skopeo, a multi-platform index), HEAD,
 * tags, stale serving with the upstream down, eviction by TTL and by size cap with pins (`gc`
 * and its dry run on an S3 config file), `stats`, the browser and eviction preview, capacity,
 * readiness, the fleet panel on one bucket, and the local access clock across a restart.
 * One Ceph for the file; a bucket per test.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { launchChromium } from '../support/chromium.ts';
import { pushImage, pushIndex, randomLayer, type PushedImage, type PushedIndex } from '../support/images.ts';
import { mergeConfig, runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { startRedis } from '../support/redis.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const weight = (image: PushedImage) => image.manifestBytes.length + image.configBytes.length + JSON.parse(image.manifestBytes.toString()).layers.reduce((n: number, l: { size: number }) => n + l.size, 0);

/** `would remove <kind> <item>` lines of a gc dry run, as the preview's items. */
function gcItems(report: string): string[] {
  const items: string[] = [];
  for (const line of report.split('\n')) {
    const match = /^would remove (tag|manifest|blob) (\S+)/.exec(line);
    if (match) items.push(`${match[1]} ${match[2]}`);
  }
  return items.sort();
}

/** Polls readiness (with a deadline) until it answers 200 again. */
async function readyAgain(mirror: RunningMirror): Promise<void> {
  let status = 0;
  for (const deadline = performance.now() + 30_000; performance.now() < deadline; ) {
    const response = await fetch(`${mirror.url}/health/ready`);
    await response.arrayBuffer();
    status = response.status;
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.equal(status, 200, 'ready again once the bucket answers');
}

/** The access clock's journal of the one store that ran on `spool` (`_access-clock/<store id>/journal`), if there is one. */
function journalIn(spool: string): string | undefined {
  const dir = path.join(spool, '_access-clock');
  const ids = existsSync(dir) ? readdirSync(dir).filter((name) => /^[0-9a-f]{16}$/.test(name)) : [];
  assert.ok(ids.length <= 1, `one store on this spool: ${ids.join(', ')}`);
  return ids.length === 1 && existsSync(path.join(dir, ids[0], 'journal')) ? path.join(dir, ids[0], 'journal') : undefined;
}

const hexOf = (digest: string) => digest.slice('sha256:'.length);
const blobKey = (digest: string) => `blobs/sha256/${hexOf(digest).slice(0, 2)}/${hexOf(digest)}`;

describe('everything that reads the store works on S3 (RADOS Gateway)', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  const work = tempDir('pullmirror-s3-store');
  let multi: PushedImage;
  let platforms: PushedImage[];
  let index: PushedIndex;
  let small: PushedImage;
  let pinned: PushedImage;

  before(async () => {
    [world, s3] = await Promise.all([startWorld(), startS3()]);
    const reg = world.registry.url;
    multi = await pushImage(reg, PUSHER, { name: 'library/layered', tag: 'v1', layers: [randomLayer('s3s-0', 2 * 1024 * 1024), randomLayer('s3s-1', 64 * 1024), randomLayer('s3s-2', 3000)], format: 'docker' });
    platforms = [
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('s3s-amd64', 40 * 1024)], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('s3s-arm64', 30 * 1024)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, format: 'oci' }),
    ];
    index = await pushIndex(reg, PUSHER, { name: 'team/multi', tag: 'latest', images: platforms, format: 'oci-index' });
    small = await pushImage(reg, PUSHER, { name: 'library/small', tag: '1', layers: [randomLayer('s3s-small', 20 * 1024)], format: 'docker' });
    pinned = await pushImage(reg, PUSHER, { name: 'library/pinned', tag: '1', layers: [randomLayer('s3s-pinned', 25 * 1024)], format: 'docker' });
  });
  after(async () => {
    await world?.close();
    await s3?.close();
    await work.cleanup();
  });

  /**
   * The storage section of an instance on `bucket` under `prefix`, its spool (and with it the
   * access clock's journal when there is no Redis) in `local`/spool.
   */
  const onS3 = (bucket: string, local: string, prefix = '') => ({
    storage: {
      s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, rootdirectory: prefix, spooldirectory: path.join(local, 'spool') },
    },
  });

  async function keysOf(bucket: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.client().send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key ?? ''));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  let pulls = 0;
  async function pull(mirror: RunningMirror, ref: string, all = false) {
    const dest = path.join(work.path, `pull-${pulls++}`);
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${dest}`, { all });
    return readDirImage(dest);
  }

  /** A config file for `gc` / `stats` naming the same store as a mirror's. */
  function configFile(name: string, config: Record<string, any>): string {
    const file = path.join(work.path, `${name}.yml`);
    writeFileSync(file, stringify(mergeConfig({ version: '0.1', proxy: { remoteurl: world.proxy.url } }, config)));
    return file;
  }

  it('serves a multi-layer image and a multi-platform index to skopeo from the bucket; HEAD of blobs and manifests; tags list', async () => {
    const bucket = await s3.createBucket('serve');
    const local = path.join(work.path, 'serve');
    const mirror = await world.startMirror({ config: onS3(bucket, local, '/reg') });
    try {
      const image = await pull(mirror, 'library/layered:v1');
      assert.equal(image.manifest.digest, multi.manifestDigest);
      for (const digest of multi.layerDigests) assert.ok(image.blobs.has(digest), digest);
      await pull(mirror, 'team/multi:latest', true);

      const keys = await keysOf(bucket);
      for (const digest of [multi.manifestDigest, multi.configDigest, ...multi.layerDigests, index.digest, ...platforms.flatMap((p) => [p.manifestDigest, p.configDigest, ...p.layerDigests])]) {
        assert.ok(keys.includes(`reg/${blobKey(digest)}`), `${digest} under the prefix in the bucket`);
      }
      assert.ok(keys.some((key) => key.startsWith('reg/repositories/team/multi/_manifests/tags/latest') || key.startsWith('reg/repositories/team/multi/_tags/latest')), `the tag in the bucket: ${keys.filter((k) => k.includes('team/multi')).join(' ')}`);

      // HEAD of a blob and a manifest, answered from the bucket with the upstream refusing.
      world.proxy.setFault({ kind: 'status', status: 503, match: (_method, url) => /\/(blobs|manifests)\//.test(url) });
      try {
        const layer = multi.layerDigests[0];
        const blob = await fetch(`${mirror.url}/v2/library/layered/blobs/${layer}`, { method: 'HEAD' });
        assert.equal(blob.status, 200);
        assert.equal(blob.headers.get('docker-content-digest'), layer);
        assert.equal(Number(blob.headers.get('content-length')), JSON.parse(multi.manifestBytes.toString()).layers[0].size);
        const manifest = await fetch(`${mirror.url}/v2/team/multi/manifests/${index.digest}`, { method: 'HEAD', headers: { accept: index.mediaType } });
        assert.equal(manifest.status, 200);
        assert.equal(manifest.headers.get('docker-content-digest'), index.digest);
        assert.equal(Number(manifest.headers.get('content-length')), index.bytes.length);
        const missing = await fetch(`${mirror.url}/v2/library/layered/blobs/sha256:${'0'.repeat(64)}`, { method: 'HEAD' });
        assert.notEqual(missing.status, 200);
      } finally {
        world.proxy.setFault(undefined);
      }
      const tags = await (await fetch(`${mirror.url}/v2/team/multi/tags/list`)).json();
      assert.deepEqual(tags, { name: 'team/multi', tags: ['latest'] });
    } finally {
      await mirror.stop();
    }
  });

  it('with the upstream down, an instance on an empty spool serves the cached tag from the bucket with Warning: 110', async () => {
    const bucket = await s3.createBucket('stale');
    const first = await world.startMirror({ config: onS3(bucket, path.join(work.path, 'stale-a')) });
    await pull(first, 'library/small:1');
    await first.stop();
    world.proxy.setFault({ kind: 'status', status: 503, match: () => true });
    try {
      // tagfreshness 0: every tag GET asks upstream first; it is down, so the bucket's copy is served stale.
      const second = await world.startMirror({ config: mergeConfig(onS3(bucket, path.join(work.path, 'stale-b')), { proxy: { tagfreshness: '0' } }) });
      try {
        const response = await fetch(`${second.url}/v2/library/small/manifests/1`, { headers: { accept: small.mediaType } });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('docker-content-digest'), small.manifestDigest);
        assert.match(response.headers.get('warning') ?? '', /^110 /);
        assert.deepEqual(Buffer.from(await response.arrayBuffer()), small.manifestBytes);
        const image = await pull(second, 'library/small:1');
        assert.equal(image.manifest.digest, small.manifestDigest);
      } finally {
        await second.stop();
      }
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('gc on an S3 config file: the dry run names what TTL would take, the pass removes it from the bucket and keeps the pinned image', async () => {
    const bucket = await s3.createBucket('ttl');
    const local = path.join(work.path, 'ttl');
    const namespace = new URL(world.proxy.url).host;
    const config = mergeConfig(onS3(bucket, local, '/store'), {
      proxy: { ttl: '1h' },
      storage: { eviction: { grace: '0s', keep: [`${namespace}/library/pinned:*`] } },
    });
    const mirror = await world.startMirror({ config });
    await pull(mirror, 'library/small:1');
    await pull(mirror, 'library/pinned:1');
    await mirror.stop();
    const file = configFile('ttl', config);
    const before = await keysOf(bucket);
    const smallKeys = [small.manifestDigest, small.configDigest, ...small.layerDigests].map((d) => `store/${blobKey(d)}`);
    const pinnedKeys = [pinned.manifestDigest, pinned.configDigest, ...pinned.layerDigests].map((d) => `store/${blobKey(d)}`);
    for (const key of [...smallKeys, ...pinnedKeys]) assert.ok(before.includes(key), key);

    const early = await runPullmirror(['gc', '--dry-run', file]);
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stdout, /dry run: 0 tags, 0 manifests, 0 blobs/);

    const dry = await runPullmirror(['gc', '--dry-run', '--now', '+2h', file]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`would remove manifest library/small@${small.manifestDigest}`));
    for (const digest of [small.configDigest, ...small.layerDigests]) assert.match(dry.stdout, new RegExp(`would remove blob ${digest}`));
    assert.doesNotMatch(dry.stdout, /library\/pinned/);
    assert.match(dry.stdout, /storage\.eviction\.keep holds 1 tag and 1 manifest/);
    assert.deepEqual((await keysOf(bucket)).sort(), before.sort(), 'a dry run deletes nothing from the bucket');

    const real = await runPullmirror(['gc', '--now', '+2h', file]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, new RegExp(`removed manifest library/small@${small.manifestDigest}`));
    const afterKeys = await keysOf(bucket);
    for (const key of smallKeys) assert.ok(!afterKeys.includes(key), `${key} gone from the bucket`);
    for (const key of pinnedKeys) assert.ok(afterKeys.includes(key), `${key} pinned, still in the bucket`);
    assert.ok(!afterKeys.some((key) => key.includes('repositories/library/small/_manifests/tags/1')), 'the tag gone from the bucket');
  });

  it('gc by size cap on S3 removes the least recently used image from the bucket; stats prints the bucket\'s figures', async () => {
    const bucket = await s3.createBucket('cap');
    const local = path.join(work.path, 'cap');
    const base = onS3(bucket, local, '/capped');
    const mirror = await world.startMirror({ config: base });
    await pull(mirror, 'library/small:1');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await pull(mirror, 'library/pinned:1');
    await mirror.stop();

    // A download in flight of another instance in the spool (the journal of the access clock is there too, and is not one).
    mkdirSync(path.join(local, 'spool', 'otherhost-4242-0123abcd'), { recursive: true });
    writeFileSync(path.join(local, 'spool', 'otherhost-4242-0123abcd', 'partial'), Buffer.alloc(1000));
    assert.ok(journalIn(path.join(local, 'spool')));
    const statsFile = configFile('cap-stats', base);
    const figures = await runPullmirror(['stats', '--json', statsFile]);
    assert.equal(figures.code, 0, figures.stderr);
    const json = JSON.parse(figures.stdout);
    assert.equal(json.root, `s3://${bucket}/capped`);
    assert.equal(json.blobs, 6);
    assert.equal(json.manifests, 2);
    assert.equal(json.bytes, weight(small) + weight(pinned));
    assert.equal(json.repositories, 2);
    assert.equal(json.tags, 2);
    assert.deepEqual([json.tempFiles, json.tempBytes], [1, 1000], 'temporary files: the spool\'s');
    const text = await runPullmirror(['stats', statsFile]);
    assert.match(text.stdout, new RegExp(`^store\\s+s3://${bucket}/capped$`, 'm'));

    // A cap the store is over: the older image (small) goes, the newer one stays.
    const cap = weight(pinned) + 2048;
    const file = configFile('cap', mergeConfig(base, { storage: { eviction: { grace: '0s', maxsize: cap, highwatermark: 100, lowwatermark: 100 } } }));
    const dry = await runPullmirror(['gc', '--dry-run', file]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`would remove manifest library/small@${small.manifestDigest}`));
    assert.doesNotMatch(dry.stdout, /library\/pinned@/);
    const real = await runPullmirror(['gc', file]);
    assert.equal(real.code, 0, real.stderr);
    const keys = await keysOf(bucket);
    assert.ok(!keys.includes(`capped/${blobKey(small.layerDigests[0])}`), 'the older image\'s layer gone from the bucket');
    assert.ok(keys.includes(`capped/${blobKey(pinned.layerDigests[0])}`), 'the newer image\'s layer stays');
    const afterStats = JSON.parse((await runPullmirror(['stats', '--json', statsFile])).stdout);
    assert.equal(afterStats.bytes, weight(pinned));
  });

  it('the scheduled pass (storage.delete.enabled) evicts by TTL from the bucket', async () => {
    const bucket = await s3.createBucket('sched');
    const mirror = await world.startMirror({
      config: mergeConfig(onS3(bucket, path.join(work.path, 'sched')), { proxy: { ttl: '3s', tagfreshness: '0' }, storage: { delete: { enabled: true }, eviction: { grace: '0s', schedule: '*/2 * * * * *' } } }),
    });
    try {
      await pull(mirror, 'library/small:1');
      assert.ok((await keysOf(bucket)).includes(blobKey(small.layerDigests[0])));
      let keys: string[] = [];
      for (const deadline = performance.now() + 30_000; performance.now() < deadline; ) {
        keys = await keysOf(bucket);
        if (!keys.includes(blobKey(small.layerDigests[0]))) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      for (const digest of [small.manifestDigest, small.configDigest, ...small.layerDigests]) assert.ok(!keys.includes(blobKey(digest)), `${digest} evicted from the bucket`);
      assert.ok(!keys.some((key) => key.startsWith('repositories/library/small/_tags/')), keys.join(' '));
      // The pass is listed once it has ended (its deletes are seen in the bucket before that).
      let passes = '';
      for (const deadline = performance.now() + 15_000; !passes.includes(small.manifestDigest) && performance.now() < deadline; ) {
        passes = await (await fetch(`${mirror.url}/api/eviction`)).text();
        if (!passes.includes(small.manifestDigest)) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.ok(passes.includes(small.manifestDigest), 'the pass that removed it is listed');
    } finally {
      await mirror.stop();
    }
  });

  it('the local access clock on S3 survives a restart: gc reads the last use from it, not the object\'s upload time', async () => {
    const bucket = await s3.createBucket('clock');
    const local = path.join(work.path, 'clock');
    const config = mergeConfig(onS3(bucket, local), { proxy: { ttl: '1h', tagfreshness: '1h' }, storage: { eviction: { grace: '0s' } } });
    const first = await world.startMirror({ config });
    await pull(first, 'library/small:1');
    const filledAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await first.stop();
    const second = await world.startMirror({ config });
    await pull(second, 'library/small:1');
    const usedAt = Date.now();
    await second.stop();
    const third = await world.startMirror({ config });
    await third.stop();

    const file = configFile('clock', config);
    assert.ok(journalIn(path.join(local, 'spool')), 'the journal is in the spool directory, under the store\'s id');
    const dry = await runPullmirror(['gc', '--dry-run', '--now', '+61m', file]);
    assert.equal(dry.code, 0, dry.stderr);
    const line = dry.stdout.split('\n').find((l) => l.includes(`manifest library/small@${small.manifestDigest}`));
    assert.ok(line, dry.stdout);
    const lastUsed = Date.parse(/last used (\S+)\)/.exec(line)![1]);
    assert.ok(lastUsed > filledAt + 2000 && lastUsed <= usedAt, `last used ${new Date(lastUsed).toISOString()}: the second pull's time, kept across restarts`);
  });

  it('/api/status, metrics, the browser and eviction preview read the bucket; readiness follows the bucket', async (t) => {
    const bucket = await s3.createBucket('ops');
    const local = path.join(work.path, 'ops');
    const namespace = new URL(world.proxy.url).host;
    // A size cap the two images exceed (the layered one is the least recently used): the preview has something to name.
    const maxSize = weight(pinned) + 4096;
    const mirror = await world.startMirror({
      config: mergeConfig(onS3(bucket, local), { proxy: { ttl: '1h' }, storage: { eviction: { grace: '0s', maxsize: maxSize, keep: [`${namespace}/library/pinned:*`] } } }),
    });
    try {
      await pull(mirror, 'library/layered:v1');
      await pull(mirror, 'library/pinned:1');
      const total = weight(multi) + weight(pinned);

      // The live figures follow each commit a moment later: wait (with a deadline) for the last one.
      let status = await (await fetch(`${mirror.url}/api/status`)).json();
      for (const deadline = performance.now() + 15_000; status.store.bytes !== total && performance.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        status = await (await fetch(`${mirror.url}/api/status`)).json();
      }
      // Capacity is the bucket's content (the walk of its keys), not a statfs of some local disk: no free space to show.
      assert.equal(status.store.bytes, total);
      assert.equal(status.store.blobs, 8);
      assert.equal(status.capacity.bytes, total);
      assert.equal(status.capacity.maxSize, maxSize);
      assert.equal(status.capacity.disk, null);
      assert.equal(status.capacity.driver, 's3');
      const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
      assert.match(metrics, new RegExp(`^pullmirror_store_bytes ${total}$`, 'm'));

      const repositories = await (await fetch(`${mirror.url}/api/browse/repositories`)).json();
      assert.deepEqual(repositories.items.map((r: { name: string }) => r.name), ['library/layered', 'library/pinned']);
      const tags = await (await fetch(`${mirror.url}/api/browse/tags?repository=library/layered`)).json();
      assert.deepEqual(tags.items.map((row: { tag: string; digest: string }) => [row.tag, row.digest]), [['v1', multi.manifestDigest]]);
      const manifest = await (await fetch(`${mirror.url}/api/browse/manifest?repository=library/layered&digest=${multi.manifestDigest}`)).json();
      assert.equal(manifest.summary.size, weight(multi));

      // The preview names what gc --dry-run on the same config (the same bucket) would remove: the layered image, not the pinned one.
      const preview = await (await fetch(`${mirror.url}/api/eviction/preview`)).json();
      const previewed = [...preview.tags.map((tag: { repository: string; tag: string }) => `tag ${tag.repository}:${tag.tag}`), ...preview.manifests.map((m: { repository: string; digest: string }) => `manifest ${m.repository}@${m.digest}`), ...preview.blobs.map((b: { digest: string }) => `blob ${b.digest}`)].sort();
      const dry = await runPullmirror(['gc', '--dry-run', mirror.configFile]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.deepEqual(previewed, gcItems(dry.stdout));
      assert.ok(previewed.includes(`manifest library/layered@${multi.manifestDigest}`), previewed.join('\n'));
      for (const digest of multi.layerDigests) assert.ok(previewed.includes(`blob ${digest}`), digest);
      assert.ok(!previewed.some((item) => item.includes('library/pinned') || item.endsWith(pinned.manifestDigest)));
      assert.deepEqual(preview.pinnedCounts, { tags: 1, manifests: 1 });
      assert.equal(preview.sizeBefore, total);

      if (requireBinary('chromium', t)) {
        const browser = await launchChromium();
        try {
          const page = await browser.newPage();
          const errors: string[] = [];
          page.on('pageerror', (error) => errors.push(error.message));
          await page.goto(`${mirror.url}/#/browse/${namespace}/library/layered`);
          await page.waitForSelector('#browse-tags tr[data-tag="v1"]', { timeout: 15_000 });
          assert.match(await page.locator('#browse-tags tr[data-tag="v1"]').innerText(), new RegExp(hexOf(multi.manifestDigest).slice(0, 12)));
          // The overview: the bucket's size against the cap; no free space of a disk (a bucket has none to tell).
          await page.goto(`${mirror.url}/`);
          await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
          await page.waitForFunction(() => document.getElementById('cap-used')!.dataset.value !== '', undefined, { timeout: 15_000 });
          assert.match(await page.locator('#cap-detail').innerText(), /^2\.\d MiB of \d+(\.\d)? KiB\n/);
          assert.deepEqual([await page.locator('#disk-free').innerText(), await page.locator('#disk-detail').innerText()], ['no limit', 'the store is a bucket']);
          assert.deepEqual(errors, []);
        } finally {
          await browser.close();
        }
      }

      assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
      // radosgw hung: readiness says the storage check fails, and comes back once it answers again.
      process.kill(s3.rgwPid(), 'SIGSTOP');
      let hung: { status: number; body: string };
      try {
        const deadline = performance.now() + 40_000;
        do {
          const response = await fetch(`${mirror.url}/health/ready`);
          hung = { status: response.status, body: await response.text() };
          if (hung.status === 503) break;
          await new Promise((resolve) => setTimeout(resolve, 500));
        } while (performance.now() < deadline);
      } finally {
        process.kill(s3.rgwPid(), 'SIGCONT');
      }
      assert.equal(hung.status, 503, hung.body);
      assert.equal(JSON.parse(hung.body).checks.storage.ok, false, hung.body);
      t.diagnostic(hung.body);
      await readyAgain(mirror);
    } finally {
      await mirror.stop();
    }
  });

  it('readiness is 503 naming the storage check when the bucket is deleted', async (t) => {
    const bucket = await s3.createBucket('gone');
    const mirror = await world.startMirror({ config: onS3(bucket, path.join(work.path, 'gone')) });
    try {
      assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
      const client = s3.client();
      const keys = await keysOf(bucket);
      if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }));
      await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      let last = { status: 0, body: '' };
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline) {
        const response = await fetch(`${mirror.url}/health/ready`);
        last = { status: response.status, body: await response.text() };
        if (last.status === 503) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.equal(last.status, 503, last.body);
      assert.match(JSON.parse(last.body).checks.storage.error, /NoSuchBucket/);
      t.diagnostic(last.body);
    } finally {
      await mirror.stop();
    }
  });

  it('/api/fleet lists two instances on one bucket and one Redis; a pull through one shows in the other\'s browser; gc reads the access clock in Redis', async () => {
    const bucket = await s3.createBucket('fleet');
    const redis = await startRedis();
    try {
      const member = (name: string) => mergeConfig(onS3(bucket, path.join(work.path, name)), { proxy: { ttl: '1h' }, storage: { eviction: { grace: '0s' } }, redis: { addr: redis.addr, dialtimeout: '500ms' } });
      const [a, b] = await Promise.all([world.startMirror({ config: member('fleet-a') }), world.startMirror({ config: member('fleet-b') })]);
      try {
        await pull(a, 'library/small:1');
        const deadline = performance.now() + 20_000;
        let fleet: { instances: { address: string; state?: string }[] } = { instances: [] };
        while (performance.now() < deadline) {
          fleet = await (await fetch(`${b.url}/api/fleet`)).json();
          if (fleet.instances.length === 2) break;
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        assert.equal(fleet.instances.length, 2, JSON.stringify(fleet));
        const repositories = await (await fetch(`${b.url}/api/browse/repositories`)).json();
        assert.deepEqual(repositories.items.map((r: { name: string }) => r.name), ['library/small'], 'B browses what A filled into the bucket');

        // gc on B's config (its own empty spool, so no local journal): the clock is Redis's, keyed by the bucket's store id.
        const fresh = await runPullmirror(['gc', '--dry-run', '--now', '+30m', b.configFile]);
        assert.equal(fresh.code, 0, fresh.stderr);
        assert.match(fresh.stdout, /dry run: 0 tags, 0 manifests, 0 blobs/);
        const due = await runPullmirror(['gc', '--now', '+2h', b.configFile]);
        assert.equal(due.code, 0, due.stderr);
        assert.match(due.stdout, new RegExp(`removed manifest library/small@${small.manifestDigest}`));
        assert.ok(!existsSync(path.join(work.path, 'fleet-b', 'spool', '_access-clock')), 'no local journal with Redis');
        const keys = await keysOf(bucket);
        for (const digest of [small.manifestDigest, ...small.layerDigests]) assert.ok(!keys.includes(blobKey(digest)), `${digest} gone from the bucket`);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    } finally {
      await redis.close();
    }
  });
});

