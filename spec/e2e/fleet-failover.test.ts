/**
 * A fleet through a Redis failover (issue 24 item 7): two real pullmirror processes on one store
 * and a real Redis behind Sentinel (a master, a replica and three Sentinels,
 * spec/support/redis-failover.ts). The master is SIGKILLed while both instances fill cold blobs
 * for their clients. Redis replication is asynchronous, so a lease written just before the kill
 * can vanish with it and the other instance may claim a blob still being filled: that may cost
 * one more upstream fetch of that blob, never a failed pull or an unverified commit. Run on a
 * shared volume, on a shared bucket (a real RADOS Gateway; spools private to each instance) and on
 * disks of their own (one named fleet, peers streaming blobs to each other, each storing them).
 * Every extra upstream fetch is seen from both sides: the upstream's GETs and the instances'
 * pullmirror_fleet_duplicate_fetches_total.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { getBlob } from '../support/blob-get.ts';
import { pushRandomBlob } from '../support/images.ts';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { openFilesUnder, spoolTempFiles } from '../support/descriptors.ts';
import { mergeConfig, tempFiles, type RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startFailoverTopology, type FailoverTopology } from '../support/redis-failover.ts';
import { bucketProblems, skipUnlessS3, startS3, uploadsLeft } from '../support/s3.ts';
import { stored } from '../support/store.ts';
import { scrape, sum } from '../support/prometheus.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MiB = 1024 * 1024;

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** Blobs in a filesystem store that do not hash to their digest. */
async function unverifiedOnDisk(root: string): Promise<string[]> {
  const bad: string[] = [];
  const blobs = path.join(root, 'blobs', 'sha256');
  const onDisk = existsSync(blobs) ? readdirSync(blobs, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()) : [];
  for (const file of onDisk) if ((await sha256OfFile(path.join(file.parentPath, file.name))) !== `sha256:${file.name}`) bad.push(file.name);
  return bad;
}

/** Where the two instances keep the blobs (one store for both, or one each), and what a test checks of it afterwards. */
interface FleetStore {
  /** Each instance's config for this mode (index 0 or 1): its storage, and for its own disk its fleet and peer listener. */
  config(instance: number): Record<string, unknown>;
  /** The filesystem root the mirrors get (the shared volume; a temp dir of their own on a bucket; its own disk). */
  root(instance: number): string | undefined;
  /** Committed where every instance serves it from (the shared store; each instance's own). */
  committed(digest: string): Promise<boolean>;
  /** Blobs in the store(s) that do not hash to their digest. */
  problems(): Promise<string[]>;
  /** Temporary files (spools, multipart uploads) still there. */
  leftovers(): Promise<number>;
  /** The log line of an instance that got a blob from the other over the peer listener; undefined when the mode needs no peer (a shared volume). */
  peerStreamed?(follower: RunningMirror, digest: string): boolean;
  close(): Promise<void>;
}

function sharedVolume(dir: string): FleetStore {
  const root = path.join(dir, 'store');
  return {
    config: () => ({ storage: { cache: { blobdescriptor: 'redis' } } }),
    root: () => root,
    committed: (digest) => stored(root, digest, 10_000),
    problems: () => unverifiedOnDisk(root),
    leftovers: async () => tempFiles(root).length,
    close: async () => {},
  };
}

async function sharedBucket(dir: string): Promise<FleetStore> {
  const s3 = await startS3();
  const bucket = await s3.createBucket('failover');
  const spool = (instance: number) => path.join(dir, `spool-${instance}`);
  const committed = async (digest: string) => {
    const deadline = performance.now() + 10_000;
    const hex = digest.slice('sha256:'.length);
    for (;;) {
      const listed = await s3.client().send(new ListObjectsV2Command({ Bucket: bucket }));
      if ((listed.Contents ?? []).some((object) => object.Key?.endsWith(`blobs/sha256/${hex.slice(0, 2)}/${hex}`))) return true;
      if (performance.now() > deadline) return false;
      await sleep(100);
    }
  };
  return {
    config: (instance) => ({
      storage: {
        s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: spool(instance) },
        cache: { blobdescriptor: 'redis' },
      },
    }),
    root: () => undefined,
    committed,
    problems: async () => (await bucketProblems(s3, bucket)).bad,
    leftovers: async () => spoolTempFiles(spool(0)).length + spoolTempFiles(spool(1)).length + (await uploadsLeft(s3, bucket)),
    close: () => s3.close(),
  };
}

