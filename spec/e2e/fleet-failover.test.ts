/**
 * A fleet through a Redis failover (issue 24 item 7): two real pullmirror processes on one store
 * and a real Redis behind Sentinel (a master, a replica and three Sentinels,
 * spec/support/redis-failover.ts). The master is SIGKILLed while both instances fill cold blobs
 * for their clients. Redis replication is asynchronous, so a lease written just before the kill
 * can vanish with it and the other instance may claim a blob still being filled: that may cost
 * one more upstream fetch of that blob, never a failed pull or an unverified commit. Run on a
 * shared volume and on a shared bucket (a real RADOS Gateway; spools private to each instance).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { getBlob } from '../support/blob-get.ts';
import { pushRandomBlob } from '../support/images.ts';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { spoolTempFiles } from '../support/descriptors.ts';
import { tempFiles, type RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startFailoverTopology, type FailoverTopology } from '../support/redis-failover.ts';
import { bucketProblems, skipUnlessS3, startS3, uploadsLeft } from '../support/s3.ts';
import { stored } from '../support/store.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MiB = 1024 * 1024;

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** Where the two instances keep the blobs, and what a test checks of it afterwards. */
interface SharedStore {
  /** Each instance's storage config (index 0 or 1). */
  storage(instance: number): Record<string, unknown>;
  /** The filesystem root the mirrors get (the shared volume; a temp dir of their own on a bucket). */
  root(instance: number): string | undefined;
  committed(digest: string): Promise<boolean>;
  /** Blobs in the store that do not hash to their digest. */
  problems(): Promise<string[]>;
  /** Temporary files (spools, multipart uploads) still there. */
  leftovers(): Promise<number>;
  close(): Promise<void>;
}

function sharedVolume(dir: string): SharedStore {
  const root = path.join(dir, 'store');
  return {
    storage: () => ({ cache: { blobdescriptor: 'redis' } }),
    root: () => root,
    committed: (digest) => stored(root, digest, 10_000),
    problems: async () => {
      const bad: string[] = [];
      const blobs = path.join(root, 'blobs', 'sha256');
      const onDisk = existsSync(blobs) ? readdirSync(blobs, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()) : [];
      for (const file of onDisk) if ((await sha256OfFile(path.join(file.parentPath, file.name))) !== `sha256:${file.name}`) bad.push(file.name);
      return bad;
    },
    leftovers: async () => tempFiles(root).length,
    close: async () => {},
  };
}

async function sharedBucket(dir: string): Promise<SharedStore> {
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
    storage: (instance) => ({
      s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: spool(instance) },
      cache: { blobdescriptor: 'redis' },
    }),
    root: () => undefined,
    committed,
    problems: async () => (await bucketProblems(s3, bucket)).bad,
    leftovers: async () => spoolTempFiles(spool(0)).length + spoolTempFiles(spool(1)).length + (await uploadsLeft(s3, bucket)),
    close: () => s3.close(),
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

  async function failover(store: SharedStore, label: string): Promise<void> {
    topology = await startFailoverTopology();
    const config = (instance: number) => ({
      storage: store.storage(instance),
      redis: { addrs: topology.addrs, mastername: topology.mastername, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s', fleet: { lease: '2s' } },
      proxy: { timeouts: { connect: '1s', headers: '2s', bodyidle: '10s' } },
    });
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
      for (const blob of blobs) {
        const fetches = world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`));
        assert.ok(fetches >= 1 && fetches <= 2, `${blob.digest}: ${fetches} upstream GETs (one, and at most one more for a lease lost with the master)`);
        assert.ok(await store.committed(blob.digest), 'committed');
      }
      assert.deepEqual(await store.problems(), [], 'every stored blob verifies');

      // After the failover the fleet coordinates again: 2 × 4 clients of a new cold blob, one upstream GET.
      const fresh = await pushRandomBlob(world.registry.url, PUSHER, 'library/failover', { sizeMiB: 4, label: `failover-${label}-after` });
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 4 * MiB, match: matchRequests('GET', new RegExp(`/blobs/${fresh.digest}$`)) });
      const again = await Promise.all(mirrors.flatMap((m) => Array.from({ length: 4 }, () => getBlob(url(m, fresh.digest), { deadlineMs: 30_000 }))));
      world.proxy.setFault(undefined);
      for (const got of again) assert.equal(got.sha256, fresh.digest);
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${fresh.digest}$`)), 1, 'one upstream GET for the fleet after the failover');

      // Nothing half-written left behind once the fills are over.
      const settle = performance.now() + 10_000;
      while ((await store.leftovers()) > 0 && performance.now() < settle) await sleep(100);
      assert.equal(await store.leftovers(), 0, 'no spool file or multipart upload left');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all(mirrors.map((m) => m.stop()));
      await topology.close();
    }
  }

  it('on a shared volume: the Redis master SIGKILLed while 2 × 4 clients pull two cold blobs through two instances: every pull verifies, at most one extra upstream fetch per blob in flight, the store holds only verified blobs; afterwards a new cold blob crosses once', async () => {
    const store = sharedVolume(work.path);
    await failover(store, 'volume');
  });

  it('on a shared bucket (spools private): the same failover, the same guarantees', { skip: skipUnlessS3() }, async () => {
    const store = await sharedBucket(path.join(work.path, 'bucket'));
    try {
      await failover(store, 'bucket');
    } finally {
      await store.close();
    }
  });
});
