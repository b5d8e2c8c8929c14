/**
 * A fleet on one bucket (storage.s3 on a real RADOS Gateway) whose instances stream downloads to
 * each other through their peer listeners (redis.fleet.peers): spools are private, so without a
 * peer a follower could only wait for the holder's commit. Two real pullmirror processes, one
 * real redis-server, the real upstream behind the counting proxy (throttled, so a download
 * lasts long enough to be followed).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pushRandomBlob } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { startConnectionRecorder } from '../support/tcp-relay.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const SECRET = 'peer-secret-for-the-bucket-fleet-0123456789';
const MiB = 1024 * 1024;

/** A client's GET: status, digest of what it got, and which of the holder's log lines were there when its first byte came. */
async function pullNoting(url: string, holder: RunningMirror, digest: string) {
  const response = await fetch(url);
  const hash = createHash('sha256');
  let holderDoneAtFirstByte: boolean | undefined;
  for await (const chunk of response.body!) {
    holderDoneAtFirstByte ??= holder.logLines().some((line) => line.message === 'blob cached' && line.digest === digest);
    hash.update(chunk);
  }
  return { status: response.status, digest: `sha256:${hash.digest('hex')}`, holderDoneAtFirstByte };
}

describe('a fleet on one bucket: a follower streams the holder\'s download from its peer listener', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  let redis: RedisServer;
  let bucket: string;
  const work = tempDir('pullmirror-s3-peers');

  before(async () => {
    [world, s3, redis] = await Promise.all([startWorld(), startS3(), startRedis()]);
    bucket = await s3.createBucket('peers');
  });
  after(async () => {
    await world?.close();
    await s3?.close();
    await redis?.close();
    await work.cleanup();
  });

  /** An instance on the bucket with a spool of its own and a peer listener advertising `advertise`. */
  const member = (name: string, peers: { addr: string; advertise: string }) => ({
    storage: {
      s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: path.join(work.path, name) },
      cache: { blobdescriptor: 'redis' },
    },
    http: { secret: SECRET },
    redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { lease: '2s', peers: { ...peers, timeout: '2s' } } },
  });

  it('the follower sends bytes while the holder still downloads, verified, with one upstream GET', async () => {
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a1', { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' }) }),
      world.startMirror({ config: member('b1', { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' }) }),
    ]);
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 6, label: 's3-peer-stream' });
    const blobPath = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', blobPath) });
    try {
      const fromHolder = pullNoting(`${a.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
      assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
      const fromFollower = await pullNoting(`${b.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
      assert.deepEqual(fromFollower, { status: 200, digest: blob.digest, holderDoneAtFirstByte: false }, "B's client had bytes before A had stored the blob");
      assert.equal((await fromHolder).digest, blob.digest);
      assert.ok(b.logLines().some((line) => line.message === 'streaming a blob download from the instance that holds it' && line.digest === blob.digest));
      assert.equal(world.proxy.count('GET', blobPath), 1, 'one upstream GET between both instances');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder whose peer listener cannot be reached is waited for: the follower serves the committed blob', async () => {
    // A advertises an address that takes connections and closes them: a peer listener gone wrong.
    const recorder = await startConnectionRecorder();
    try {
      const [a, b] = await Promise.all([
        world.startMirror({ config: member('a2', { addr: '127.0.0.1:0', advertise: recorder.address }) }),
        world.startMirror({ config: member('b2', { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' }) }),
      ]);
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 4, label: 's3-peer-unreachable' });
      const blobPath = new RegExp(`/blobs/${blob.digest}$`);
      world.proxy.reset();
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', blobPath) });
      try {
        const fromHolder = pullNoting(`${a.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
        assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
        const fromFollower = await pullNoting(`${b.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
        assert.equal(fromFollower.status, 200);
        assert.equal(fromFollower.digest, blob.digest);
        assert.equal((await fromHolder).digest, blob.digest);
        assert.ok(recorder.connections >= 1, "B tried A's advertised address");
        assert.ok(b.logLines().some((line) => line.message === 'holder not readable as a peer; waiting for its commit' && line.digest === blob.digest));
        assert.equal(world.proxy.count('GET', blobPath), 1, 'still one upstream GET');
      } finally {
        world.proxy.setFault(undefined);
        await Promise.all([a.stop(), b.stop()]);
      }
    } finally {
      await recorder.close();
    }
  });
});
