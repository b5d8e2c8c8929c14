/**
 * A fleet: two real pullmirror processes on one store directory and one real redis-server,
 * in front of the real upstream (token server + docker-registry behind the counting proxy).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { pushImage, pushRandomBlob, randomLayer, type PushedImage } from '../support/images.ts';
import { tempFiles, type RunningMirror } from '../support/mirror.ts';
import { sample, scrape, type Samples } from '../support/prometheus.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { monitorRedis, startRedis, type RedisServer } from '../support/redis.ts';
import { startFailoverTopology } from '../support/redis-failover.ts';
import { blobPath, stored } from '../support/store.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MiB = 1024 * 1024;

/** What a client got: status, the digest of the bytes it received, and how many there were. */
interface Pulled {
  status: number;
  digest?: string;
  bytes: number;
  error?: Error;
}

/** GETs a blob and hashes it as it streams; `progress` tracks bytes received so far. */
function pull(url: string, progress?: { bytes: number }): Promise<Pulled> {
  return (async () => {
    const counter = progress ?? { bytes: 0 };
    let status = 0;
    try {
      const response = await fetch(url);
      status = response.status;
      const hash = createHash('sha256');
      for await (const chunk of response.body!) {
        hash.update(chunk);
        counter.bytes += chunk.length;
      }
      return { status, digest: `sha256:${hash.digest('hex')}`, bytes: counter.bytes };
    } catch (error) {
      return { status, bytes: counter.bytes, error: error as Error };
    }
  })();
}

