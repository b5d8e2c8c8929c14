import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { CachedCheck } from '../../src/health/checks.ts';
import { clfTime } from '../../src/http/middleware/request-context.ts';
import { TrafficRecorder } from '../../src/metrics/traffic.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { eventually } from '../support/wait.ts';
import { computeStoreFigures, LiveStoreFigures } from '../../src/storage/store-stats.ts';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { parseImageRef, parsePlatform } from '../../src/warm/warm.ts';
import { tempDir } from '../support/processes.ts';

describe('warm: image references and platforms', () => {
  it('reads the forms docker accepts', () => {
    assert.deepEqual(parseImageRef('alpine'), { name: 'alpine', reference: 'latest', ns: undefined, input: 'alpine' });
    assert.equal(parseImageRef('library/alpine:3.20').reference, '3.20');
    assert.equal(parseImageRef('docker.io/alpine:3.20').name, 'library/alpine');
    assert.equal(parseImageRef('docker.io/team/app:v1').name, 'team/app');
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.equal(parseImageRef(`team/app@${digest}`).reference, digest);
    assert.equal(parseImageRef(`team/app:v1@${digest}`).reference, digest, 'the digest wins over the tag');
    assert.deepEqual({ ...parseImageRef('ghcr.io/o/r:v1'), input: '' }, { name: 'o/r', reference: 'v1', ns: 'ghcr.io', input: '' });
    assert.equal(parseImageRef('localhost:5000/app').ns, 'localhost:5000');
    for (const bad of ['', 'UPPER/case', 'a//b', 'app:bad tag', '../etc']) assert.throws(() => parseImageRef(bad), /not an image reference|not a tag/, bad);
  });

  it('reads os/arch[/variant]', () => {
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64', variant: undefined });
    assert.throws(() => parsePlatform('linux'), /expected os\/arch/);
  });
});

describe('traffic recorder', () => {
  it('counts hits, misses and bytes per minute, pulls by repository, and the hit ratio', () => {
    const traffic = new TrafficRecorder();
    const t0 = Date.UTC(2026, 0, 1, 12, 0, 30);
    traffic.response('miss', 1000, t0);
    traffic.response('hit', 1000, t0 + 60_000);
    traffic.response('stale', 10, t0 + 60_000);
    traffic.response(undefined, 0, t0 + 60_000);
    traffic.pull({ at: t0, repository: 'library/a', reference: '1', cache: 'miss' });
    traffic.pull({ at: t0, repository: 'library/b', reference: '1', cache: 'hit' });
    traffic.pull({ at: t0, repository: 'library/b', reference: '2', cache: 'hit' });
    const snap = traffic.snapshot(3, t0 + 60_000);
    assert.equal(snap.totals.requests, 4);
    assert.equal(snap.totals.bytesFromUpstream, 1000);
    assert.equal(snap.totals.bytesFromCache, 1010);
    assert.equal(snap.totals.hitRatio, 2 / 3);
    assert.deepEqual(snap.minutes.map((m) => m.requests), [0, 1, 3]);
    assert.deepEqual(snap.topRepositories, [{ repository: 'library/b', pulls: 2 }, { repository: 'library/a', pulls: 1 }]);
    assert.equal(snap.recentPulls[0].reference, '2', 'latest first');
  });

  it('forgets a minute when the ring comes round to it again', () => {
    const traffic = new TrafficRecorder();
    const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
    traffic.response('hit', 5, t0);
    const later = t0 + 180 * 60_000;
    traffic.response('hit', 7, later);
    const snap = traffic.snapshot(1, later);
    assert.equal(snap.minutes[0].bytesFromCache, 7);
    assert.equal(traffic.snapshot(1, t0).minutes[0].requests, 0, 'the old minute is gone');
  });
});

describe('health checks', () => {
  it('cache their answer for the interval and fail after the threshold', async () => {
    let calls = 0;
    let failing = true;
    const check = new CachedCheck('x', async () => {
      calls++;
      if (failing) throw Object.assign(new Error('nope'), { code: 'EROFS' });
    }, { intervalMs: 60_000, threshold: 2 });
    const first = await check.status();
    assert.equal(first.ok, true, 'one failure is under the threshold');
    assert.equal((await check.status()).failures, 1, 'cached');
    assert.equal(calls, 1);
    const second = await check.status(performance.now() + 61_000);
    assert.equal(second.ok, false);
    assert.equal(second.error, 'EROFS: nope');
    failing = false;
    assert.equal((await check.status(performance.now() + 122_000)).ok, true);
  });

  it('fail a probe that gets no answer within its deadline, and wait for it again instead of starting another', async () => {
    let calls = 0;
    let answer!: () => void;
    // A hung store: the first probe settles only when the test says so; later ones at once.
    const check = new CachedCheck('storage', () => {
      calls++;
      return calls === 1 ? new Promise<void>((resolve) => (answer = resolve)) : Promise.resolve();
    }, { intervalMs: 0, threshold: 1, timeoutMs: 50 });
    const first = await check.status();
    assert.equal(first.ok, false);
    assert.equal(first.error, 'no answer within 50 ms');
    assert.equal((await check.status()).ok, false);
    assert.equal(calls, 1, 'the hung probe is not doubled');
    answer();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((await check.status()).ok, true, 'once it answers, the next probe runs and passes');
    assert.equal(calls, 2);
  });
});

