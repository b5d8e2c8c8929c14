/**
 * The mirror with its store on S3 (a real RADOS Gateway): the blob, manifest and tag semantics
 * over the s3 driver. A cold pull fills through the local spool and commits to the bucket; a
 * warm pull reads the bucket; a second instance with an empty spool of its own serves what the
 * first filled, with upstream refusing every blob and manifest GET.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { S3Driver } from '../../src/storage/driver/s3-driver.ts';
import { storeId } from '../../src/storage/store-id.ts';
import { pushImage, pushRandomBlob, randomLayer, sha256OfBody, type PushedImage } from '../support/images.ts';
import { startRedis } from '../support/redis.ts';
import { tempDir } from '../support/processes.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

describe('a mirror whose store is a bucket (storage.s3 on RADOS Gateway)', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  let bucket: string;
  let image: PushedImage;
  const work = tempDir('pullmirror-s3-mirror');

  before(async () => {
    [world, s3] = await Promise.all([startWorld(), startS3()]);
    bucket = await s3.createBucket('mirror');
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/ons3', tag: 'v1', layers: [randomLayer('s3-0', 3 * 1024 * 1024), randomLayer('s3-1', 2000)], format: 'oci' });
  });
  after(async () => {
    await world?.close();
    await s3?.close();
    await work.cleanup();
  });

  const onS3 = (spool: string) => ({
    storage: {
      s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: spool },
    },
  });

  async function pull(port: number, label: string) {
    const dest = path.join(work.path, label);
    await skopeoCopy(`docker://127.0.0.1:${port}/library/ons3:v1`, `dir:${dest}`);
    return readDirImage(dest);
  }

  it('fills the bucket on a cold pull, serves it warm, and a second instance with an empty spool serves it with upstream refusing GETs', async () => {
    const first = await world.startMirror({ config: onS3(path.join(work.path, 'spool-a')) });
    const cold = await pull(first.port, 'cold');
    assert.equal(cold.manifest.digest, image.manifestDigest);
    const listed = await s3.client().send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (listed.Contents ?? []).map((object) => object.Key ?? '');
    for (const digest of [image.manifestDigest, image.configDigest, ...image.layerDigests]) {
      const hex = digest.slice('sha256:'.length);
      assert.ok(keys.some((key) => key.endsWith(`blobs/sha256/${hex.slice(0, 2)}/${hex}`)), `${digest} in the bucket`);
    }
    assert.ok(keys.some((key) => key.endsWith('repositories/library/ons3/_tags/v1')), 'the tag in the bucket');

    world.proxy.reset();
    const warm = await pull(first.port, 'warm');
    assert.equal(warm.manifest.digest, image.manifestDigest);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'warm: no blob GET upstream');

    // Another instance, its spool empty: everything it serves comes from the bucket.
    world.proxy.setFault({ kind: 'status', status: 503, match: matchRequests('GET', /\/(blobs|manifests)\//) });
    try {
      const second = await world.startMirror({ config: onS3(path.join(work.path, 'spool-b')) });
      const fromBucket = await pull(second.port, 'second');
      assert.equal(fromBucket.manifest.digest, image.manifestDigest);
      for (const digest of [image.configDigest, ...image.layerDigests]) assert.ok(fromBucket.blobs.has(digest), digest);
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('writes the store id only where none is (If-None-Match: *): instances starting together on a new bucket agree on one', async () => {
    const driver = new S3Driver({ bucket: await s3.createBucket('storeid'), region: s3.region, endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    try {
      assert.equal(await driver.putContentIfAbsent('_probe-once', 'first'), true);
      assert.equal(await driver.putContentIfAbsent('_probe-once', 'second'), false);
      assert.equal((await driver.getContent('_probe-once'))?.toString(), 'first', 'the first write stays');
      const ids = await Promise.all(Array.from({ length: 4 }, () => storeId(driver)));
      assert.match(ids[0] ?? '', /^[0-9a-f]{16}$/);
      assert.deepEqual(new Set(ids), new Set([ids[0]]));
    } finally {
      await driver.close();
    }
  });

  it('a fleet on one bucket with no shared volume: 2 × 8 concurrent cold GETs of a blob make one upstream GET, the follower reads the bucket', async () => {
    const redis = await startRedis();
    try {
      const fleetMember = (spool: string) => ({
        storage: { ...onS3(spool).storage, cache: { blobdescriptor: 'redis' } },
        redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { lease: '2s' } },
      });
      const [a, b] = await Promise.all([world.startMirror({ config: fleetMember(path.join(work.path, 'fleet-a')) }), world.startMirror({ config: fleetMember(path.join(work.path, 'fleet-b')) })]);
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/fleet', { sizeMiB: 24, label: 's3-fleet-cold' });
      world.proxy.reset();
      world.proxy.setFault({ kind: 'delay', ms: 1000, match: matchRequests('GET', new RegExp(`/blobs/${blob.digest}$`)) });
      try {
        const digests = await Promise.all(
          [a, b].flatMap((m) =>
            Array.from({ length: 8 }, async () => {
              const response = await fetch(`${m.url}/v2/library/fleet/blobs/${blob.digest}`);
              assert.equal(response.status, 200);
              return sha256OfBody(response);
            }),
          ),
        );
        assert.deepEqual(new Set(digests), new Set([blob.digest]));
        assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`)), 1, 'one upstream GET between both instances');
        const followers = [a, b].filter((m) => m.logLines().some((line) => line.message === 'following a blob download of another instance'));
        assert.equal(followers.length, 1, 'one instance downloads, the other follows');
      } finally {
        world.proxy.setFault(undefined);
        await Promise.all([a.stop(), b.stop()]);
      }
    } finally {
      await redis.close();
    }
  });
});
