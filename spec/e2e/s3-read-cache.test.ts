/**
 * storage.s3.readcache on a real RADOS Gateway: a hot blob served whole from the bucket is copied
 * to a local directory, verified, and served from there afterwards (no GetObject), also while the
 * bucket is unreachable; the directory stays within its bound, evicting the least recently used;
 * a cached file changed on disk is never served; a blob deleted through the store is not served
 * from the cache; the directory is emptied at start. The driver-level cases run the cache over
 * the real s3 driver (counting its GetObjects by the pullmirror_s3_requests_total cells); the
 * mirror-level case pulls with skopeo through a mirror whose bucket is behind a proxy.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { Logger } from '../../src/logging/logger.ts';
import { s3Requests } from '../../src/metrics/metrics.ts';
import { createStorageDriver } from '../../src/storage/driver/create-driver.ts';
import type { MeteredDriver } from '../../src/storage/driver/metered-driver.ts';
import { cachedName, ReadCacheDriver } from '../../src/storage/driver/read-cache-driver.ts';
import { S3Driver } from '../../src/storage/driver/s3-driver.ts';
import type { OpenedObject } from '../../src/storage/driver/storage-driver.ts';
import { getBlob } from '../support/blob-get.ts';
import { openFilesUnder } from '../support/descriptors.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import { tempDir } from '../support/processes.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { matchRequests, startUpstreamProxy, type UpstreamProxy } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MiB = 1024 * 1024;

/** Reads an opened object whole; its sha256 and length. */
async function readWhole(opened: OpenedObject): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done();
    },
  });
  await opened.send(sink, { start: 0, end: opened.size - 1 });
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Bytes of the files in a directory (cached files and fills in flight alike). */
function directoryBytes(dir: string): number {
  return readdirSync(dir).reduce((total, name) => total + statSync(path.join(dir, name)).size, 0);
}

const getObjects = () => s3Requests.cell('GetObject').value;

describe('storage.s3.readcache in the config', () => {
  const bucketEnv = { REGISTRY_STORAGE_S3_BUCKET: 'pm-bucket', REGISTRY_STORAGE_S3_REGION: 'us-east-1' };
  const withCache = (readcache: string) => loadConfig({ env: { ...bucketEnv, REGISTRY_STORAGE_S3_READCACHE: readcache } }).storage.s3?.readcache;

  it('is off unless set; takes a size with a unit and an optional directory; refuses a size of 0', () => {
    assert.equal(loadConfig({ env: bucketEnv }).storage.s3?.readcache, undefined);
    assert.deepEqual(withCache('{size: 2GiB}'), { size: 2 * 1024 * MiB });
    assert.deepEqual(withCache('{size: 512MiB, directory: /cache}'), { size: 512 * MiB, directory: '/cache' });
    assert.throws(() => withCache('{size: 0}'), /readcache\.size/);
    assert.throws(() => withCache('{directory: /cache}'), /readcache\.size/);
  });

  it('is put in front of the bucket for the mirror only when set; a directory that cannot be used is one line and no cache', async () => {
    const work = tempDir('pullmirror-read-cache-config');
    try {
      const config = (readcache?: string) => loadConfig({ env: { ...bucketEnv, ...(readcache ? { REGISTRY_STORAGE_S3_READCACHE: readcache } : {}) } });
      const lines: string[] = [];
      const logger = { error: (line: string) => lines.push(line) } as unknown as Logger;
      const cached = async (readcache: string | undefined, mirror = true) => {
        const driver = (await createStorageDriver(config(readcache), { tempDir: work.path, readCache: mirror ? { logger } : undefined })) as MeteredDriver;
        await driver.close();
        return driver.inner instanceof ReadCacheDriver;
      };
      assert.equal(await cached(undefined), false, 'off by default');
      assert.equal(await cached(`{size: 1GiB, directory: ${path.join(work.path, 'cache')}}`), true);
      assert.equal(await cached(`{size: 1GiB, directory: ${path.join(work.path, 'cache')}}`, false), false, 'a command (gc, stats) leaves a running mirror\'s cache alone');
      writeFileSync(path.join(work.path, 'a-file'), '');
      assert.equal(await cached(`{size: 1GiB, directory: ${path.join(work.path, 'a-file', 'cache')}}`), false);
      assert.equal(lines.length, 1);
      assert.match(lines[0], /^storage\.s3\.readcache\.directory: cannot use .*a-file\/cache \(ENOTDIR\); serving without the read cache$/);
    } finally {
      await work.cleanup();
    }
  });
});