describe('store figures', () => {
  it('counts blobs, manifests linked by repositories, tags and temporary files', async () => {
    const dir = tempDir('pullmirror-figures');
    const paths = new StorePaths(dir.path);
    const hex = (c: string) => c.repeat(64);
    for (const [h, size] of [[hex('a'), 100], [hex('b'), 20], [hex('c'), 5]] as const) {
      mkdirSync(path.join(dir.path, 'blobs', 'sha256', h.slice(0, 2)), { recursive: true });
      writeFileSync(path.join(dir.path, 'blobs', 'sha256', h.slice(0, 2), h), Buffer.alloc(size));
    }
    mkdirSync(path.join(dir.path, 'repositories', 'team', 'app', '_manifests', 'sha256'), { recursive: true });
    writeFileSync(path.join(dir.path, 'repositories', 'team', 'app', '_manifests', 'sha256', hex('b')), '{}');
    mkdirSync(path.join(dir.path, 'repositories', 'team', 'app', '_tags'), { recursive: true });
    writeFileSync(path.join(dir.path, 'repositories', 'team', 'app', '_tags', 'v1'), `sha256:${hex('b')}`);
    // The same name on another registry (proxy.remotes), linking the same manifest blob: counted once.
    const ghcr = path.join(dir.path, 'registries', 'ghcr.io', 'repositories', 'team', 'app');
    mkdirSync(path.join(ghcr, '_manifests', 'sha256'), { recursive: true });
    writeFileSync(path.join(ghcr, '_manifests', 'sha256', hex('b')), '{}');
    mkdirSync(path.join(ghcr, '_tags'), { recursive: true });
    writeFileSync(path.join(ghcr, '_tags', 'v2'), `sha256:${hex('b')}`);
    mkdirSync(path.join(dir.path, '_tmp', 'host-1-abcdef01'), { recursive: true });
    writeFileSync(path.join(dir.path, '_tmp', 'host-1-abcdef01', 'x'), Buffer.alloc(7));
    const figures = await computeStoreFigures({ driver: new FilesystemDriver({ root: paths.root, tempDir: paths.tmpDir() }), paths });
    assert.deepEqual(
      { ...figures, computedAt: 0 },
      {
        blobs: 3, bytes: 125, manifests: 1, manifestBytes: 20, repositories: 2, tags: 2, tempFiles: 1, tempBytes: 7, computedAt: 0, complete: true,
        registries: { '': { repositories: 1, tags: 1 }, 'ghcr.io': { repositories: 1, tags: 1 } },
      },
    );

    // A serving process: one walk in the background, then blobs kept current without walking.
    const live = new LiveStoreFigures({ driver: new FilesystemDriver({ root: paths.root, tempDir: paths.tmpDir() }), paths }, { minAgeMs: 50, maxAgeMs: 60_000 });
    assert.equal(live.current().complete, false, 'before the first walk the figures say they are partial');
    live.start();
    assert.ok(await eventually(() => live.current().complete), 'the first walk finishes');
    assert.deepEqual({ ...live.current(), computedAt: 0 }, { ...figures, computedAt: 0 });
    const extra = path.join(dir.path, 'blobs', 'sha256', 'aa', `${'a'.repeat(63)}0`);
    writeFileSync(extra, Buffer.alloc(11));
    live.blobAdded(`sha256:${'a'.repeat(63)}0`, 11);
    assert.deepEqual([live.current().blobs, live.current().bytes], [figures.blobs + 1, figures.bytes + 11], 'a commit counts at once');
    live.blobRemoved(`sha256:${hex('b')}`, 20);
    assert.deepEqual([live.current().blobs, live.current().bytes], [figures.blobs, figures.bytes - 9]);
    // The next walk (asked for by changed()) reads the disk again: the removal was not real.
    const walkedBefore = live.current().computedAt;
    live.changed();
    assert.ok(await eventually(() => live.current().computedAt > walkedBefore), 'a walk follows changed()');
    assert.deepEqual([live.current().blobs, live.current().bytes], [figures.blobs + 1, figures.bytes + 11]);
    live.stop();
    await dir.cleanup();
  });
});

describe('ops config', () => {
  it('reads health, debug, access log format and the warm list; refuses a bad cron expression', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.health.storagedriver.enabled, true);
    assert.equal(config.health.upstream.interval, 10_000);
    assert.equal(config.http.debug.addr, undefined);
    assert.equal(config.http.debug.prometheus.path, '/metrics');
    assert.equal(config.log.accesslog.format, 'json');
    const warmed = loadConfig({ env: { REGISTRY_PROXY_WARM: '{schedule: "0 * * * *", images: [alpine]}', REGISTRY_LOG_ACCESSLOG_FORMAT: 'combined' } });
    assert.deepEqual(warmed.proxy.warm, { schedule: '0 * * * *', images: ['alpine'], concurrency: 4 });
    assert.equal(warmed.log.accesslog.format, 'combined');
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_WARM: '{schedule: "every hour", images: [alpine]}' } }), /proxy\.warm\.schedule.*cron/);
  });

  it('writes Common Log Format times in UTC', () => {
    assert.equal(clfTime(new Date(Date.UTC(2026, 10, 3, 4, 5, 6))), '[03/Nov/2026:04:05:06 +0000]');
  });
});
