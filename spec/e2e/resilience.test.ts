import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { pushBlob, pushImage, randomLayer, seededBytes, sha256OfBody, type PushedImage } from '../support/images.ts';
import { startMirror, tempFiles, type RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { blobPath, stored } from '../support/store.ts';
import { mountTmpfs } from '../support/tmpfs.ts';
import { dockerHubRateLimit, matchRequests } from '../support/upstream-proxy.ts';
import { MIRROR_ACCOUNT, missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

/** Short upstream timeouts and retry backoff, so failures show in a test's time. */
const FAST = { proxy: { tagfreshness: '0', timeouts: { connect: '1s', headers: '1s', bodyidle: '2s' }, resume: { retries: 3, backoff: '50ms' } } };

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

describe('resilience: upstream failures, limits, interruptions, crashes, a full store', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let image: PushedImage;

  before(async () => {
    world = await startWorld();
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/app', tag: 'stable', layers: [randomLayer('app-0', 100_000)], format: 'docker' });
    mirror = await world.startMirror({ config: FAST });
    // Warm the tag, its manifest and config (and teach the mirror the upstream's auth challenge).
    const warm = await fetch(`${mirror.url}/v2/library/app/manifests/stable`);
    assert.equal(warm.status, 200);
    await warm.arrayBuffer();
    await (await fetch(`${mirror.url}/v2/library/app/blobs/${image.configDigest}`)).arrayBuffer();
  });

  after(async () => {
    await world?.close();
  });

  it('serves a cached tag stale when upstream answers 503, saying so in a header and the log', async () => {
    world.proxy.setFault({ kind: 'status', status: 503, match: matchRequests('*', /\/manifests\//) });
    try {
      const response = await fetch(`${mirror.url}/v2/library/app/manifests/stable`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-pullmirror-cache'), 'stale');
      assert.match(response.headers.get('warning') ?? '', /^110 /);
      assert.equal(response.headers.get('docker-content-digest'), image.manifestDigest);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), image.manifestBytes);
      assert.ok(mirror.logLines().some((line) => line.message === 'serving stale tag' && line.tag === 'stable'));
      const unknown = await fetch(`${mirror.url}/v2/library/never-pulled/manifests/latest`);
      assert.equal(unknown.status, 503);
      assert.equal((await unknown.json()).errors[0].code, 'UNAVAILABLE');
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('keeps serving cached content when upstream is down, and fails uncached requests promptly with 502', async () => {
    world.proxy.setFault({ kind: 'reset', match: () => true });
    try {
      const tag = await fetch(`${mirror.url}/v2/library/app/manifests/stable`);
      assert.equal(tag.status, 200);
      assert.equal(tag.headers.get('x-pullmirror-cache'), 'stale');
      await tag.arrayBuffer();
      const byDigest = await fetch(`${mirror.url}/v2/library/app/manifests/${image.manifestDigest}`);
      assert.equal(byDigest.status, 200, 'content addressed by digest is always served when cached');
      await byDigest.arrayBuffer();
      const config = await fetch(`${mirror.url}/v2/library/app/blobs/${image.configDigest}`);
      assert.equal(config.status, 200);
      assert.deepEqual(Buffer.from(await config.arrayBuffer()), image.configBytes);
      const { value: cold, ms } = await timed(() => fetch(`${mirror.url}/v2/library/app/blobs/${image.layerDigests[0]}`));
      assert.equal(cold.status, 502);
      assert.equal((await cold.json()).errors[0].code, 'UPSTREAM_UNAVAILABLE');
      assert.ok(ms < 3000, `answered in ${ms} ms`);
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('passes a 429 on as TOOMANYREQUESTS with Retry-After when nothing is cached, and serves cached tags meanwhile', async () => {
    world.proxy.setFault({ ...dockerHubRateLimit(42), match: matchRequests('*', /\/manifests\//) });
    try {
      const limited = await fetch(`${mirror.url}/v2/library/other/manifests/latest`);
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get('retry-after'), '42');
      assert.equal((await limited.json()).errors[0].code, 'TOOMANYREQUESTS');
      const cached = await fetch(`${mirror.url}/v2/library/app/manifests/stable`);
      assert.equal(cached.status, 200);
      assert.equal(cached.headers.get('x-pullmirror-cache'), 'stale');
      await cached.arrayBuffer();
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('answers 504 promptly when upstream does not answer in time', async () => {
    world.proxy.setFault({ kind: 'delay', ms: 4000, match: matchRequests('*', /\/manifests\//), times: 1 });
    const { value: response, ms } = await timed(() => fetch(`${mirror.url}/v2/library/slow/manifests/latest`));
    world.proxy.setFault(undefined);
    assert.equal(response.status, 504);
    assert.equal((await response.json()).errors[0].code, 'UPSTREAM_TIMEOUT');
    assert.ok(ms < 3000, `answered in ${ms} ms (headers timeout 1 s)`);
  });

  it('serves a tag checked within the freshness window without asking upstream again', async () => {
    const fresh = await world.startMirror({ config: { proxy: { tagfreshness: '30s' } } });
    world.proxy.reset();
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${fresh.url}/v2/library/app/manifests/stable`);
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    assert.equal(world.proxy.count('HEAD', /\/manifests\/stable$/), 1, 'window 30s: one check');
    // A fresh mirror: the main one saw the 429 above and spares the upstream for its window.
    const always = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    world.proxy.reset();
    for (let i = 0; i < 3; i++) await (await fetch(`${always.url}/v2/library/app/manifests/stable`)).arrayBuffer();
    assert.equal(world.proxy.count('HEAD', /\/manifests\/stable$/), 3, 'window 0: a check per request');
  });

  it('reads Docker Hub’s ratelimit-remaining and, when it is low, serves cached tags without asking', async () => {
    const spare = await world.startMirror({ config: { proxy: { tagfreshness: '0', ratelimitreserve: 5 } } });
    world.proxy.setFault({
      kind: 'headers',
      headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '3;w=21600' },
      match: matchRequests('*', /\/manifests\//),
    });
    try {
      const first = await fetch(`${spare.url}/v2/library/app/manifests/stable`);
      assert.equal(first.status, 200);
      await first.arrayBuffer();
      assert.ok(spare.logLines().some((line) => line.message === 'upstream rate limit' && line.remaining === 3 && line.limit === 100));
      world.proxy.reset();
      const second = await fetch(`${spare.url}/v2/library/app/manifests/stable`);
      assert.equal(second.status, 200);
      assert.equal(second.headers.get('x-pullmirror-cache'), 'stale');
      await second.arrayBuffer();
      assert.equal(world.proxy.count('*', /\/manifests\//), 0, 'no upstream request for a cached tag');
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('resumes an interrupted upstream transfer with Range; every client gets the verified bytes', async () => {
    const bytes = seededBytes('interrupted', 6 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'drop-after', bytes: 1024 * 1024, match: matchRequests('GET', new RegExp(`/blobs/${digest}$`)), times: 1 });
    const digests = await Promise.all([0, 1, 2].map(async () => sha256OfBody(await fetch(`${mirror.url}/v2/library/app/blobs/${digest}`))));
    assert.deepEqual(digests, [digest, digest, digest]);
    const gets = world.proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(digest));
    assert.equal(gets.length, 2, 'the first transfer and one resumption');
    assert.match(gets[1].range ?? '', /^bytes=[1-9]\d*-$/, 'resumed from the bytes it had');
    assert.ok(await stored(mirror.root, digest), 'stored once verified');
    assert.ok(mirror.logLines().some((line) => line.message === 'upstream transfer interrupted; resuming' && line.digest === digest));
  });

  it('starts the fill over cleanly when the upstream cannot resume', async () => {
    const bytes = seededBytes('no-resume', 4 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
    world.proxy.reset();
    const match = matchRequests('GET', new RegExp(`/blobs/${digest}$`));
    world.proxy.setFault({ kind: 'drop-after', bytes: 1024 * 1024, match, times: 1 });
    world.proxy.addFault({ kind: 'no-range', match, times: 1 });
    const response = await fetch(`${mirror.url}/v2/library/app/blobs/${digest}`);
    assert.equal(await sha256OfBody(response), digest);
    assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${digest}$`)), 2);
    assert.ok(await stored(mirror.root, digest));
    const again = await fetch(`${mirror.url}/v2/library/app/blobs/${digest}`);
    assert.equal(again.headers.get('x-pullmirror-cache'), 'hit');
    assert.equal(await sha256OfBody(again), digest);
  });

  it('after SIGKILL mid-download, restarts without the partial blob and removes its temporary files', async () => {
    const store = tempDir('pullmirror-crash');
    const bytes = seededBytes('crash', 4 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
    const first = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: path.join(store.path, 'store'), config: FAST });
    world.proxy.setFault({ kind: 'stall-after', bytes: 1024 * 1024, match: matchRequests('GET', new RegExp(`/blobs/${digest}$`)) });
    const client = fetch(`${first.url}/v2/library/app/blobs/${digest}`).then((r) => r.arrayBuffer());
    client.catch(() => {});
    const deadline = performance.now() + 10_000;
    while (tempFiles(first.root).length === 0 && performance.now() < deadline) await sleep(50);
    assert.equal(tempFiles(first.root).length, 1, `a download in flight; mirror log:\n${first.process.readLog()}`);
    process.kill(first.process.pid, 'SIGKILL');
    await first.process.exited;
    await assert.rejects(client);
    world.proxy.setFault(undefined);
    const second = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: first.root, config: FAST });
    try {
      assert.deepEqual(tempFiles(second.root), [], 'temporary files of the dead instance removed at start');
      assert.equal(existsSync(blobPath(second.root, digest)), false, 'no partial blob');
      const head = await fetch(`${second.url}/v2/library/app/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.headers.get('x-pullmirror-cache'), 'miss');
      assert.equal(await sha256OfBody(await fetch(`${second.url}/v2/library/app/blobs/${digest}`)), digest);
    } finally {
      await second.stop();
      await store.cleanup();
    }
  });

  it('on SIGTERM stops accepting, lets the transfers in flight finish, then exits', async () => {
    const bytes = seededBytes('graceful', 3 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
    const stopping = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, config: FAST });
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * 1024 * 1024, match: matchRequests('GET', new RegExp(`/blobs/${digest}$`)) });
    try {
      // Four connections: the kernel spreads them over the mirror's listening sockets
      // (http.acceptors), and a transfer must finish whichever socket accepted it.
      const bodies = await Promise.all([0, 1, 2, 3].map(async () => {
        const response = await fetch(`${stopping.url}/v2/library/app/blobs/${digest}`);
        assert.equal(response.status, 200);
        return { done: sha256OfBody(response) };
      }));
      await sleep(300);
      process.kill(stopping.process.pid, 'SIGTERM');
      await sleep(200);
      await assert.rejects(fetch(`${stopping.url}/v2/`), 'no new connections once stopping');
      assert.deepEqual(await Promise.all(bodies.map((body) => body.done)), Array(4).fill(digest), 'the transfers in flight complete');
      const exit = await stopping.process.exited;
      assert.equal(exit.code, 0);
      assert.ok(await stored(stopping.root, digest), 'the fill finished before exit');
    } finally {
      world.proxy.setFault(undefined);
      await stopping.stop();
    }
  });

  it('passes a blob through uncached when it would eat into the free space the store keeps', async () => {
    const keeper = await world.startMirror({ config: { ...FAST, storage: { filesystem: { minfreespace: '1000TB' } } } });
    const bytes = seededBytes('no-room', 3 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
    const [a, b] = await Promise.all([0, 1].map(async () => {
      const response = await fetch(`${keeper.url}/v2/library/app/blobs/${digest}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-pullmirror-cache'), 'miss');
      return sha256OfBody(response);
    }));
    assert.deepEqual([a, b], [digest, digest]);
    assert.equal(existsSync(blobPath(keeper.root, digest)), false, 'not stored');
    assert.deepEqual(tempFiles(keeper.root), [], 'no temporary file left');
    assert.ok(keeper.logLines().some((line) => line.message === 'store not writable; serving uncached from upstream'));
    assert.equal((await fetch(`${keeper.url}/v2/`)).status, 200, 'still running');
  });

  describe('a full or read-only store', () => {
    let disk: Awaited<ReturnType<typeof mountTmpfs>>;
    const area = tempDir('pullmirror-tmpfs');
    let small: RunningMirror;

    before(async () => {
      disk = await mountTmpfs(path.join(area.path, 'disk'), 4);
    });
    after(async () => {
      await small?.stop();
      if (typeof disk !== 'string') await disk.unmount();
      await area.cleanup();
    });

    it('passes a blob larger than the free space through to the client, uncached, and keeps running', async (t) => {
      if (typeof disk === 'string') return t.skip(disk);
      // The tmpfs is the store's real limit here: keep only 512 KiB of it free.
      small = await startMirror({
        remoteurl: world.proxy.url,
        ...MIRROR_ACCOUNT,
        root: path.join(disk.path, 'store'),
        config: { ...FAST, storage: { filesystem: { minfreespace: '512KB' } } },
      });
      const bytes = seededBytes('too-big', 8 * 1024 * 1024);
      const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/app', bytes);
      const response = await fetch(`${small.url}/v2/library/app/blobs/${digest}`);
      assert.equal(response.status, 200);
      assert.equal(await sha256OfBody(response), digest);
      assert.equal(existsSync(blobPath(small.root, digest)), false);
      assert.deepEqual(tempFiles(small.root), []);
      const layer = await fetch(`${small.url}/v2/library/app/blobs/${image.layerDigests[0]}`);
      assert.equal(await sha256OfBody(layer), image.layerDigests[0]);
      assert.ok(await stored(small.root, image.layerDigests[0]), 'what fits is still cached');
    });

    it('serves from upstream when the store turns read-only, with nothing half-written', async (t) => {
      if (typeof disk === 'string') return t.skip(disk);
      assert.ok(small, 'the previous test started the mirror');
      await disk.remountReadOnly();
      const other = await pushImage(world.registry.url, PUSHER, { name: 'library/readonly', tag: 'v1', layers: [randomLayer('ro-0', 50_000)], format: 'oci' });
      const manifest = await fetch(`${small.url}/v2/library/readonly/manifests/v1`);
      assert.equal(manifest.status, 200);
      assert.deepEqual(Buffer.from(await manifest.arrayBuffer()), other.manifestBytes);
      const layer = await fetch(`${small.url}/v2/library/readonly/blobs/${other.layerDigests[0]}`);
      assert.equal(layer.status, 200);
      assert.equal(await sha256OfBody(layer), other.layerDigests[0]);
      assert.equal(existsSync(blobPath(small.root, other.layerDigests[0])), false);
      assert.equal((await fetch(`${small.url}/v2/`)).status, 200, 'still running');
    });

    it('a store read-only from the start (a read-only volume): manifests and blobs pass through, the cause logged as EROFS', async (t) => {
      if (typeof disk === 'string') return t.skip(disk);
      assert.ok(small, 'the store was remounted read-only by the previous test');
      await small.stop();
      // A fresh store directory can no longer be made there: the temp area is missing too.
      const fresh = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: path.join(disk.path, 'store', 'never-made'), config: FAST });
      try {
        const other = await pushImage(world.registry.url, PUSHER, { name: 'library/rovolume', tag: 'v1', layers: [randomLayer('rov-0', 60_000)], format: 'docker' });
        const manifest = await fetch(`${fresh.url}/v2/library/rovolume/manifests/v1`);
        assert.equal(manifest.status, 200, 'a manifest passes through, not 500');
        assert.deepEqual(Buffer.from(await manifest.arrayBuffer()), other.manifestBytes);
        const layer = await fetch(`${fresh.url}/v2/library/rovolume/blobs/${other.layerDigests[0]}`);
        assert.equal(layer.status, 200);
        assert.equal(await sha256OfBody(layer), other.layerDigests[0]);
        const logged = JSON.stringify(fresh.logLines().filter((line) => line.level === 'error' || line.level === 'warn'));
        assert.match(logged, /EROFS/, 'the cause is named');
        assert.doesNotMatch(logged, /ENOENT/, 'not mistaken for a missing file');
        assert.equal(fresh.logLines().filter((line) => line.message === 'unexpected error').length, 0, 'no 500');
      } finally {
        await fresh.stop();
      }
    });
  });
});
