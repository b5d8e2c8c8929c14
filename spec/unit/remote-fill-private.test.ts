/**
 * A fleet whose instances do not share their spools (a bucket, issue 25 item 7): a follower
 * cannot read the holder's file, so it waits for the commit and reads the store. Two "instances"
 * here are two blob stores with spools of their own over one in-memory driver (the bucket),
 * coordinated by a real Redis (RedisFillCoordinator), as two processes are.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { loadConfig } from '../../src/config/load.ts';
import type { BlobLease } from '../../src/fleet/fill-coordinator.ts';
import { RedisFillCoordinator } from '../../src/fleet/redis-fill-coordinator.ts';
import { RemoteFill } from '../../src/fleet/remote-fill.ts';
import { fillSource } from '../../src/proxy/shared-fill.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { BlobStore } from '../../src/storage/blob-store.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { StorageDriverError } from '../../src/storage/driver/storage-driver.ts';
import { collector } from '../support/collect.ts';
import { seededBytes, sha256Digest } from '../support/images.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { eventually } from '../support/wait.ts';

const logger = winston.createLogger({ silent: true });

/** The bucket, whose stat fails 'unavailable' while `failing` is set (as the BreakerDriver's does while open). */
class StallingDriver extends MemoryDriver {
  failing = false;
  refused = 0;
  override async stat(key: string) {
    if (this.failing) {
      this.refused++;
      throw new StorageDriverError('unavailable', 'stat', `stat ${key}: not asked, the store failed a moment ago`, { key });
    }
    return super.stat(key);
  }
}
const LEASE_MS = 600;

