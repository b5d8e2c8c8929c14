/**
 * The mirror with its store on S3 (a real RADOS Gateway): the blob, manifest and tag semantics
 * over the s3 driver. A cold pull fills through the local spool and commits to the bucket; a
 * warm pull reads the bucket; a second instance with an empty spool of its own serves what the
 * first filled, with upstream refusing every blob and manifest GET.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { S3Driver } from '../../src/storage/driver/s3-driver.ts';
import { storeId } from '../../src/storage/store-id.ts';
import { pushImage, pushRandomBlob, randomLayer, sha256Digest, sha256OfBody, type PushedImage } from '../support/images.ts';
import { startRedis } from '../support/redis.ts';
import { tempDir } from '../support/processes.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const run = promisify(execFile);

/** GETs of blob objects the bucket answered with a presigned URL's signature (a client redirected to it), from RGW's log. */
function presignedBlobGets(s3: S3Server, bucket: string): number {
  return s3.requestLog().filter((r) => r.method === 'GET' && r.status < 300 && r.path.startsWith(`/${bucket}/`) && r.path.includes('/blobs/sha256/') && r.path.includes('X-Amz-Signature=')).length;
}

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

  it('storage.redirect, opt-in: a warm blob GET answers 307 to a presigned GET of the bucket, which skopeo and curl -L follow to verified bytes; HEAD, 304 and 416 are answered here', async () => {
    const redirectBucket = await s3.createBucket('redirect');
    const onBucket = (spool: string, redirect?: { disable: boolean }) => ({
      storage: { s3: { ...onS3(spool).storage.s3, bucket: redirectBucket }, ...(redirect ? { redirect } : {}) },
    });
    const [layer] = image.layerDigests;
    const layerUrl = (mirror: { url: string }) => `${mirror.url}/v2/library/ons3/blobs/${layer}`;

    // Off by default: the warm blob is streamed by the mirror, as it is filled.
    const plain = await world.startMirror({ config: onBucket(path.join(work.path, 'spool-redirect-off')) });
    try {
      assert.equal((await pull(plain.port, 'redirect-cold')).manifest.digest, image.manifestDigest);
      const warm = await fetch(layerUrl(plain), { redirect: 'manual' });
      assert.equal(warm.status, 200, 'redirects are off unless asked for');
      assert.equal(await sha256OfBody(warm), layer);
    } finally {
      await plain.stop();
    }

    const mirror = await world.startMirror({ config: onBucket(path.join(work.path, 'spool-redirect-on'), { disable: false }) });
    try {
      world.proxy.reset();
      const presignedBefore = presignedBlobGets(s3, redirectBucket);
      const pulled = await pull(mirror.port, 'redirect-warm');
      assert.equal(pulled.manifest.digest, image.manifestDigest);
      for (const digest of [image.configDigest, ...image.layerDigests]) assert.ok(pulled.blobs.has(digest), `${digest}: fetched by skopeo and verified`);
      assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'no blob GET upstream');
      // The bucket's own log: skopeo fetched each blob from it with the presigned URL.
      assert.ok(presignedBlobGets(s3, redirectBucket) - presignedBefore >= 3, 'each blob fetched from the bucket by the client');

      const answer = await fetch(layerUrl(mirror), { redirect: 'manual' });
      await answer.arrayBuffer();
      assert.equal(answer.status, 307);
      const location = answer.headers.get('location') ?? '';
      assert.ok(location.startsWith(`${s3.endpoint}/${redirectBucket}/`) && location.includes('X-Amz-Signature='), location);
      assert.ok(!location.includes(s3.secretAccessKey), 'no secret in the URL');
      assert.match(location, /X-Amz-Expires=300(&|$)/, 'valid for five minutes');
      assert.equal(answer.headers.get('docker-content-digest'), layer);
      assert.equal(answer.headers.get('cache-control'), 'no-store', 'the URL expires: nobody keeps the redirect');
      const followed = await fetch(location);
      assert.equal(followed.status, 200);
      assert.equal(await sha256OfBody(followed), layer, 'the presigned URL gives the blob, no credentials needed');

      // A range: curl follows the 307 with its Range header, and the bucket answers the part.
      const whole = Buffer.from(await (await fetch(layerUrl(mirror))).arrayBuffer());
      assert.equal(sha256Digest(whole), layer, 'fetch follows it too');
      const part = path.join(work.path, 'redirect-range');
      const { stdout } = await run('curl', ['-sS', '-L', '-r', '1000-1999', '-o', part, '-w', '%{http_code} %{num_redirects}', layerUrl(mirror)]);
      assert.equal(stdout, '206 1');
      assert.deepEqual(readFileSync(part), whole.subarray(1000, 2000));

      // What needs no content is answered here.
      const head = await fetch(layerUrl(mirror), { method: 'HEAD', redirect: 'manual' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(whole.length));
      assert.equal(head.headers.get('location'), null);
      const cached = await fetch(layerUrl(mirror), { redirect: 'manual', headers: { 'if-none-match': `"${layer}"` } });
      assert.equal(cached.status, 304);
      const past = await fetch(layerUrl(mirror), { redirect: 'manual', headers: { range: `bytes=${whole.length}-` } });
      assert.equal(past.status, 416);
      assert.equal((await past.json()).errors[0].code, 'RANGE_NOT_SATISFIABLE');
    } finally {
      await mirror.stop();
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
