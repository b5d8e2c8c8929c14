import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { pushImage, pushIndex, randomLayer, type PushedImage, type PushedIndex } from '../support/images.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';
import { sample, scrape, sum } from '../support/prometheus.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { mountTmpfs } from '../support/tmpfs.ts';
import { missingBinaries, MIRROR_ACCOUNT, PUSHER, startWorld, type World } from './fixtures.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const run = promisify(execFile);

/** Runs the pullmirror binary with a command; resolves with its output and exit code. */
async function pullmirror(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env: { ...cleanEnv(['REGISTRY_']), ...env }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('operating the mirror: metrics, health, warm, stats, config check', { skip: missingBinaries }, () => {
  let world: World;
  const work = tempDir('pullmirror-ops');
  const images: Record<string, PushedImage> = {};
  let index: PushedIndex;
  let platformImages: PushedImage[];

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    images.app = await pushImage(reg, PUSHER, { name: 'team/app', tag: '1.0', layers: [randomLayer('ops-app-0', 80 * 1024), randomLayer('ops-app-1', 8 * 1024)], format: 'docker' });
    images.tool = await pushImage(reg, PUSHER, { name: 'library/tool', tag: 'v2', layers: [randomLayer('ops-tool-0', 50 * 1024)], format: 'oci' });
    platformImages = [
      await pushImage(reg, PUSHER, { name: 'library/multi', layers: [randomLayer('ops-multi-amd64', 40 * 1024)], platform: { os: 'linux', architecture: 'amd64' }, format: 'docker' }),
      await pushImage(reg, PUSHER, { name: 'library/multi', layers: [randomLayer('ops-multi-arm64', 40 * 1024)], platform: { os: 'linux', architecture: 'arm64' }, format: 'docker' }),
    ];
    index = await pushIndex(reg, PUSHER, { name: 'library/multi', tag: 'latest', images: platformImages, format: 'docker-list' });
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  async function pull(mirror: RunningMirror, ref: string, options: { all?: boolean; arch?: string } = {}) {
    const dest = path.join(work.path, `${ref.replace(/[^a-z0-9]/gi, '_')}-${Math.random().toString(36).slice(2)}`);
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${dest}`, { all: options.all, overrideArch: options.arch, overrideOs: options.arch ? 'linux' : undefined });
    return readDirImage(dest);
  }

  it('moves its metrics as a pull happens: misses and upstream bytes, then hits and cache bytes', async () => {
    const mirror = await world.startMirror();
    const metrics = `${mirror.url}/metrics`;
    const before = await scrape(metrics);
    const first = await pull(mirror, 'team/app:1.0');
    const blobBytes = [...first.blobs.values()].reduce((a, b) => a + b, 0);
    const afterFirst = await scrape(metrics);
    const delta = (name: string, labels: Record<string, string> = {}) => sum(afterFirst, name, labels) - sum(before, name, labels);
    assert.ok(delta('pullmirror_cache_requests_total', { kind: 'blob', result: 'miss' }) >= first.blobs.size, 'a miss per blob');
    assert.ok(delta('pullmirror_cache_requests_total', { kind: 'manifest', result: 'miss' }) >= 1, 'a manifest miss');
    assert.ok(delta('pullmirror_served_bytes_total', { source: 'upstream' }) >= blobBytes + first.manifest.bytes.length, 'bytes served through upstream');
    assert.equal(delta('pullmirror_served_bytes_total', { source: 'cache' }), 0);
    assert.ok(delta('pullmirror_http_requests_total', { route: 'blob', method: 'GET', status: '200' }) >= first.blobs.size);
    assert.ok(delta('pullmirror_upstream_request_duration_seconds_count', { method: 'GET' }) >= first.blobs.size, 'upstream latency observed');
    assert.ok(delta('pullmirror_upstream_tokens_fetched_total') >= 1, 'a token fetched');
    assert.ok(afterFirst.has('pullmirror_blob_fills_in_flight'), 'the fills-in-flight gauge is exported');
    assert.equal(sample(afterFirst, 'pullmirror_blob_fills_in_flight'), 0);

    const second = await pull(mirror, 'team/app:1.0');
    assert.equal(second.manifest.digest, images.app.manifestDigest);
    const afterSecond = await scrape(metrics);
    const delta2 = (name: string, labels: Record<string, string> = {}) => sum(afterSecond, name, labels) - sum(afterFirst, name, labels);
    assert.ok(delta2('pullmirror_cache_requests_total', { kind: 'blob', result: 'hit' }) >= second.blobs.size, 'a hit per blob');
    assert.equal(delta2('pullmirror_cache_requests_total', { kind: 'blob', result: 'miss' }), 0);
    assert.ok(delta2('pullmirror_served_bytes_total', { source: 'cache' }) >= blobBytes, 'bytes served from the cache');
    assert.equal(delta2('pullmirror_served_bytes_total', { source: 'upstream' }), 0);

    // The store's figures are computed lazily (at most every 2 s after a change), not per scrape.
    let stored = 0;
    for (let i = 0; i < 40 && stored < first.blobs.size + 1; i++) {
      stored = sample(await scrape(metrics), 'pullmirror_store_blobs');
      if (stored < first.blobs.size + 1) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.ok(stored >= first.blobs.size + 1, `store_blobs counts the blobs and the manifest (${stored})`);
  });

  it('reports Docker Hub\'s remaining pulls as a gauge', async () => {
    const mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    world.proxy.setFault({ kind: 'headers', headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '42;w=21600' }, match: () => true });
    try {
      await pull(mirror, 'library/tool:v2');
    } finally {
      world.proxy.setFault(undefined);
    }
    const samples = await scrape(`${mirror.url}/metrics`);
    assert.equal(sample(samples, 'pullmirror_upstream_ratelimit_remaining', { window: '21600' }), 42);
    assert.equal(sample(samples, 'pullmirror_upstream_ratelimit_limit', { window: '21600' }), 100);
  });

  it('is live and ready with a readable store and a reachable upstream; still ready when the upstream is down, which /health details', async () => {
    const mirror = await world.startMirror({ config: { health: { upstream: { interval: '0s', timeout: '1s' } } } });
    const live = await (await fetch(`${mirror.url}/health`)).json();
    assert.equal(live.status, 'ok');
    const ready = await fetch(`${mirror.url}/health/ready`);
    assert.equal(ready.status, 200);
    const body = await ready.json();
    assert.equal(body.checks.storage.ok, true);
    assert.equal(body.checks['storage-writable'].ok, true);
    assert.equal(body.checks.upstream.ok, true);

    const down = await world.startMirror({ remoteurl: 'http://127.0.0.1:9', config: { health: { upstream: { interval: '0s', timeout: '1s' } } } });
    const stillReady = await fetch(`${down.url}/health/ready`);
    assert.equal(stillReady.status, 200, 'an upstream outage leaves cached images servable (spec/e2e/upstream-outage.test.ts pulls one)');
    const why = await stillReady.json();
    assert.equal(why.checks.upstream.ok, false);
    assert.equal(why.checks.upstream.advisory, true);
    assert.match(why.checks.upstream.error, /unreachable/);
    const health = await fetch(`${down.url}/health`);
    assert.equal(health.status, 200, 'still live');
    assert.equal((await health.json()).upstream['127.0.0.1:9'].reachability.state, 'unreachable');
  });

  it('is not ready when the store cannot be read (its root is a file), and says why', async () => {
    const root = path.join(work.path, 'root-is-a-file');
    writeFileSync(root, 'not a directory');
    const mirror = await world.startMirror({ root });
    const response = await fetch(`${mirror.url}/health/ready`);
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.status, 'unavailable');
    assert.equal(body.checks.storage.ok, false);
    assert.match(body.checks.storage.error, /ENOTDIR|EEXIST/);
    assert.equal(body.checks.upstream.ok, true);
  });

  it('stays ready when the store becomes read-only (tmpfs remounted ro): it serves what it holds; the write check says why', async (t) => {
    const fs = await mountTmpfs(path.join(work.path, 'ro-store'), 16);
    if (typeof fs === 'string') return t.skip(fs);
    try {
      const mirror = await world.startMirror({ root: fs.path, config: { health: { storagedriver: { interval: '100ms' } } } });
      await pull(mirror, 'library/tool:v2');
      assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
      await fs.remountReadOnly();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const response = await fetch(`${mirror.url}/health/ready`);
      assert.equal(response.status, 200);
      const checks = (await response.json()).checks;
      assert.equal(checks.storage.ok, true);
      assert.equal(checks['storage-writable'].ok, false);
      assert.equal(checks['storage-writable'].advisory, true);
      assert.match(checks['storage-writable'].error, /EROFS/);
      const again = await pull(mirror, 'library/tool:v2');
      assert.equal(again.manifest.digest, images.tool.manifestDigest, 'the stored image is served from the read-only store');
      await mirror.stop();
    } finally {
      await fs.unmount();
    }
  });

  it('is unready while a health.file exists (maintenance drain)', async () => {
    const flag = path.join(work.path, 'drain-me');
    const mirror = await world.startMirror({ config: { health: { file: [{ file: flag, interval: '0s' }] } } });
    assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
    writeFileSync(flag, '');
    assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 503);
  });

  it('warm fills the cache so that a following pull makes no upstream GET', async () => {
    const mirror = await world.startMirror();
    const list = path.join(work.path, 'warm-list.txt');
    writeFileSync(list, '# images for the build\nteam/app:1.0\n\n');
    const result = await pullmirror(['warm', '--mirror', mirror.url, '--file', list, 'library/multi:latest']);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /✓ team\/app:1\.0: 3 blob\(s\)/);
    assert.match(result.stdout, /✓ library\/multi:latest \[linux\/amd64, linux\/arm64\]: 4 blob\(s\)/);
    assert.match(result.stdout, /warmed 2 of 2 image\(s\), 7 distinct blob\(s\)/);

    world.proxy.reset();
    await pull(mirror, 'team/app:1.0');
    const all = await pull(mirror, 'library/multi:latest', { all: true });
    assert.equal(all.manifest.digest, index.digest);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'no upstream blob GET');
    assert.equal(world.proxy.count('GET', /\/manifests\//), 0, 'no upstream manifest GET');

    // Warming again finds everything cached and downloads nothing.
    world.proxy.reset();
    const again = await pullmirror(['warm', '--mirror', mirror.url, 'team/app:1.0']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /0 B fetched into the cache/);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0);
  });

  it('warm of images sharing a layer counts the shared blob for each, transfers it once, and prints binary units', async () => {
    const mirror = await world.startMirror();
    // The same bytes as team/app's first layer (80 KiB): one blob in two images.
    const sibling = await pushImage(world.registry.url, PUSHER, { name: 'team/sibling', tag: '1.0', layers: [randomLayer('ops-app-0', 80 * 1024), randomLayer('ops-sibling-1', 4 * 1024)], format: 'docker' });
    assert.equal(sibling.layerDigests[0], images.app.layerDigests[0]);
    world.proxy.reset();
    const result = await pullmirror(['warm', '--mirror', mirror.url, 'team/app:1.0', 'team/sibling:1.0']);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /✓ team\/app:1\.0: 3 blob\(s\), [\d.]+ KiB fetched, 0 B already cached/);
    assert.match(result.stdout, /✓ team\/sibling:1\.0: 3 blob\(s\) \(1 shared with an image above\), [\d.]+ KiB fetched, 80(\.\d)? KiB already cached/);
    assert.match(result.stdout, /warmed 2 of 2 image\(s\), 5 distinct blob\(s\)/);
    assert.doesNotMatch(result.stdout, /\d (KB|MB|GB)\b/, 'binary sizes carry binary names');
    assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${images.app.layerDigests[0]}`)), 1, 'the shared layer transferred once');
  });

  it('warm --platform fetches only that platform of an index', async () => {
    const mirror = await world.startMirror();
    const result = await pullmirror(['warm', '--mirror', mirror.url, '--platform', 'linux/arm64', 'library/multi:latest']);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /\[linux\/arm64\]: 2 blob\(s\)/);
    world.proxy.reset();
    await pull(mirror, 'library/multi:latest', { arch: 'arm64' });
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'arm64 is warm');
    await pull(mirror, 'library/multi:latest', { arch: 'amd64' });
    assert.equal(world.proxy.count('GET', /\/blobs\//), 2, 'amd64 was not warmed');
  });

  it('refreshes the images of proxy.warm on its cron schedule', async () => {
    const mirror = await world.startMirror({ config: { proxy: { warm: { schedule: '* * * * * *', images: ['team/app:1.0'] } } } });
    let done: Record<string, any> | undefined;
    for (let i = 0; i < 100 && !done; i++) {
      done = mirror.logLines().find((line) => line.message === 'scheduled warm done');
      if (!done) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(done, 'a scheduled warm ran');
    assert.equal(done.failed, 0);
    assert.equal(done.blobs, 3);
    world.proxy.reset();
    await pull(mirror, 'team/app:1.0');
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'the scheduled warm filled the cache');
  });

  it('warm reports an image the upstream lacks and exits 1', async () => {
    const mirror = await world.startMirror();
    const result = await pullmirror(['warm', '--mirror', mirror.url, 'team/nothing:here', 'library/tool:v2']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /✗ team\/nothing:here: mirror answered 404: MANIFEST_UNKNOWN/);
    assert.match(result.stdout, /✓ library\/tool:v2/);
    assert.match(result.stdout, /warmed 1 of 2 image\(s\)/);
  });

  it('stats prints the figures of the store the config names', async () => {
    const mirror = await world.startMirror();
    await pull(mirror, 'library/tool:v2');
    const text = await pullmirror(['stats', mirror.configFile]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^blobs\s+3, /m);
    assert.match(text.stdout, /^ {2}manifests\s+1, /m);
    assert.match(text.stdout, /^repositories\s+1$/m);
    assert.match(text.stdout, /^tags\s+1$/m);
    const json = JSON.parse((await pullmirror(['stats', mirror.configFile, '--json'])).stdout);
    assert.equal(json.blobs, 3);
    assert.equal(json.manifests, 1);
  });

  it('a second mirror on an address in use refuses to start, and the first keeps serving', async () => {
    // The mirror listens with several SO_REUSEPORT sockets (http.acceptors); another process
    // must still not be able to join the port and take a share of the clients.
    const first = await world.startMirror();
    const second = await pullmirror([], {
      REGISTRY_HTTP_ADDR: `127.0.0.1:${first.port}`,
      REGISTRY_PROXY_REMOTEURL: world.proxy.url,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: path.join(work.path, 'second-store'),
    });
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}: EADDRINUSE`));
    const responses = await Promise.all(Array.from({ length: 32 }, () => fetch(`${first.url}/v2/`, { headers: { connection: 'close' } })));
    assert.deepEqual(responses.map((response) => response.status), Array(32).fill(200), 'every new connection reaches the first mirror');
  });

  it('config check prints the effective config with the password masked, and names a bad key', async () => {
    const file = path.join(work.path, 'check.yml');
    writeFileSync(file, stringify({ version: '0.1', proxy: { remoteurl: 'https://registry-1.docker.io', username: 'mirror', password: MIRROR_ACCOUNT.password } }));
    const ok = await pullmirror(['config', 'check', file], { REGISTRY_REDIS_PASSWORD: 'redis-secret-99' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /username: mirror/);
    assert.match(ok.stdout, /password: "\*\*\*\*\*"/);
    assert.ok(!ok.stdout.includes(MIRROR_ACCOUNT.password), 'the proxy password never printed');
    assert.ok(!ok.stdout.includes('redis-secret-99'), 'the redis password never printed');
    assert.match(ok.stderr, /is valid/);

    const inUrl = await pullmirror(['config', 'check'], { REGISTRY_PROXY_REMOTEURL: 'https://mirror:url-secret-77@registry.example.test' });
    assert.equal(inUrl.code, 0, inUrl.stderr);
    assert.match(inUrl.stdout, /remoteurl: https:\/\/mirror:\*\*\*\*\*@registry\.example\.test/);
    assert.ok(!inUrl.stdout.includes('url-secret-77'));

    writeFileSync(file, stringify({ proxy: { remoteurl: 'https://registry-1.docker.io', pasword: 'x' } }));
    const bad = await pullmirror(['config', 'check', file]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /proxy\.pasword: unknown key/);
  });

  it('writes the access log in Combined Log Format when asked', async () => {
    const mirror = await world.startMirror({ config: { log: { accesslog: { format: 'combined' } } } });
    const response = await fetch(`${mirror.url}/v2/library/tool/manifests/v2`, { headers: { 'user-agent': 'ops-test/1.0', referer: 'http://example.test/' } });
    await response.arrayBuffer();
    let line: string | undefined;
    for (let i = 0; i < 20 && !line; i++) {
      line = readFileSync(mirror.process.logFile, 'utf8').split('\n').find((l) => l.includes('/v2/library/tool/manifests/v2'));
      if (!line) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(
      line ?? '',
      /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/v2\/library\/tool\/manifests\/v2 HTTP\/1\.1" 200 \d+ "http:\/\/example\.test\/" "ops-test\/1\.0"$/,
    );
  });

  it('with auth.htpasswd: health and metrics stay open, the status page asks for a login, warm pulls with --user', async () => {
    const htpasswd = path.join(work.path, 'ops-htpasswd');
    writeFileSync(htpasswd, `ops:${bcrypt.hashSync('ops-secret-31', 5)}\n`);
    const mirror = await world.startMirror({ config: { auth: { htpasswd: { realm: 'ops-test', path: htpasswd } } } });
    const login = { authorization: `Basic ${Buffer.from('ops:ops-secret-31').toString('base64')}` };
    assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
    assert.equal((await fetch(`${mirror.url}/metrics`)).status, 200);
    for (const page of ['/', '/api/status']) {
      const anonymous = await fetch(`${mirror.url}${page}`);
      assert.equal(anonymous.status, 401, page);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm="ops-test"/);
      assert.equal((await anonymous.json()).errors[0].code, 'UNAUTHORIZED');
      const wrong = await fetch(`${mirror.url}${page}`, { headers: { authorization: `Basic ${Buffer.from('ops:nope').toString('base64')}` } });
      assert.equal(wrong.status, 401, `${page}: wrong password`);
      await wrong.arrayBuffer();
      const allowed = await fetch(`${mirror.url}${page}`, { headers: login });
      assert.equal(allowed.status, 200, page);
      await allowed.arrayBuffer();
    }

    const refused = await pullmirror(['warm', '--mirror', mirror.url, 'library/tool:v2']);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /mirror answered 401: UNAUTHORIZED/);
    const missingPassword = await pullmirror(['warm', '--mirror', mirror.url, '--user', 'ops', 'library/tool:v2']);
    assert.equal(missingPassword.code, 2);
    assert.match(missingPassword.stderr, /PULLMIRROR_PASSWORD/);
    const warmed = await pullmirror(['warm', '--mirror', mirror.url, '--user', 'ops', 'library/tool:v2'], { PULLMIRROR_PASSWORD: 'ops-secret-31' });
    assert.equal(warmed.code, 0, warmed.stdout + warmed.stderr);
    assert.match(warmed.stdout, /✓ library\/tool:v2: 2 blob\(s\)/);
  });

  it('serves metrics and /debug/health on http.debug.addr, and not on the main address', async () => {
    const mirror = await world.startMirror({ config: { http: { debug: { addr: '127.0.0.1:0' } } } });
    const line = mirror.logLines().find((l) => l.message === 'debug listening');
    assert.ok(line, 'debug address logged');
    const debugUrl = `http://127.0.0.1:${String(line.addr).split(':').pop()}`;
    const metrics = await fetch(`${debugUrl}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /pullmirror_http_requests_total|pullmirror_store_blobs/);
    assert.equal((await fetch(`${debugUrl}/debug/health`)).status, 200);
    const main = await fetch(`${mirror.url}/metrics`);
    assert.equal(main.status, 404);
    await main.arrayBuffer();
  });
});