describe('a fleet follower where spools are private (one bucket, no shared volume)', { skip: skipUnlessBinaries(['redis-server']) }, () => {
  let redis: RedisServer;
  let dir: TempDir;
  const connections: RedisConnection[] = [];
  const coordinators: RedisFillCoordinator[] = [];
  before(async () => {
    redis = await startRedis();
    dir = tempDir('pullmirror-private-spool');
  });
  after(async () => {
    await Promise.all(coordinators.map((c) => c.close()));
    await Promise.all(connections.map((c) => c.close()));
    await redis?.close();
    await dir?.cleanup();
  });

  async function instance(name: string, driver: MemoryDriver) {
    const connection = createRedisConnection(loadConfig({ env: { REGISTRY_REDIS_ADDR: redis.addr } }).redis, logger, '00000000000000aa');
    connections.push(connection);
    assert.ok(await connection.whenReady(5_000));
    const fleet = new RedisFillCoordinator({ redis: connection, leaseMs: LEASE_MS, logger, instance: `${name}-1-0000000a` });
    coordinators.push(fleet);
    return { fleet, blobs: new BlobStore({ driver, tempDir: path.join(dir.path, name) }) };
  }

  /** The follower's side, as BlobDownloads builds it for a store without a shared volume. */
  function follow(blobs: BlobStore, fleet: RedisFillCoordinator, digest: string, takeOver: (abandoned: string | undefined) => Promise<undefined>) {
    const ref = { digest: parseDigest(digest) };
    assert.equal(blobs.committedFile(ref.digest), undefined, 'no file of the committed blob to read');
    return new RemoteFill({
      digest,
      committedFile: blobs.committedFile(ref.digest),
      committedSize: async () => (await blobs.stat(ref))?.size,
      openCommitted: () => blobs.openObject(ref.digest),
      coordinator: fleet,
      fileOf: (holder) => blobs.fillFile(holder.instance, ref.digest, holder.epoch),
      stallMs: LEASE_MS,
      logger,
      takeOver,
    });
  }

  async function claimBoth(label: string) {
    const bucket = new MemoryDriver();
    const a = await instance(`a${label}`, bucket);
    const b = await instance(`b${label}`, bucket);
    const bytes = seededBytes(`private-${label}`, 700_000);
    const digest = sha256Digest(bytes);
    const mine = await a.fleet.claimBlob(digest);
    assert.equal(mine.kind, 'mine');
    const lease = (mine as { lease: BlobLease }).lease;
    await lease.publish(bytes.length);
    const theirs = await b.fleet.claimBlob(digest);
    assert.equal(theirs.kind, 'theirs');
    return { a, b, bytes, digest, lease };
  }

  it('waits for the holder to commit, then sends the blob from the store, ranges too', async () => {
    const { a, b, bytes, digest, lease } = await claimBoth('commit');
    const remote = follow(b.blobs, b.fleet, digest, async () => assert.fail('no takeover: the holder is alive'));
    await remote.ready;
    assert.equal(remote.size, bytes.length, 'the size the holder announced, before any byte is readable');
    const whole = collector();
    const part = collector();
    const sending = Promise.all([fillSource(digest, remote).send(whole.res), fillSource(digest, remote).send(part.res, { start: 100, end: 199 })]);

    const writer = await a.blobs.createWriter(parseDigest(digest), lease.epoch);
    await writer.write(bytes);
    await writer.commit(bytes.length);
    await lease.release('committed');

    await sending;
    assert.deepEqual(whole.body(), bytes);
    assert.deepEqual(part.body(), bytes.subarray(100, 200));
    assert.deepEqual(await remote.done, { digest, size: bytes.length });
  });

  it('goes on following while the store cannot be asked for a moment (a bucket failing, its breaker open), and sends the blob once committed', { timeout: 20_000 }, async () => {
    const bucket = new StallingDriver();
    const a = await instance('a-unasked', bucket);
    const b = await instance('b-unasked', bucket);
    const bytes = seededBytes('private-unasked', 700_000);
    const digest = sha256Digest(bytes);
    const mine = await a.fleet.claimBlob(digest);
    const lease = (mine as { lease: BlobLease }).lease;
    await lease.publish(bytes.length);
    assert.equal((await b.fleet.claimBlob(digest)).kind, 'theirs');
    // The follower's first look at the store fails, as every look does while a breaker is open.
    bucket.failing = true;
    const remote = follow(b.blobs, b.fleet, digest, async () => assert.fail('no takeover: the holder is alive'));
    await remote.ready;
    const whole = collector();
    const sending = fillSource(digest, remote).send(whole.res);
    assert.ok(await eventually(() => bucket.refused >= 2, 5_000), 'the follower asked the failing store, more than once');
    bucket.failing = false;

    const writer = await a.blobs.createWriter(parseDigest(digest), lease.epoch);
    await writer.write(bytes);
    await writer.commit(bytes.length);
    await lease.release('committed');
    await sending;
    assert.deepEqual(whole.body(), bytes);
  });

  it("fails its readers when the holder's download fails", async () => {
    const { b, digest, lease } = await claimBoth('fail');
    const remote = follow(b.blobs, b.fleet, digest, async () => assert.fail('no takeover: the holder said it failed'));
    await remote.ready;
    const { res } = collector();
    const sending = fillSource(digest, remote).send(res);
    await lease.release({ failed: { code: 'DIGEST_INVALID', message: 'upstream content does not match its digest', status: 502 } });
    await assert.rejects(sending, /does not match its digest/);
    await assert.rejects(remote.done, /does not match its digest/);
  });

  it('takes over, with no file to resume from, when the holder dies', async () => {
    const { a, b, digest } = await claimBoth('dies');
    const abandonedFiles: (string | undefined)[] = [];
    const remote = follow(b.blobs, b.fleet, digest, async (abandoned) => {
      abandonedFiles.push(abandoned);
      throw new Error('taken over here');
    });
    await remote.ready;
    const { res } = collector();
    const sending = fillSource(digest, remote).send(res);
    // The holder stops renewing its claim, as a process that died does.
    await a.fleet.close();
    await assert.rejects(sending, /taken over here/);
    assert.deepEqual(abandonedFiles, [undefined]);
  });
});
