/**
 * Self-test of the real-server harness, without the mirror: token server +
 * docker-registry (+ the counting proxy) must behave like Docker Hub for a
 * real client (skopeo). If this file fails, e2e failures elsewhere are
 * harness problems, not mirror problems.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pushImage, pushIndex, pushRandomBlob, randomLayer, makeLayer, registryFetch, sha256Digest, MT } from '../support/images.ts';
import type { PushedImage, PushedIndex, RegistryAuth } from '../support/images.ts';
import { skipUnlessBinaries, tempDir } from '../support/processes.ts';
import type { TempDir } from '../support/processes.ts';
import { startDistributionProxy, startUpstreamRegistry } from '../support/registry.ts';
import type { RegistryServer } from '../support/registry.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { decodeJwtClaims, startTokenServer } from '../support/token-server.ts';
import type { TokenServer } from '../support/token-server.ts';
import { dockerHubRateLimit, matchRequests, startUpstreamProxy } from '../support/upstream-proxy.ts';
import type { UpstreamProxy } from '../support/upstream-proxy.ts';

const USER = 'alice';
const PASSWORD = 's3cret-pw';
const auth: RegistryAuth = { username: USER, password: PASSWORD };
const HOST_ARCH = process.arch === 'x64' ? 'amd64' : process.arch;

describe('upstream harness (real docker-registry + token server + skopeo)', { skip: skipUnlessBinaries(['docker-registry', 'skopeo', 'openssl']) }, () => {
  let tokens: TokenServer;
  let upstream: RegistryServer;
  let proxy: UpstreamProxy;
  let work: TempDir;
  let alpha: PushedImage;
  let beta: PushedImage;
  let multiOci: PushedIndex;
  let multiDocker: PushedIndex;
  const ociPlatforms: PushedImage[] = [];
  const dockerPlatforms: PushedImage[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  /** docker://host:port/NAME:TAG through the counting proxy. */
  const viaProxy = (ref: string): string => `docker://127.0.0.1:${proxy.port}/${ref}`;

  before(async () => {
    work = tempDir('pullmirror-harness-test');
    cleanups.push(() => work.cleanup());
    tokens = await startTokenServer({ users: { [USER]: PASSWORD }, privateRepos: ['library/private'] });
    cleanups.push(() => tokens.close());
    upstream = await startUpstreamRegistry({ tokenServer: tokens });
    cleanups.push(() => upstream.stop());
    proxy = await startUpstreamProxy(upstream.url);
    cleanups.push(() => proxy.close());

    // Shared base layer between alpha and the multi-arch images; everything else distinct.
    const base = randomLayer('base', 64 * 1024);
    alpha = await pushImage(upstream, auth, {
      name: 'library/alpha',
      tag: 'latest',
      format: 'docker',
      layers: [base, makeLayer({ files: [{ name: 'etc/alpha.txt', content: Buffer.from('hello from alpha\n') }, { name: 'usr/share/alpha/blob.bin', content: Buffer.alloc(3000, 7) }] })],
    });
    beta = await pushImage(upstream, auth, { name: 'library/beta', tag: '1.0', format: 'oci', layers: [randomLayer('beta', 10_000)] });
    for (const architecture of ['amd64', 'arm64']) {
      const platform = { os: 'linux', architecture, ...(architecture === 'arm64' ? { variant: 'v8' } : {}) };
      ociPlatforms.push(await pushImage(upstream, auth, { name: 'library/multi', format: 'oci', platform, layers: [base, randomLayer(`multi-${architecture}`)] }));
      dockerPlatforms.push(await pushImage(upstream, auth, { name: 'library/multi', format: 'docker', platform, layers: [base, randomLayer(`multi-${architecture}`)] }));
    }
    multiOci = await pushIndex(upstream, auth, { name: 'library/multi', tag: 'oci', images: ociPlatforms, format: 'oci-index' });
    multiDocker = await pushIndex(upstream, auth, { name: 'library/multi', tag: 'docker', images: dockerPlatforms, format: 'docker-list' });
    await pushImage(upstream, auth, { name: 'library/private', tag: 'latest', format: 'docker', layers: [randomLayer('private')] });
    proxy.reset();
    tokens.requests.length = 0;
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  test('layers are real gzipped tars and stored where blobDataPath says', () => {
    const layerDigest = alpha.layerDigests[1];
    const stored = readFileSync(upstream.blobDataPath(layerDigest));
    assert.equal(sha256Digest(stored), layerDigest);
    assert.equal(stored[0], 0x1f);
    assert.equal(stored[1], 0x8b);
  });

  test('skopeo pulls a 2-layer docker image through the proxy with credentials', async () => {
    const dest = path.join(work.path, 'alpha');
    await skopeoCopy(viaProxy('library/alpha:latest'), `dir:${dest}`, { srcCreds: `${USER}:${PASSWORD}` });
    const img = await readDirImage(dest);
    assert.equal(img.manifest.digest, alpha.manifestDigest);
    assert.equal(img.manifest.mediaType, MT.dockerManifest);
    assert.deepEqual([...img.blobs.keys()].sort(), [alpha.configDigest, ...alpha.layerDigests].sort());
    for (const d of [alpha.configDigest, ...alpha.layerDigests]) {
      assert.ok(proxy.count('GET', new RegExp(`^/v2/library/alpha/blobs/${d}`)) >= 1, `proxy saw no GET for ${d}`);
    }
    assert.ok(tokens.requests.some((r) => r.account === USER && r.scopes.includes('repository:library/alpha:pull')), JSON.stringify(tokens.requests));
  });

  test('skopeo pulls a 1-layer OCI image', async () => {
    const dest = path.join(work.path, 'beta');
    await skopeoCopy(viaProxy('library/beta:1.0'), `dir:${dest}`, { srcCreds: `${USER}:${PASSWORD}` });
    const img = await readDirImage(dest);
    assert.equal(img.manifest.digest, beta.manifestDigest);
    assert.equal(img.manifest.mediaType, MT.ociManifest);
    assert.equal(img.blobs.size, 2);
  });

  for (const kind of ['oci', 'docker'] as const) {
    test(`skopeo --all copies the ${kind} multi-platform index with every instance`, async () => {
      const index = kind === 'oci' ? multiOci : multiDocker;
      const images = kind === 'oci' ? ociPlatforms : dockerPlatforms;
      const dest = path.join(work.path, `multi-${kind}-all`);
      await skopeoCopy(viaProxy(`library/multi:${kind}`), `dir:${dest}`, { all: true, srcCreds: `${USER}:${PASSWORD}` });
      const img = await readDirImage(dest);
      assert.equal(img.manifest.digest, index.digest);
      assert.equal(img.manifest.mediaType, index.mediaType);
      assert.deepEqual([...img.instances.keys()].sort(), images.map((i) => i.manifestDigest).sort());
      const expectedBlobs = new Set(images.flatMap((i) => [i.configDigest, ...i.layerDigests]));
      assert.deepEqual([...img.blobs.keys()].sort(), [...expectedBlobs].sort());
    });

    test(`skopeo without --all picks the host platform from the ${kind} index`, async () => {
      const images = kind === 'oci' ? ociPlatforms : dockerPlatforms;
      const want = images.find((i) => i.platform.architecture === HOST_ARCH) ?? images[0];
      const dest = path.join(work.path, `multi-${kind}-one`);
      await skopeoCopy(viaProxy(`library/multi:${kind}`), `dir:${dest}`, {
        srcCreds: `${USER}:${PASSWORD}`,
        overrideArch: want.platform.architecture,
        overrideOs: 'linux',
      });
      const img = await readDirImage(dest);
      assert.equal(img.manifest.digest, want.manifestDigest);
    });
  }

  test('anonymous pull of a public repo works; of a private repo it fails', async () => {
    const dest = path.join(work.path, 'beta-anon');
    await skopeoCopy(viaProxy('library/beta:1.0'), `dir:${dest}`);
    assert.equal((await readDirImage(dest)).manifest.digest, beta.manifestDigest);
    await assert.rejects(skopeoCopy(viaProxy('library/private:latest'), `dir:${path.join(work.path, 'private-anon')}`), /unauthorized|denied|authentication required/i);
  });

  test('token server: anonymous gets no pull on a private repo, users do, bad passwords get 401', async () => {
    const q = `service=${encodeURIComponent(tokens.service)}&scope=${encodeURIComponent('repository:library/private:pull')}`;
    const anon = await fetch(`${tokens.realm}?${q}`);
    assert.equal(anon.status, 200);
    const anonBody = (await anon.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    assert.equal(anonBody.token, anonBody.access_token);
    assert.equal(anonBody.expires_in, 300);
    const anonClaims = decodeJwtClaims(anonBody.token);
    assert.deepEqual(anonClaims.access, []);
    assert.equal(anonClaims.aud, tokens.service);

    const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    const authed = (await (await fetch(`${tokens.realm}?${q}&scope=${encodeURIComponent('repository:library/beta:pull,push')}`, { headers: { authorization: basic } })).json()) as { token: string };
    const claims = decodeJwtClaims(authed.token);
    assert.equal(claims.sub, USER);
    assert.deepEqual(claims.access, [
      { type: 'repository', name: 'library/private', actions: ['pull'] },
      { type: 'repository', name: 'library/beta', actions: ['pull', 'push'] },
    ]);
    const header = JSON.parse(Buffer.from(authed.token.split('.')[0], 'base64url').toString()) as { alg: string; x5c: string[] };
    assert.equal(header.alg, 'RS256');
    assert.equal(header.x5c.length, 1);

    const bad = await fetch(`${tokens.realm}?${q}`, { headers: { authorization: `Basic ${Buffer.from(`${USER}:wrong`).toString('base64')}` } });
    assert.equal(bad.status, 401);
    assert.deepEqual(
      tokens.requests.slice(-3).map((r) => [r.account, r.ok]),
      [[undefined, true], [USER, true], [USER, false]],
    );

    // The registry itself enforces the dropped scope.
    const res = await registryFetch(upstream, undefined, 'library/private', '/v2/library/private/manifests/latest', { headers: { accept: MT.dockerManifest } });
    assert.equal(res.status, 401);
  });

  test('proxy faults: 429 with Docker Hub headers, times, corrupt, drop-after, delay', async () => {
    proxy.setFault({ ...dockerHubRateLimit(), match: matchRequests('GET', /^\/v2\/$/), times: 1 });
    const limited = await fetch(`${proxy.url}/v2/`);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('ratelimit-remaining'), '0;w=21600');
    assert.equal(limited.headers.get('retry-after'), '60');
    assert.match(await limited.text(), /TOOMANYREQUESTS/);
    const after429 = await fetch(`${proxy.url}/v2/`);
    await after429.arrayBuffer();
    assert.equal(after429.status, 401, 'fault with times:1 must clear itself');
    assert.match(after429.headers.get('www-authenticate') ?? '', /^Bearer realm=/);

    const layer = alpha.layerDigests[0];
    const blobPath = `/v2/library/alpha/blobs/${layer}`;
    const getBlob = () => registryFetch(proxy.url, auth, 'library/alpha', blobPath);

    // Prime the token cache first: a fault counts every matching request, 401s included.
    const clean = Buffer.from(await (await getBlob()).arrayBuffer());
    assert.equal(sha256Digest(clean), layer);

    proxy.setFault({ kind: 'corrupt', atByte: 100, match: matchRequests('GET', /\/blobs\//), times: 1 });
    const corrupted = Buffer.from(await (await getBlob()).arrayBuffer());
    assert.notEqual(sha256Digest(corrupted), layer);
    assert.equal(corrupted.length, clean.length);
    assert.equal(corrupted[100], clean[100] ^ 0xff);
    assert.deepEqual(Buffer.from(await (await getBlob()).arrayBuffer()), clean, 'corrupt fault with times:1 must clear itself');

    proxy.setFault({ kind: 'drop-after', bytes: 1000, match: matchRequests('GET', /\/blobs\//), times: 1 });
    const dropped = await getBlob();
    assert.equal(dropped.status, 200);
    assert.equal(dropped.headers.get('content-length'), String(clean.length));
    await assert.rejects(dropped.arrayBuffer());

    proxy.setFault({ kind: 'delay', ms: 300, match: matchRequests('HEAD', /\/blobs\//) });
    const t0 = performance.now();
    const head = await registryFetch(proxy.url, auth, 'library/alpha', blobPath, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.ok(performance.now() - t0 >= 290);
    assert.equal(head.headers.get('docker-content-digest'), layer);
    proxy.setFault(undefined);

    assert.ok(proxy.requests.some((r) => r.status === 429 && r.fault === 'status'));
  });

  test('pushRandomBlob streams a multi-MiB blob; ranges pass through the proxy', async () => {
    const { digest, size } = await pushRandomBlob(proxy.url, auth, 'library/big', { sizeMiB: 3, label: 'selftest-big' });
    assert.equal(size, 3 * 1024 * 1024);
    const stored = readFileSync(upstream.blobDataPath(digest));
    assert.equal(stored.length, size);
    proxy.reset();
    const ranged = await registryFetch(proxy.url, auth, 'library/big', `/v2/library/big/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), stored.subarray(10, 20));
    assert.ok(proxy.requests.some((r) => r.range === 'bytes=10-19'));
  });

  test('distribution in proxy mode pulls through from the upstream (benchmark baseline)', async () => {
    const dist = await startDistributionProxy({ remoteurl: proxy.url, username: USER, password: PASSWORD });
    try {
      proxy.reset();
      const dest = path.join(work.path, 'alpha-dist');
      await skopeoCopy(`docker://127.0.0.1:${dist.port}/library/alpha:latest`, `dir:${dest}`);
      assert.equal((await readDirImage(dest)).manifest.digest, alpha.manifestDigest, dist.readLog());
      assert.ok(proxy.count('GET', /^\/v2\/library\/alpha\/blobs\//) >= 3);
    } finally {
      await dist.stop();
    }
  });

  test('corrupting a stored blob in place is visible to clients', async () => {
    const dataPath = upstream.blobDataPath(beta.layerDigests[0]);
    const original = readFileSync(dataPath);
    const broken = Buffer.from(original);
    broken[broken.length - 1] ^= 0xff;
    writeFileSync(dataPath, broken);
    try {
      await assert.rejects(skopeoCopy(viaProxy('library/beta:1.0'), `dir:${path.join(work.path, 'beta-corrupt')}`), /digest|did not match|mismatch/i);
    } finally {
      writeFileSync(dataPath, original);
    }
  });
});