describe('storage.s3.readcache (over the s3 driver on RADOS Gateway)', { skip: skipUnlessS3() }, () => {
  let s3: S3Server;
  let bucket: string;
  const work = tempDir('pullmirror-s3-read-cache');
  let label = 0;

  before(async () => {
    s3 = await startS3();
    bucket = await s3.createBucket('readcache');
  });
  after(async () => {
    await s3?.close();
    await work.cleanup();
  });

  function s3Driver(): S3Driver {
    return new S3Driver({ bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, rootDirectory: '' });
  }

  /** A random blob stored in the bucket at its key. */
  async function storedBlob(driver: S3Driver, size: number): Promise<{ key: string; digest: string; size: number; name: string }> {
    const bytes = randomBytes(size);
    const hex = createHash('sha256').update(bytes).digest('hex');
    const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
    const local = path.join(work.path, `upload-${++label}`);
    writeFileSync(local, bytes);
    await driver.commitFile(local, key);
    return { key, digest: `sha256:${hex}`, size, name: `sha256-${hex}` };
  }

  async function cacheOver(inner: S3Driver, maxBytes: number, directory = path.join(work.path, `cache-${++label}`), recheckMs?: number): Promise<ReadCacheDriver> {
    return ReadCacheDriver.create(inner, { directory, maxBytes, recheckMs });
  }

  it('serves a blob read whole once from the local copy afterwards: no GetObject, verified bytes', async () => {
    const inner = s3Driver();
    const cache = await cacheOver(inner, 64 * MiB);
    try {
      const blob = await storedBlob(inner, 3 * MiB + 17);
      assert.equal(cache.has(blob.key), false);
      assert.deepEqual(await readWhole((await cache.open(blob.key))!), { digest: blob.digest, size: blob.size }, 'first read: from the bucket');
      assert.ok(await eventually(() => cache.has(blob.key)), 'copied into the cache once verified');
      assert.deepEqual(readdirSync(cache.directory), [blob.name], 'one file, named by its digest; no temp file left');

      const before = getObjects();
      for (let i = 0; i < 3; i++) assert.deepEqual(await readWhole((await cache.open(blob.key, blob.size))!), { digest: blob.digest, size: blob.size });
      assert.equal(getObjects() - before, 0, 'no GetObject for a cached blob');

      // A range is served from the file too.
      const opened = (await cache.open(blob.key))!;
      const chunks: Buffer[] = [];
      await opened.send(new Writable({ write: (chunk: Buffer, _e, done) => (chunks.push(chunk), done()) }), { start: 1000, end: 1999 });
      assert.equal(Buffer.concat(chunks).length, 1000);
      assert.equal(getObjects() - before, 0);
    } finally {
      await cache.close();
    }
  });

  it('keeps a copy of a file committed through it (a fill\'s verified spool), none when the commit fails', async () => {
    const inner = s3Driver();
    const cache = await cacheOver(inner, 16 * MiB);
    try {
      const bytes = randomBytes(2 * MiB + 5);
      const hex = createHash('sha256').update(bytes).digest('hex');
      const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
      const spoolFile = path.join(work.path, `spool-${++label}`);
      writeFileSync(spoolFile, bytes);

      // A commit cancelled: nothing in the bucket, nothing cached, no temp file left.
      await assert.rejects(cache.commitFile(spoolFile, key, AbortSignal.abort()));
      assert.equal(cache.has(key), false);
      assert.deepEqual(readdirSync(cache.directory), []);

      writeFileSync(spoolFile, bytes);
      await cache.commitFile(spoolFile, key);
      assert.equal(existsSync(spoolFile), false, 'the spool file went to the bucket');
      assert.ok(cache.has(key), 'cached as it was committed');
      assert.deepEqual(readdirSync(cache.directory), [`sha256-${hex}`]);
      const before = getObjects();
      assert.deepEqual(await readWhole((await cache.open(key, bytes.length))!), { digest: `sha256:${hex}`, size: bytes.length });
      assert.equal(getObjects() - before, 0, 'the first read is local');
      assert.equal((await inner.stat(key))?.size, bytes.length, 'and the bucket has it');

      // A large blob goes up in parts while it downloads (stageFile): kept alike at its commit.
      const large = randomBytes(12 * MiB);
      const largeHex = createHash('sha256').update(large).digest('hex');
      const largeKey = `blobs/sha256/${largeHex.slice(0, 2)}/${largeHex}`;
      const largeFile = path.join(work.path, `spool-${++label}`);
      writeFileSync(largeFile, large);
      const staged = cache.stageFile!(largeFile, largeKey, large.length)!;
      assert.ok(staged, 'a multipart upload');
      staged.grown(large.length);
      await staged.commit();
      assert.ok(cache.has(largeKey));
      const beforeLarge = getObjects();
      assert.deepEqual(await readWhole((await cache.open(largeKey, large.length))!), { digest: `sha256:${largeHex}`, size: large.length });
      assert.equal(getObjects() - beforeLarge, 0);
    } finally {
      await cache.close();
    }
  });

  it('keeps the directory within its bound, least recently used out first', async () => {
    const inner = s3Driver();
    const bound = 3 * MiB + 512 * 1024;
    const cache = await cacheOver(inner, bound);
    try {
      const blobs: Awaited<ReturnType<typeof storedBlob>>[] = [];
      for (let i = 0; i < 6; i++) blobs.push(await storedBlob(inner, MiB));
      for (const [index, blob] of blobs.slice(0, 4).entries()) {
        await readWhole((await cache.open(blob.key))!);
        assert.ok(await eventually(() => cache.has(blob.key)), `blob ${index} cached`);
        assert.ok(directoryBytes(cache.directory) <= bound, `directory ${directoryBytes(cache.directory)} bytes, bound ${bound}`);
      }
      // Three fit: the first read went out for the fourth.
      assert.deepEqual(blobs.slice(0, 4).map((blob) => cache.has(blob.key)), [false, true, true, true]);
      // Blob 1 used again (from the cache): blob 2 is now the least recently used.
      await readWhole((await cache.open(blobs[1].key))!);
      await readWhole((await cache.open(blobs[4].key))!);
      assert.ok(await eventually(() => cache.has(blobs[4].key)));
      assert.deepEqual(blobs.slice(0, 5).map((blob) => cache.has(blob.key)), [false, true, false, true, true]);
      assert.ok(directoryBytes(cache.directory) <= bound);
      assert.ok(cache.bytes <= bound);
      // A blob larger than the bound is never copied.
      const large = await storedBlob(inner, bound + 1);
      await readWhole((await cache.open(large.key))!);
      assert.equal(cache.has(large.key), false);
      assert.ok(directoryBytes(cache.directory) <= bound);
    } finally {
      await cache.close();
    }
  });

  it('a cached file written to on disk is dropped and the blob read verified from the bucket', async () => {
    const inner = s3Driver();
    const cache = await cacheOver(inner, 16 * MiB);
    try {
      const blob = await storedBlob(inner, 2 * MiB);
      await readWhole((await cache.open(blob.key))!);
      assert.ok(await eventually(() => cache.has(blob.key)));
      const file = path.join(cache.directory, blob.name);
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.from([0x5a ^ 0xff]), 0, 1, 4096);
      closeSync(fd);

      const before = getObjects();
      assert.deepEqual(await readWhole((await cache.open(blob.key))!), { digest: blob.digest, size: blob.size }, 'the good bytes, from the bucket');
      assert.ok(getObjects() - before >= 1, 'read from the bucket');
      // Read whole from the bucket again: a fresh verified copy replaces the changed file.
      assert.ok(await eventually(() => cache.has(blob.key)));
      assert.equal(`sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`, blob.digest, 'the file now cached is the verified one');
      assert.deepEqual(await readWhole((await cache.open(blob.key))!), { digest: blob.digest, size: blob.size });
    } finally {
      await cache.close();
    }
  });

  it('a blob deleted through the store is not served from the cache', async () => {
    const inner = s3Driver();
    const cache = await cacheOver(inner, 16 * MiB);
    try {
      const blob = await storedBlob(inner, MiB);
      await readWhole((await cache.open(blob.key))!);
      assert.ok(await eventually(() => cache.has(blob.key)));
      assert.equal(await cache.delete(blob.key), true);
      assert.equal(cache.has(blob.key), false);
      assert.equal(await cache.open(blob.key), undefined, 'gone from the bucket and from the cache');
      assert.ok(await eventually(() => readdirSync(cache.directory).length === 0), 'the file went');
    } finally {
      await cache.close();
    }
  });

  it('a blob deleted from the bucket by someone else (another instance, gc) goes from the cache once a use finds it gone', async () => {
    const inner = s3Driver();
    const cache = await cacheOver(inner, 16 * MiB, undefined, 0);
    try {
      const blob = await storedBlob(inner, MiB);
      await readWhole((await cache.open(blob.key))!);
      assert.ok(await eventually(() => cache.has(blob.key)));
      assert.equal(await inner.delete(blob.key), true, 'deleted behind the cache');
      // The use that finds it gone (served still: verified bytes, the window of the recheck).
      assert.deepEqual(await readWhole((await cache.open(blob.key))!), { digest: blob.digest, size: blob.size });
      assert.ok(await eventually(() => !cache.has(blob.key)), 'dropped once the bucket said it is gone');
      assert.equal(await cache.open(blob.key), undefined);
    } finally {
      await cache.close();
    }
  });

  it('is emptied at start (its own files only), passes other keys through, and names files only from digests', async () => {
    const inner = s3Driver();
    const directory = path.join(work.path, `cache-restart-${++label}`);
    const first = await cacheOver(inner, 16 * MiB, directory);
    const blob = await storedBlob(inner, MiB);
    await readWhole((await first.open(blob.key))!);
    assert.ok(await eventually(() => first.has(blob.key)));
    writeFileSync(path.join(directory, 'not-ours.txt'), 'kept');
    writeFileSync(path.join(directory, '.fill-0123abcd'), 'a crashed fill');
    const second = await cacheOver(inner, 16 * MiB, directory);
    try {
      assert.deepEqual(readdirSync(directory), ['not-ours.txt'], 'a copy from before is never served unverified');
      assert.equal(second.has(blob.key), false);
      await inner.putContent('repositories/library/x/_layers/sha256/ab', 'link');
      assert.equal((await second.getContent('repositories/library/x/_layers/sha256/ab'))?.toString(), 'link');
      const hex = 'ab'.repeat(32);
      assert.equal(cachedName(`blobs/sha256/ab/${hex}`), `sha256-${hex}`);
      for (const key of [`blobs/sha256/cd/${hex}`, `blobs/sha256/ab/${hex}/../x`, `blobs/md5/ab/${hex}`, `blobs/sha256/ab/${hex.slice(2)}`, `x/blobs/sha256/ab/${hex}`]) {
        assert.equal(cachedName(key), undefined, key);
      }
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('a mirror with storage.s3.readcache', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  /** In front of RGW: counts the mirror's requests to the bucket, and makes it unreachable. */
  let s3proxy: UpstreamProxy;
  let bucket: string;
  let image: PushedImage;
  const work = tempDir('pullmirror-s3-read-cache-mirror');

  before(async () => {
    [world, s3] = await Promise.all([startWorld(), startS3()]);
    s3proxy = await startUpstreamProxy(s3.endpoint);
    bucket = await s3.createBucket('mirror-readcache');
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/hot', tag: 'v1', layers: [randomLayer('hot-0', 3 * MiB), randomLayer('hot-1', 2000)], format: 'oci' });
  });
  after(async () => {
    await world?.close();
    await s3proxy?.close();
    await s3?.close();
    await work.cleanup();
  });

  async function pull(port: number, name: string) {
    const dest = path.join(work.path, name);
    await skopeoCopy(`docker://127.0.0.1:${port}/library/hot:v1`, `dir:${dest}`);
    return readDirImage(dest);
  }

  it('pulls hot blobs from the local copy with no GET of the bucket, and serves them verified while the bucket is unreachable', async () => {
    const spool = path.join(work.path, 'spool');
    const directory = path.join(work.path, 'readcache');
    const mirror = await world.startMirror({
      config: {
        proxy: { tagfreshness: '0' },
        storage: {
          s3: { bucket, region: s3.region, regionendpoint: s3proxy.url, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: spool, readcache: { size: '64MiB', directory } },
        },
      },
    });
    const blobs = [image.configDigest, ...image.layerDigests];
    const names = blobs.map((digest) => digest.replace(':', '-'));
    assert.equal((await pull(mirror.port, 'cold')).manifest.digest, image.manifestDigest);
    // Kept as they were committed (the fills' verified spool files).
    assert.ok(await eventually(() => names.every((name) => existsSync(path.join(directory, name))), 15_000), `cached: ${readdirSync(directory).join(', ')}`);

    s3proxy.reset();
    const hot = await pull(mirror.port, 'hot');
    assert.equal(hot.manifest.digest, image.manifestDigest);
    for (const digest of blobs) assert.ok(hot.blobs.has(digest), `${digest} pulled and verified`);
    assert.equal(s3proxy.count('GET', /\/blobs\/sha256\//), 0, 'no blob GET of the bucket');

    // The bucket unreachable (and upstream refusing blobs): the cached layer is still served, verified.
    s3proxy.setFault({ kind: 'reset', match: () => true });
    world.proxy.setFault({ kind: 'status', status: 503, match: matchRequests('GET', /\/blobs\//) });
    try {
      const [layer] = image.layerDigests;
      const outcome = await getBlob(`${mirror.url}/v2/library/hot/blobs/${layer}`, { deadlineMs: 30_000 });
      assert.equal(outcome.status, 200);
      assert.ok(outcome.complete);
      assert.equal(outcome.sha256, layer);
    } finally {
      s3proxy.setFault(undefined);
      world.proxy.setFault(undefined);
    }
    // Nothing left in flight: no fill's temp file, no descriptor into the cache once responses ended.
    assert.deepEqual(readdirSync(directory).filter((name) => name.startsWith('.')), []);
    assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, directory).length === 0, 15_000), `descriptors left: ${openFilesUnder(mirror.process.pid, directory).join(', ')}`);
  });
});