describe('fleet: two instances on one store and one Redis', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let store: TempDir;
  let image: PushedImage;

  /**
   * Two instances on a fresh shared store (by default a short lease, so takeovers show in a
   * test's time), on the test's Redis or on `redisKeys` (a Sentinel group's).
   */
  async function fleet(
    extra: Record<string, any> = {},
    { lease = '1s', redisKeys = { addr: redis.addr } }: { lease?: string; redisKeys?: Record<string, unknown> } = {},
  ): Promise<{ a: RunningMirror; b: RunningMirror; root: string }> {
    const root = path.join(store.path, `store-${Math.random().toString(36).slice(2, 8)}`);
    const config = {
      storage: { cache: { blobdescriptor: 'redis' } },
      redis: { ...redisKeys, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s', fleet: { lease } },
      proxy: { tagfreshness: '30s', timeouts: { connect: '1s', headers: '2s', bodyidle: '5s' } },
      ...extra,
    };
    const [a, b] = await Promise.all([world.startMirror({ root, config }), world.startMirror({ root, config })]);
    // Teach both the upstream's auth challenge, so the counts below are blob and tag requests only.
    await Promise.all([a, b].map(async (m) => (await fetch(`${m.url}/v2/`)).arrayBuffer()));
    return { a, b, root };
  }

  /** 8 concurrent requests to each instance for the image's manifest by `reference`; each gets its exact bytes. */
  async function eightEachGetTheManifest(mirrors: RunningMirror[], reference: string): Promise<void> {
    const responses = await Promise.all(mirrors.flatMap((m) => Array.from({ length: 8 }, () => fetch(`${m.url}/v2/library/fleet/manifests/${reference}`))));
    for (const response of responses) {
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('docker-content-digest'), image.manifestDigest);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), image.manifestBytes);
    }
  }

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
    store = tempDir('pullmirror-fleet');
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/fleet', tag: 'v1', layers: [randomLayer('fleet-0', 50_000)], format: 'oci' });
  });

  after(async () => {
    await world?.close();
    await redis?.close();
    await store?.cleanup();
  });

  it('2 × 8 concurrent cold GETs of one blob make one upstream GET, and every body verifies', async () => {
    const { a, b } = await fleet();
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 32, label: 'fleet-cold' });
    world.proxy.reset();
    // Upstream answers late, so all 16 requests meet the download in flight.
    world.proxy.setFault({ kind: 'delay', ms: 1000, match: matchRequests('GET', new RegExp(`/blobs/${blob.digest}$`)) });
    try {
      const results = await Promise.all([a, b].flatMap((m) => Array.from({ length: 8 }, () => pull(`${m.url}/v2/library/fleet/blobs/${blob.digest}`))));
      for (const result of results) {
        assert.equal(result.error, undefined);
        assert.equal(result.status, 200);
        assert.equal(result.digest, blob.digest);
      }
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`)), 1, 'exactly one upstream GET between both instances');
      const followers = [a, b].filter((m) => m.logLines().some((line) => line.message === 'following a blob download of another instance'));
      assert.equal(followers.length, 1, 'one instance downloads, the other follows');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('2 × 8 concurrent requests for a tag make one upstream check and one manifest GET; the instance that waits reads the answer when it is released, not on a clock', async () => {
    const { a, b } = await fleet();
    world.proxy.reset();
    world.proxy.setFault({ kind: 'delay', ms: 600, match: matchRequests('HEAD', /\/manifests\/v1$/), times: 1 });
    const monitor = await monitorRedis(redis.port);
    try {
      await eightEachGetTheManifest([a, b], 'v1');
      assert.equal(world.proxy.count('HEAD', /\/manifests\/v1$/), 1, 'one tag check between both instances');
      assert.equal(world.proxy.count('GET', /\/manifests\//), 1, 'one manifest GET');
    } finally {
      monitor.stop();
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
    // Reads of a lookup's answer, per lookup: the first look, one at the subscription, one when
    // the holder releases it (and one more should the release land during a look).
    const reads = new Map<string, number>();
    for (const line of monitor.lines()) {
      const key = /\] "get" "[^"]*:lookupdone:\{([^}]+)\}"/.exec(line)?.[1];
      if (key) reads.set(key, (reads.get(key) ?? 0) + 1);
    }
    assert.ok(reads.size > 0, 'the other instance waited on a lookup');
    for (const [key, count] of reads) assert.ok(count <= 4, `${count} reads of ${key}'s answer while its 600 ms check ran`);
  });

  it('2 × 8 concurrent requests for a manifest by digest make one upstream GET (Docker Hub counts each as a pull)', async () => {
    const { a, b } = await fleet();
    world.proxy.reset();
    const byDigest = new RegExp(`/manifests/${image.manifestDigest}$`);
    world.proxy.setFault({ kind: 'delay', ms: 300, match: matchRequests('GET', byDigest), times: 1 });
    try {
      await eightEachGetTheManifest([a, b], image.manifestDigest);
      assert.equal(world.proxy.count('GET', byDigest), 1, 'one manifest GET between both instances');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('when the holder is killed mid-download the other instance takes over; its clients get every byte once', async (t) => {
    const { a, b, root } = await fleet();
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 4, label: 'fleet-kill' });
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 4 * MiB, match: matchRequests('GET', new RegExp(`/blobs/${blob.digest}$`)) });
    try {
      const url = (m: RunningMirror) => `${m.url}/v2/library/fleet/blobs/${blob.digest}`;
      const held = Array.from({ length: 3 }, () => pull(url(a)));
      // A holds the download once its temp file exists; then B's clients join as followers.
      const deadline = performance.now() + 10_000;
      while (!a.logLines().some((line) => line.message === 'blob fill started') && performance.now() < deadline) await sleep(20);
      const progress = Array.from({ length: 3 }, () => ({ bytes: 0 }));
      const followed = progress.map((p) => pull(url(b), p));
      while (progress.some((p) => p.bytes < MiB) && performance.now() < deadline) await sleep(20);
      assert.ok(progress.every((p) => p.bytes >= MiB), `B's clients receive bytes before the kill; B log:\n${b.process.readLog()}`);
      process.kill(a.process.pid, 'SIGKILL');
      await a.process.exited;
      world.proxy.setFault(undefined);
      for (const result of await Promise.all(held)) assert.ok(result.error || result.bytes < blob.size, "the killed instance's clients do not get a clean end");
      for (const result of await Promise.all(followed)) {
        assert.equal(result.error, undefined, `B log:\n${b.process.readLog()}`);
        assert.equal(result.bytes, blob.size, 'nothing lost or sent twice');
        assert.equal(result.digest, blob.digest);
      }
      assert.ok(b.logLines().some((line) => line.message === 'blob download holder gone; taking the download over'));
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`)), 2, "A's download and B's takeover");
      // B resumes from A's temp file unless B's temp-area sweep removed it first (then from byte 0).
      const takeover = world.proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`))[1];
      if (b.logLines().some((line) => line.message === 'resuming the download of a dead instance')) {
        assert.match(takeover.range ?? '', /^bytes=[1-9]\d*-$/, 'the takeover asks only for the bytes A had not stored');
      } else {
        t.diagnostic("A's temp file was swept before the takeover: fetched again from byte 0");
      }
      assert.ok(await stored(root, blob.digest), 'the blob is committed to the shared store');
      const again = await pull(url(b));
      assert.equal(again.digest, blob.digest);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder paused past its lease loses it: the other instance takes over, the paused one finishes for its own clients, uncommitted; one commit, and the stored blob verifies', async () => {
    const { a, b, root } = await fleet();
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 6, label: 'fleet-pause' });
    const blobGets = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', blobGets) });
    let paused = false;
    try {
      const url = (m: RunningMirror) => `${m.url}/v2/library/fleet/blobs/${blob.digest}`;
      const held = Array.from({ length: 2 }, () => pull(url(a)));
      const deadline = performance.now() + 20_000;
      const until = async (what: string, check: () => boolean) => {
        while (!check() && performance.now() < deadline) await sleep(20);
        assert.ok(check(), `${what}; A log:\n${a.process.readLog()}\nB log:\n${b.process.readLog()}`);
      };
      await until('A holds the download', () => a.logLines().some((line) => line.message === 'blob fill started'));
      const progress = Array.from({ length: 2 }, () => ({ bytes: 0 }));
      const followed = progress.map((p) => pull(url(b), p));
      await until("B's clients receive bytes from A's file", () => progress.every((p) => p.bytes >= MiB / 2));
      // A stops answering anything, Redis included, for longer than its 1 s lease: B takes over.
      process.kill(a.process.pid, 'SIGSTOP');
      paused = true;
      await until('B takes the download over', () => b.logLines().some((line) => line.message === 'blob download holder gone; taking the download over'));
      // A comes back while B's download runs, its own upstream transfer still open: it must
      // learn the lease is gone and not race B to the commit (its clients still get verified bytes).
      process.kill(a.process.pid, 'SIGCONT');
      paused = false;
      await until('A sees its lease lost', () => a.logLines().some((line) => line.message === 'blob download lease lost to another instance; finishing it for this instance\'s clients, without committing'));
      world.proxy.setFault(undefined);
      for (const result of await Promise.all(followed)) {
        assert.equal(result.error, undefined, `B log:\n${b.process.readLog()}`);
        assert.equal(result.bytes, blob.size, 'nothing lost or sent twice');
        assert.equal(result.digest, blob.digest);
      }
      for (const result of await Promise.all(held)) {
        assert.equal(result.error, undefined, `A's clients are not cut off by the lost lease; A log:\n${a.process.readLog()}`);
        assert.equal(result.digest, blob.digest, "A's clients get verified bytes");
      }
      assert.ok(await stored(root, blob.digest));
      assert.equal(`sha256:${createHash('sha256').update(readFileSync(blobPath(root, blob.digest))).digest('hex')}`, blob.digest, 'the stored blob verifies');
      const [ma, mb] = await Promise.all([scrape(`${a.url}/metrics`), scrape(`${b.url}/metrics`)]);
      const committed = (m: Samples) => sample(m, 'pullmirror_blob_fills_total', { result: 'committed' });
      assert.equal(committed(ma), 0, 'the paused instance did not commit');
      assert.equal(committed(mb), 1, 'the instance that took over committed, once');
      assert.equal(sample(ma, 'pullmirror_fleet_leases_lost_total'), 1);
      assert.equal(sample(ma, 'pullmirror_fleet_duplicate_fetches_total', { reason: 'lease_lost' }), 1, 'the lost lease is counted as a duplicate fetch');
      await until('no temporary file is left', () => tempFiles(root).length === 0);
    } finally {
      if (paused) process.kill(a.process.pid, 'SIGCONT');
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a follower of a slow fill asks Redis once per state change of the holder and once per lease, not on a clock', async (t) => {
    const leaseMs = 10_000;
    const { a, b } = await fleet({}, { lease: `${leaseMs}ms` });
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 2, label: 'fleet-slow' });
    const blobGets = new RegExp(`/blobs/${blob.digest}$`);
    // About 8 s upstream: many ticks of any clock, three state changes (claimed, started, committed).
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 256 * 1024, match: matchRequests('GET', blobGets) });
    const monitor = await monitorRedis(redis.port);
    let followMs: number;
    try {
      const url = (m: RunningMirror) => `${m.url}/v2/library/fleet/blobs/${blob.digest}`;
      const held = pull(url(a));
      const deadline = performance.now() + 10_000;
      while (!a.logLines().some((line) => line.message === 'blob fill started') && performance.now() < deadline) await sleep(20);
      const followStart = performance.now();
      const followed = await Promise.all([pull(url(b)), pull(url(b))]);
      followMs = performance.now() - followStart;
      for (const result of [...followed, await held]) {
        assert.equal(result.error, undefined, `B log:\n${b.process.readLog()}`);
        assert.equal(result.digest, blob.digest);
      }
      assert.ok(b.logLines().some((line) => line.message === 'following a blob download of another instance'));
      assert.equal(world.proxy.count('GET', blobGets), 1);
    } finally {
      monitor.stop();
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
    // The commands on this blob's claim, as the server ran them (not those a script runs inside).
    const claimKeys = new RegExp(`:fill(failed)?:\\{${blob.digest}\\}"`);
    const client = (line: string) => /^\S+ \[\d+ ([^\]]+)\]/.exec(line)?.[1];
    const commands = monitor.lines().filter((line) => claimKeys.test(line) && client(line) !== 'lua');
    // The follower's connection is the one that reads the claim (the holder only writes it).
    const followers = new Set(commands.filter((line) => /\] "get" /.test(line)).map(client));
    assert.equal(followers.size, 1, commands.join('\n'));
    const follower = commands.filter((line) => followers.has(client(line)));
    // A look reads the claim, its expiry and a failure record: 3 commands. Looks: the first; one
    // per state change the holder publishes after it (started, committed) and one at the
    // subscription; one each time the claim would have expired (the holder renews every third
    // of the lease, so at most one per two thirds of it); one when the commit lands between the
    // store's look and Redis'. Plus the claim that made this instance a follower.
    const looks = 1 + 2 + 1 + Math.ceil(followMs / ((leaseMs * 2) / 3)) + 1;
    t.diagnostic(`the follower sent ${follower.length} commands on the blob's claim over ${Math.round(followMs)} ms (bound ${1 + 3 * looks})`);
    assert.ok(follower.length <= 1 + 3 * looks, `${follower.length} commands over ${Math.round(followMs)} ms, at most ${1 + 3 * looks}:\n${follower.join('\n')}`);
  });

  it('through a Sentinel failover in the middle of a followed download, the follower\'s clients get every byte; then the fleet shares downloads again', async () => {
    const group = await startFailoverTopology();
    // A lease longer than the failover: the holder's claim outlives it (a shorter one may
    // expire meanwhile; then the follower takes over and the holder's own clients are cut).
    const { a, b } = await fleet({}, { lease: '10s', redisKeys: { addrs: group.addrs, mastername: group.mastername } }).catch(async (error) => {
      await group.close();
      throw error;
    });
    const url = (m: RunningMirror, digest: string) => `${m.url}/v2/library/fleet/blobs/${digest}`;
    try {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 4, label: 'fleet-failover' });
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: MiB, match: matchRequests('GET', new RegExp(`/blobs/${blob.digest}$`)) });
      const held = pull(url(a, blob.digest));
      const deadline = performance.now() + 20_000;
      while (!a.logLines().some((line) => line.message === 'blob fill started') && performance.now() < deadline) await sleep(20);
      const progress = Array.from({ length: 2 }, () => ({ bytes: 0 }));
      const followed = progress.map((p) => pull(url(b, blob.digest), p));
      while (progress.some((p) => p.bytes < MiB / 2) && performance.now() < deadline) await sleep(20);
      assert.ok(b.logLines().some((line) => line.message === 'following a blob download of another instance'));
      await group.failOver();
      world.proxy.setFault(undefined);
      for (const result of await Promise.all(followed)) {
        assert.equal(result.error, undefined, `B log:\n${b.process.readLog()}`);
        assert.equal(result.bytes, blob.size);
        assert.equal(result.digest, blob.digest);
      }
      const own = await held;
      if (!own.error) assert.equal(own.digest, blob.digest, "the holder's client gets verified bytes or a broken connection");
      // Both instances on the new master: a cold blob pulled through both crosses the link once.
      while (![a, b].every((m) => m.logLines().some((line) => line.message === 'redis reachable again')) && performance.now() < deadline) await sleep(50);
      const next = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 2, label: 'fleet-after-failover' });
      world.proxy.reset();
      world.proxy.setFault({ kind: 'delay', ms: 500, match: matchRequests('GET', new RegExp(`/blobs/${next.digest}$`)) });
      const after = await Promise.all([a, b, a, b].map((m) => pull(url(m, next.digest))));
      for (const result of after) assert.equal(result.digest, next.digest);
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${next.digest}$`)), 1, 'one upstream GET between both instances after the failover');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
      await group.close();
    }
  });

  it('with Redis stopped mid-run pulls still succeed, the outage is logged once per instance, and Redis is used again when back', async () => {
    const { a, b, root } = await fleet();
    const first = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 3, label: 'fleet-outage-1' });
    const second = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 2, label: 'fleet-outage-2' });
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 4 * MiB, match: matchRequests('GET', new RegExp(`/blobs/${first.digest}$`)) });
    try {
      // A download in flight, followed by the other instance, when Redis goes away.
      const inFlight = [a, b, a, b].map((m) => pull(`${m.url}/v2/library/fleet/blobs/${first.digest}`));
      await sleep(500);
      await redis.stop();
      for (const result of await Promise.all(inFlight)) {
        assert.equal(result.error, undefined);
        assert.equal(result.digest, first.digest);
      }
      // Many requests during the outage: cold, warm, manifests, on both instances.
      for (let round = 0; round < 5; round++) {
        for (const m of [a, b]) {
          for (const digest of [first.digest, second.digest, image.configDigest]) {
            assert.equal((await pull(`${m.url}/v2/library/fleet/blobs/${digest}`)).digest, digest);
          }
          const manifest = await fetch(`${m.url}/v2/library/fleet/manifests/v1`);
          assert.equal(manifest.status, 200);
          await manifest.arrayBuffer();
        }
      }
      for (const m of [a, b]) {
        const errors = m.logLines().filter((line) => line.level === 'error');
        assert.equal(errors.length, 1, `one error line per instance for the outage:\n${JSON.stringify(errors)}`);
        assert.equal(errors[0].message, 'redis unreachable; carrying on without it until it is back');
      }
    } finally {
      world.proxy.setFault(undefined);
      if (!(await redis.command('PING').catch(() => ''))) await redis.start();
    }
    try {
      const deadline = performance.now() + 10_000;
      while (![a, b].every((m) => m.logLines().some((line) => line.message === 'redis reachable again')) && performance.now() < deadline) await sleep(100);
      for (const m of [a, b]) assert.ok(m.logLines().some((line) => line.message === 'redis reachable again'));
      // The descriptor cache works again: a warm HEAD (what the cache answers; a GET opens the
      // file and asks no cache) writes the blob's descriptor back to Redis.
      assert.equal((await fetch(`${a.url}/v2/library/fleet/blobs/${second.digest}`, { method: 'HEAD' })).status, 200);
      const id = readFileSync(path.join(root, '_store-id'), 'utf8').trim();
      assert.match(await redis.command(`EXISTS pullmirror:${id}:blob:${second.digest}`), /^:1/, 'keys are namespaced by the store id');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
