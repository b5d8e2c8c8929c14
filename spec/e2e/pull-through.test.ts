import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, openSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pushBlob, pushImage, pushIndex, pushRandomBlob, randomLayer, seededBytes, sha256OfBody, type PushedImage, type PushedIndex } from '../support/images.ts';
import { tempFiles, type RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { accessLogCounter } from '../support/access-log.ts';
import { eventually } from '../support/wait.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { blobPath } from '../support/store.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, MIRROR_ACCOUNT, type World } from './fixtures.ts';


describe('pull-through: real skopeo pulls through pullmirror from a real registry', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let host: string;
  const work = tempDir('pullmirror-pulls');
  const images: Record<string, PushedImage> = {};
  const indexes: Record<string, PushedIndex> = {};

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    images.single = await pushImage(reg, PUSHER, { name: 'library/single', tag: '1.0', layers: [randomLayer('single-0', 64 * 1024)], format: 'docker' });
    images.multi = await pushImage(reg, PUSHER, {
      name: 'library/multi',
      tag: '2.0',
      layers: [randomLayer('multi-0', 300 * 1024), randomLayer('multi-1', 1024 * 1024), randomLayer('multi-2', 2048)],
      format: 'docker',
    });
    images.oci = await pushImage(reg, PUSHER, { name: 'team/ociimage', tag: 'v1', layers: [randomLayer('oci-0'), randomLayer('oci-1')], format: 'oci' });
    const listImages = [
      await pushImage(reg, PUSHER, { name: 'library/multiarch', layers: [randomLayer('list-amd64')], platform: { os: 'linux', architecture: 'amd64' }, format: 'docker' }),
      await pushImage(reg, PUSHER, { name: 'library/multiarch', layers: [randomLayer('list-arm64')], platform: { os: 'linux', architecture: 'arm64' }, format: 'docker' }),
    ];
    indexes.list = await pushIndex(reg, PUSHER, { name: 'library/multiarch', tag: 'latest', images: listImages, format: 'docker-list' });
    const indexImages = [
      await pushImage(reg, PUSHER, { name: 'team/ociindex', layers: [randomLayer('index-amd64')], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(reg, PUSHER, { name: 'team/ociindex', layers: [randomLayer('index-arm64')], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, format: 'oci' }),
    ];
    indexes.index = await pushIndex(reg, PUSHER, { name: 'team/ociindex', tag: 'stable', images: indexImages, format: 'oci-index' });
    // Check tags upstream on every request (freshness window 0), as distribution does.
    mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    host = `127.0.0.1:${mirror.port}`;
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  async function pull(ref: string, options: { all?: boolean } = {}) {
    const dest = path.join(work.path, `${ref.replace(/[^a-z0-9]/gi, '_')}-${Math.random().toString(36).slice(2)}`);
    await skopeoCopy(`docker://${host}/${ref}`, `dir:${dest}`, { all: options.all });
    return readDirImage(dest);
  }

  it('pulls a single-layer Docker image with its exact digests', async () => {
    const pulled = await pull('library/single:1.0');
    assert.equal(pulled.manifest.digest, images.single.manifestDigest);
    for (const digest of [images.single.configDigest, ...images.single.layerDigests]) assert.ok(pulled.blobs.has(digest), digest);
  });

  it('pulls a multi-layer image, an OCI manifest, a Docker manifest list and an OCI index', async () => {
    const multi = await pull('library/multi:2.0');
    assert.equal(multi.manifest.digest, images.multi.manifestDigest);
    assert.equal(multi.blobs.size, 4);
    const oci = await pull('team/ociimage:v1');
    assert.equal(oci.manifest.digest, images.oci.manifestDigest);
    assert.equal(oci.manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    for (const [key, ref] of [['list', 'library/multiarch:latest'], ['index', 'team/ociindex:stable']] as const) {
      const pulled = await pull(ref, { all: true });
      assert.equal(pulled.manifest.digest, indexes[key].digest, `${ref}: index digest`);
      assert.equal(pulled.instances.size, 2, `${ref}: both platform manifests`);
    }
  });

  it('serves a warm pull without any upstream blob or manifest GET', async () => {
    await pull('library/multi:2.0');
    world.proxy.reset();
    const again = await pull('library/multi:2.0');
    assert.equal(again.manifest.digest, images.multi.manifestDigest);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'no blob GET upstream');
    assert.equal(world.proxy.count('GET', /\/manifests\//), 0, 'no manifest GET upstream');
    assert.ok(world.proxy.count('HEAD', /\/manifests\/2\.0$/) <= 1, 'at most one tag freshness check');
  });

  it('serves a store written in the layout of the code before the storage driver warm: no upstream GET', async () => {
    // The layout as pullmirror wrote it before the driver layer (README "Storage"), written out
    // here by hand: an existing store must be served as it is, not downloaded again.
    const layers = [randomLayer('legacy-0', 100 * 1024), randomLayer('legacy-1', 3000)];
    const image = await pushImage(world.registry.url, PUSHER, { name: 'library/legacy', tag: 'old', layers, format: 'docker' });
    const root = path.join(work.path, 'legacy-store');
    const write = (file: string, content: Buffer | string) => {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, content);
    };
    const hex = (digest: string) => digest.slice('sha256:'.length);
    write(blobPath(root, image.manifestDigest), image.manifestBytes);
    write(blobPath(root, image.configDigest), image.configBytes);
    for (const layer of layers) write(blobPath(root, layer.digest), layer.bytes);
    const repository = path.join(root, 'repositories', 'library', 'legacy');
    write(path.join(repository, '_manifests', 'sha256', hex(image.manifestDigest)), JSON.stringify({ mediaType: image.mediaType, size: image.manifestBytes.length }));
    write(path.join(repository, '_tags', 'old'), image.manifestDigest);
    for (const digest of [image.configDigest, ...image.layerDigests]) write(path.join(repository, '_layers', 'sha256', hex(digest)), digest);

    const legacy = await world.startMirror({ root });
    world.proxy.reset();
    const dest = path.join(work.path, 'legacy-pull');
    await skopeoCopy(`docker://127.0.0.1:${legacy.port}/library/legacy:old`, `dir:${dest}`);
    const pulled = await readDirImage(dest);
    assert.equal(pulled.manifest.digest, image.manifestDigest);
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.ok(pulled.blobs.has(digest), digest);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'no blob GET upstream');
    assert.equal(world.proxy.count('GET', /\/manifests\//), 0, 'no manifest GET upstream');
  });

  it('answers manifests with their media type, digest and length, and honours ?ns=', async () => {
    const url = `${mirror.url}/v2/library/multiarch/manifests/latest`;
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), indexes.list.digest);
    assert.equal(head.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.list.v2+json');
    assert.equal(Number(head.headers.get('content-length')), indexes.list.bytes.length);
    const byDigest = await fetch(`${mirror.url}/v2/library/multiarch/manifests/${indexes.list.digest}`);
    assert.deepEqual(Buffer.from(await byDigest.arrayBuffer()), indexes.list.bytes, 'byte for byte');
    const ns = new URL(world.proxy.url).host;
    const withNs = await fetch(`${url}?ns=${encodeURIComponent(ns)}`);
    assert.equal(withNs.status, 200);
    assert.equal(withNs.headers.get('oci-namespace'), ns);
    await withNs.arrayBuffer();
    const otherNs = await fetch(`${url}?ns=quay.io`);
    assert.equal(otherNs.status, 404);
    assert.equal((await otherNs.json()).errors[0].code, 'NAME_UNKNOWN');
  });

  it('makes one upstream GET for 8 concurrent cold GETs of one blob, and every client gets the right bytes', async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/big', { sizeMiB: 24, label: 'concurrent-cold' });
    world.proxy.reset();
    const bodies = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const response = await fetch(`${mirror.url}/v2/library/big/blobs/${blob.digest}`);
        assert.equal(response.status, 200);
        assert.equal(Number(response.headers.get('content-length')), blob.size);
        return sha256OfBody(response);
      }),
    );
    assert.deepEqual(new Set(bodies), new Set([blob.digest]));
    assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`)), 1, 'exactly one upstream GET');
  });

  it('shares one upstream check between concurrent requests for a tag', async () => {
    world.proxy.reset();
    world.proxy.setFault({ kind: 'delay', ms: 400, match: matchRequests('HEAD', /\/manifests\/1\.0$/), times: 1 });
    const responses = await Promise.all(Array.from({ length: 10 }, () => fetch(`${mirror.url}/v2/library/single/manifests/1.0`)));
    for (const response of responses) {
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('docker-content-digest'), images.single.manifestDigest);
      await response.arrayBuffer();
    }
    assert.equal(world.proxy.count('HEAD', /\/manifests\/1\.0$/), 1);
  });

  it('serves byte ranges (206) from a cold and a warm blob, and 416 for an unsatisfiable one', async () => {
    const bytes = seededBytes('range-blob', 200_000);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/ranged', bytes);
    for (const state of ['cold', 'warm']) {
      const response = await fetch(`${mirror.url}/v2/library/ranged/blobs/${digest}`, { headers: { range: 'bytes=1000-1999' } });
      assert.equal(response.status, 206, state);
      assert.equal(response.headers.get('content-range'), `bytes 1000-1999/${bytes.length}`);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes.subarray(1000, 2000), state);
    }
    const tail = await fetch(`${mirror.url}/v2/library/ranged/blobs/${digest}`, { headers: { range: `bytes=${bytes.length - 10}-` } });
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), bytes.subarray(bytes.length - 10));
    const beyond = await fetch(`${mirror.url}/v2/library/ranged/blobs/${digest}`, { headers: { range: `bytes=${bytes.length}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${bytes.length}`);
    assert.equal((await beyond.json()).errors[0].code, 'RANGE_NOT_SATISFIABLE');
  });

  it('answers a cold conditional GET (If-None-Match with its digest: 304; an unsatisfiable Range: 416) without downloading the blob', async () => {
    const bytes = seededBytes('conditional-cold', 300_000);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/conditional', bytes);
    // What reached the upstream registry, from its own access log.
    const upstream = accessLogCounter(world.registry.logFile);
    const url = `${mirror.url}/v2/library/conditional/blobs/${digest}`;
    const notModified = await fetch(url, { headers: { 'if-none-match': `"${digest}"` } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('etag'), `"${digest}"`);
    assert.equal(notModified.headers.get('docker-content-digest'), digest);
    const beyond = await fetch(url, { headers: { range: `bytes=${bytes.length}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${bytes.length}`);
    assert.equal((await beyond.json()).errors[0].code, 'RANGE_NOT_SATISFIABLE');
    const blobRequests = new RegExp(`/blobs/${digest}$`);
    // Each was decided from a HEAD upstream; give a download either might have started the
    // time to show in the log (a 300 kB blob takes milliseconds).
    assert.ok(await eventually(() => upstream.count('*', blobRequests) >= 2, 5_000), JSON.stringify(upstream.requests));
    await sleep(500);
    assert.equal(upstream.count('GET', blobRequests), 0, `no upstream GET of the blob: ${JSON.stringify(upstream.requests)}`);
    assert.ok(upstream.requests.some((r) => r.method === 'HEAD' && blobRequests.test(r.path) && r.status === 200), 'what the blob is was asked with a HEAD');
    assert.equal(existsSync(blobPath(mirror.root, digest)), false, 'nothing was stored');
    assert.deepEqual(tempFiles(mirror.root), [], 'no download in flight');
    // Any entity tag of a list, weak or strong, or `*`; and If-None-Match wins over Range (RFC 9110 13.2.2).
    const variants: Record<string, string>[] = [{ 'if-none-match': `"sha256:${'0'.repeat(64)}", W/"${digest}"` }, { 'if-none-match': '*' }, { 'if-none-match': `"${digest}"`, range: `bytes=${bytes.length}-` }];
    for (const headers of variants) {
      const response = await fetch(url, { headers });
      assert.equal(response.status, 304, JSON.stringify(headers));
    }
    // A conditional GET whose tag does not match gets the content, downloaded once.
    const other = await fetch(url, { headers: { 'if-none-match': `"sha256:${'0'.repeat(64)}"` } });
    assert.equal(other.status, 200);
    assert.deepEqual(Buffer.from(await other.arrayBuffer()), bytes);
  });

  it('answers a warm conditional GET with 304 before Range (RFC 9110 13.2.2)', async () => {
    const bytes = seededBytes('conditional-warm', 1000);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/conditional', bytes);
    const url = `${mirror.url}/v2/library/conditional/blobs/${digest}`;
    assert.deepEqual(Buffer.from(await (await fetch(url)).arrayBuffer()), bytes);
    const both = await fetch(url, { headers: { 'if-none-match': `"${digest}"`, range: 'bytes=5000-' } });
    assert.equal(both.status, 304);
    const beyond = await fetch(url, { headers: { range: 'bytes=5000-' } });
    assert.equal(beyond.status, 416);
    await beyond.arrayBuffer();
  });

  it('refuses a corrupt upstream blob: the client connection breaks and nothing is cached', async () => {
    const bytes = seededBytes('to-be-corrupted', 3 * 1024 * 1024);
    const { digest } = await pushBlob(world.registry.url, PUSHER, 'library/corrupt', bytes);
    // Flip one byte of the stored blob inside the upstream registry: it now serves bad content.
    const fd = openSync(world.registry.blobDataPath(digest), 'r+');
    writeSync(fd, Buffer.from([bytes[1_500_000] ^ 0xff]), 0, 1, 1_500_000);
    closeSync(fd);
    world.proxy.reset();
    for (let attempt = 1; attempt <= 2; attempt++) {
      const response = await fetch(`${mirror.url}/v2/library/corrupt/blobs/${digest}`);
      assert.equal(response.status, 200, 'headers go out before the verdict: bytes stream as they arrive');
      await assert.rejects(response.arrayBuffer(), `attempt ${attempt}: the transfer must break, not end cleanly`);
    }
    assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${digest}$`)), 2, 'not cached: the second request went upstream again');
    assert.equal(existsSync(blobPath(mirror.root, digest)), false);
    assert.deepEqual(tempFiles(mirror.root), [], 'no temporary file left behind');
    const head = await fetch(`${mirror.url}/v2/library/corrupt/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.headers.get('x-pullmirror-cache'), 'miss');
  });

  it('answers pushes, uploads and deletes with 405 UNSUPPORTED', async () => {
    const requests: [string, string][] = [
      ['POST', '/v2/library/single/blobs/uploads/'],
      ['PATCH', '/v2/library/single/blobs/uploads/abc'],
      ['PUT', '/v2/library/single/manifests/1.0'],
      ['DELETE', `/v2/library/single/manifests/${images.single.manifestDigest}`],
      ['DELETE', `/v2/library/single/blobs/${images.single.configDigest}`],
    ];
    for (const [method, url] of requests) {
      const response = await fetch(`${mirror.url}${url}`, { method, body: method === 'GET' || method === 'DELETE' ? undefined : 'x' });
      assert.equal(response.status, 405, `${method} ${url}`);
      assert.equal((await response.json()).errors[0].code, 'UNSUPPORTED');
    }
  });

  it('gives OCI errors for unknown content and bad names', async () => {
    const cases: [string, number, string][] = [
      ['/v2/library/single/manifests/nope', 404, 'MANIFEST_UNKNOWN'],
      [`/v2/library/single/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
      ['/v2/Library/single/manifests/1.0', 400, 'NAME_INVALID'],
      ['/v2/library/single/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
      ['/v2/nothing/here', 404, 'NOT_FOUND'],
    ];
    for (const [url, status, code] of cases) {
      const response = await fetch(`${mirror.url}${url}`);
      assert.equal(response.status, status, url);
      assert.equal((await response.json()).errors[0].code, code, url);
    }
  });

  it('asks the token server once per repository scope, not per request', async () => {
    const mirrorTokens = world.tokens.requests.filter((r) => r.account === MIRROR_ACCOUNT.username && r.scopes.includes('repository:library/multi:pull'));
    assert.equal(mirrorTokens.length, 1);
  });

  it('never writes the upstream password or tokens to its log', () => {
    const log = readFileSync(mirror.process.logFile, 'utf8');
    assert.ok(!log.includes(MIRROR_ACCOUNT.password));
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(log), 'no JWT in the log');
  });
});