/**
 * Each instance on a disk of its own, in one named fleet (redis.fleet.name) with peer listeners
 * and a shared secret: a follower streams the holder's download and commits into its own store.
 */
function ownDisks(dir: string): FleetStore {
  const root = (instance: number) => path.join(dir, `disk-${instance}`);
  const both = [0, 1].map(root);
  return {
    config: () => ({
      http: { secret: 'peer-secret-for-the-failover-fleet-0123456789' },
      redis: { fleet: { name: 'failover-own-disks', peers: { addr: '127.0.0.1:0', advertise: '127.0.0.1:0', timeout: '2s' } } },
      storage: { cache: { blobdescriptor: 'redis' } },
    }),
    root,
    committed: async (digest) => (await Promise.all(both.map((each) => stored(each, digest, 10_000)))).every(Boolean),
    problems: async () => (await Promise.all(both.map(unverifiedOnDisk))).flat(),
    leftovers: async () => both.reduce((sum, each) => sum + tempFiles(each).length, 0),
    peerStreamed: (follower, digest) =>
      follower.logLines().some((line) => line.digest === digest && (line.message === 'streaming a blob download from the instance that holds it' || line.message === 'streaming a blob from an instance that holds it')),
    close: async () => {},
  };
}

describe('fleet: a Redis failover in the middle of fills', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let topology: FailoverTopology;
  let work: TempDir;

  before(async () => {
    world = await startWorld();
    work = tempDir('pullmirror-fleet-failover');
  });

  after(async () => {
    await world?.close();
    await work?.cleanup();
  });

  /** What each instance logged of a blob, for a failure message. */
  const logsOf = (mirrors: RunningMirror[], digest: string) =>
    mirrors.map((m, i) => `instance ${i}:\n${m.logLines().filter((line) => line.digest === digest || line.level === 'warn' || line.level === 'error').map((line) => JSON.stringify(line)).join('\n')}`).join('\n---\n');

  /** Upstream fetches of a blob another instance was fetching too, as both instances count them. */
  const duplicateFetches = async (mirrors: RunningMirror[]) =>
    (await Promise.all(mirrors.map(async (m) => sum(await scrape(`${m.url}/metrics`), 'pullmirror_fleet_duplicate_fetches_total')))).reduce((sum, n) => sum + n, 0);

  async function failover(t: TestContext, store: FleetStore, label: string): Promise<void> {
    topology = await startFailoverTopology();
    const config = (instance: number) =>
      mergeConfig(
        {
          redis: { addrs: topology.addrs, mastername: topology.mastername, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s', fleet: { lease: '2s' } },
          proxy: { timeouts: { connect: '1s', headers: '2s', bodyidle: '10s' } },
        },
        store.config(instance),
      );
    const mirrors: RunningMirror[] = await Promise.all([0, 1].map((i) => world.startMirror({ root: store.root(i), config: config(i) })));
    try {
      await Promise.all(mirrors.map(async (m) => (await fetch(`${m.url}/v2/`)).arrayBuffer()));
      const blobs = await Promise.all([0, 1].map((i) => pushRandomBlob(world.registry.url, PUSHER, 'library/failover', { sizeMiB: 12, label: `failover-${label}-${i}` })));
      world.proxy.reset();
      // Slow enough that the fills are mid-way when the master dies (12 MiB at 3 MiB/s: 4 s).
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 3 * MiB, match: matchRequests('GET', /\/blobs\/sha256:/) });
      const url = (m: RunningMirror, digest: string) => `${m.url}/v2/library/failover/blobs/${digest}`;
      const pulls = blobs.flatMap((blob) => mirrors.flatMap((m) => Array.from({ length: 2 }, () => getBlob(url(m, blob.digest), { deadlineMs: 60_000 }).then((got) => ({ blob, got })))));

      // Both fills under way (the upstream answered both), then the master goes.
      const deadline = performance.now() + 10_000;
      while (world.proxy.count('GET', /\/blobs\/sha256:/) < 2 && performance.now() < deadline) await sleep(20);
      await sleep(500);
      const killed = await topology.killMaster();
      const promoted = await topology.waitForFailover(killed);
      assert.notEqual(promoted, killed);
      world.proxy.setFault(undefined);

      for (const { blob, got } of await Promise.all(pulls)) {
        assert.ok(got.status === 200 && got.complete, `a pull failed: HTTP ${got.status}, ${got.bytes} bytes\n${mirrors.map((m) => m.process.readLog(3000)).join('\n---\n')}`);
        assert.equal(got.bytes, blob.size);
        assert.equal(got.sha256, blob.digest, 'verified bytes only');
      }
      let extraFetches = 0;
      for (const blob of blobs) {
        const fetches = world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`));
        assert.ok(fetches >= 1 && fetches <= 2, `${blob.digest}: ${fetches} upstream GETs (one, and at most one more for a lease lost with the master)`);
        extraFetches += fetches - 1;
        t.diagnostic(`${label}: ${blob.digest.slice(0, 19)}: ${fetches} upstream GET(s)`);
        assert.ok(await store.committed(blob.digest), `${blob.digest} committed\n${logsOf(mirrors, blob.digest)}`);
      }
      // Each extra fetch is counted by the instance that knew it duplicated one (a lease lost, a peer not followed).
      assert.ok(await eventually(async () => (await duplicateFetches(mirrors)) === extraFetches), `${extraFetches} extra upstream GETs, ${await duplicateFetches(mirrors)} counted as duplicate fetches`);
      const leasesLost = mirrors.flatMap((m) => m.logLines()).filter((line) => line.message?.startsWith('blob download lease lost')).length;
      t.diagnostic(`${label}: ${pulls.length} pulls verified, ${extraFetches} extra upstream GET(s), ${await duplicateFetches(mirrors)} counted as duplicate fetches, ${leasesLost} lease-lost log line(s)`);
      assert.deepEqual(await store.problems(), [], 'every stored blob verifies');

      // After the failover the fleet coordinates again: 2 × 4 clients of a new cold blob, one upstream GET.
      const fresh = await pushRandomBlob(world.registry.url, PUSHER, 'library/failover', { sizeMiB: 4, label: `failover-${label}-after` });
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 4 * MiB, match: matchRequests('GET', new RegExp(`/blobs/${fresh.digest}$`)) });
      // The first instance's clients first, so that the second follows its download.
      const first = Array.from({ length: 4 }, () => getBlob(url(mirrors[0], fresh.digest), { deadlineMs: 30_000 }));
      assert.ok(await eventually(() => mirrors[0].logLines().some((line) => line.message === 'blob fill started' && line.digest === fresh.digest)), 'the first instance downloads');
      const second = Array.from({ length: 4 }, () => getBlob(url(mirrors[1], fresh.digest), { deadlineMs: 30_000 }));
      const again = await Promise.all([...first, ...second]);
      world.proxy.setFault(undefined);
      for (const got of again) assert.equal(got.sha256, fresh.digest);
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${fresh.digest}$`)), 1, 'one upstream GET for the fleet after the failover');
      if (store.peerStreamed) assert.ok(store.peerStreamed(mirrors[1], fresh.digest), 'the second instance got it from the first, by peer');
      assert.ok(await store.committed(fresh.digest), 'committed');
      assert.deepEqual(await store.problems(), [], 'every stored blob verifies');

      // Nothing half-written left behind once the fills are over.
      const settle = performance.now() + 10_000;
      while ((await store.leftovers()) > 0 && performance.now() < settle) await sleep(100);
      assert.equal(await store.leftovers(), 0, 'no spool file or multipart upload left');
      // Every store, spool and disk lives under the test's directory: no descriptor left open there.
      for (const m of mirrors) assert.ok(await eventually(() => openFilesUnder(m.process.pid, work.path).length === 0), `descriptors left open: ${openFilesUnder(m.process.pid, work.path).join(', ')}`);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all(mirrors.map((m) => m.stop()));
      await topology.close();
    }
  }

  it('on a shared volume: the Redis master SIGKILLed while 2 × 4 clients pull two cold blobs through two instances: every pull verifies, at most one extra upstream fetch per blob in flight, the store holds only verified blobs; afterwards a new cold blob crosses once', async (t) => {
    const store = sharedVolume(work.path);
    await failover(t, store, 'volume');
  });

  it('on a shared bucket (spools private): the same failover, the same guarantees', { skip: skipUnlessS3() }, async (t) => {
    const store = await sharedBucket(path.join(work.path, 'bucket'));
    try {
      await failover(t, store, 'bucket');
    } finally {
      await store.close();
    }
  });

  it('on disks of their own (one named fleet, peers streaming): the same failover, the same guarantees, and afterwards the second instance gets the new blob from the first by peer', async (t) => {
    const store = ownDisks(path.join(work.path, 'disks'));
    await failover(t, store, 'disks');
  });
});
