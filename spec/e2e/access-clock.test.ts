/**
 * Last use is the access clock's record (src/eviction/access-clock.ts), never a file's mtime:
 * it survives a restart, it is shared by the instances of a fleet through Redis, and the fleet
 * runs one eviction pass at a time and never deletes a blob another instance is filling.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { loadConfig } from '../../src/config/load.ts';
import { RedisPassLock } from '../../src/eviction/pass-lock.ts';
import { RedisFillCoordinator } from '../../src/fleet/redis-fill-coordinator.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { readStoreId } from '../../src/storage/store-id.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { cleanEnv, skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { skopeoCopy } from '../support/skopeo.ts';
import { blobPath, stored } from '../support/store.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const HOUR = 3_600_000;
const TTL = 168 * HOUR;
const NO_GRACE = { proxy: { tagfreshness: '0' }, storage: { eviction: { grace: '0s' } } };
const logger = winston.createLogger({ silent: true });

/** `pullmirror gc ARGS config.yml`: its exit status and output. */
function gc(mirror: RunningMirror, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'gc', ...args, mirror.configFile], { env: cleanEnv(['REGISTRY_']) }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Sets every stored file's mtime to 1970, as a copy tool or a restore might: the old code took that for "unused since 1970". */
function ageEveryFile(root: string): number {
  let count = 0;
  for (const dir of ['blobs', 'repositories']) {
    for (const entry of readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      utimesSync(path.join(entry.parentPath, entry.name), 0, 0);
      count++;
    }
  }
  return count;
}

const blobsOf = (image: PushedImage) => [image.manifestDigest, image.configDigest, ...image.layerDigests];

describe('the access clock: last use is a record that survives restarts and is shared by the fleet, not a file time', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  const work = tempDir('pullmirror-access-clock');
  const images: Record<string, PushedImage> = {};
  const connections: RedisConnection[] = [];

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
    const push = (name: string, size: number) => pushImage(world.registry.url, PUSHER, { name, tag: '1', layers: [randomLayer(`${name}-0`, size)], format: 'docker' });
    images.old = await push('library/old', 100 * 1024);
    images.kept = await push('library/kept', 120 * 1024);
  });

  after(async () => {
    await Promise.all(connections.map((connection) => connection.close()));
    await world?.close();
    await redis?.close();
    await work.cleanup();
  });

  async function pull(mirror: RunningMirror, ref: string): Promise<void> {
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${path.join(work.path, `${Math.random().toString(36).slice(2)}`)}`);
  }

  /** A connection under the store's id, as the mirrors and gc use. */
  async function storeRedis(root: string): Promise<RedisConnection> {
    const config = loadConfig({ env: { REDIS_URL: redis.url } });
    const connection = createRedisConnection(config.redis, logger, await readStoreId(new StorePaths(root)));
    connections.push(connection);
    assert.ok(await connection.whenReady(5_000));
    return connection;
  }

  /**
   * Pulls old and kept on `first`, ages every file to 1970, pulls kept again on `second` a
   * moment later: then a pass one TTL after a moment between the two pulls takes old and keeps
   * kept, and a pass an hour from now takes nothing. With last use read from mtimes, everything
   * would be 56 years unused.
   */
  async function agesComeFromTheClock(first: RunningMirror, second: () => Promise<RunningMirror>): Promise<RunningMirror> {
    await pull(first, 'library/old:1');
    await pull(first, 'library/kept:1');
    await sleep(300); // uses are written in batches (100 ms)
    const firstPulls = Date.now();
    await sleep(1100);
    const mirror = await second();
    assert.ok(ageEveryFile(mirror.root) >= 6, 'the store holds both images');
    const gets = world.proxy.count('GET', /\/blobs\//);
    const pulledAgain = Date.now();
    await pull(mirror, 'library/kept:1');
    assert.equal(world.proxy.count('GET', /\/blobs\//), gets, 'kept came from the store');
    await sleep(300);

    const soon = await gc(mirror, '--dry-run', '--now', '+1h');
    assert.equal(soon.code, 0, soon.stderr);
    assert.match(soon.stdout, /^dry run: 0 tags, 0 manifests, 0 blobs/m, 'file times of 1970 do not make anything due');
    const now = String(Math.round((firstPulls + pulledAgain) / 2) + TTL);
    const done = await gc(mirror, '--now', now);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, new RegExp(`removed manifest library/old@${images.old.manifestDigest} \\(ttl`));
    assert.doesNotMatch(done.stdout, /library\/kept/);
    for (const digest of blobsOf(images.old)) assert.equal(existsSync(blobPath(mirror.root, digest)), false, digest);
    for (const digest of blobsOf(images.kept)) assert.ok(await stored(mirror.root, digest), digest);
    return mirror;
  }

  it('without Redis: last use survives a restart (the journal on disk), and files aged to 1970 by hand are not evicted while the clock says recent', async () => {
    const first = await world.startMirror({ config: NO_GRACE });
    const second = await agesComeFromTheClock(first, async () => {
      await first.stop();
      assert.ok(existsSync(path.join(first.root, '_access-clock', 'journal')), 'the uses were written at stop');
      return world.startMirror({ root: first.root, config: NO_GRACE });
    });
    await second.stop();
  });

  it("with Redis: two instances on one store see each other's uses, and nothing of the clock is on disk", async () => {
    const root = path.join(work.path, 'fleet-store');
    const config = { ...NO_GRACE, redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s' } };
    const a = await world.startMirror({ root, config });
    const second = await agesComeFromTheClock(a, () => world.startMirror({ root, config }));
    assert.equal(existsSync(path.join(root, '_access-clock')), false, 'the clock is in Redis');
    await second.stop();
    await a.stop();
  });

  it('one eviction pass at a time in the fleet: gc while another pass holds the lock is skipped (exit 75, nothing removed), and runs once it is released', async () => {
    const root = path.join(work.path, 'lock-store');
    const config = { ...NO_GRACE, redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s' } };
    const mirror = await world.startMirror({ root, config });
    await pull(mirror, 'library/old:1');
    await sleep(300);
    // Another pass of the fleet holds the lock (the same code a mirror's scheduled pass runs).
    const lease = await new RedisPassLock({ redis: await storeRedis(root), name: 'other-instance' }).acquire();
    const skipped = await gc(mirror, '--now', '+1000h');
    assert.equal(skipped.code, 75, skipped.stdout + skipped.stderr);
    assert.match(skipped.stderr, /another eviction pass runs in the fleet \(other-instance since \S+\): nothing done/);
    for (const digest of blobsOf(images.old)) assert.ok(await stored(root, digest), `${digest} still stored`);
    // A dry run deletes nothing and takes no lock: it runs beside the pass.
    assert.match((await gc(mirror, '--dry-run', '--now', '+1000h')).stdout, /^dry run: 1 tag, 1 manifest, 3 blobs/m);
    await lease.release();
    const ran = await gc(mirror, '--now', '+1000h');
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout, /^1 tag, 1 manifest, 3 blobs/m);
    await mirror.stop();
  });

  it("a blob another instance is filling (its fill lease in Redis) is not deleted, and goes once the lease is released", async () => {
    const root = path.join(work.path, 'fill-store');
    const config = { ...NO_GRACE, redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s' } };
    const mirror = await world.startMirror({ root, config });
    await pull(mirror, 'library/kept:1');
    await sleep(300);
    const layer = images.kept.layerDigests[0];
    // Another instance claims the layer's download (the same code a mirror's fill runs).
    const fills = new RedisFillCoordinator({ redis: await storeRedis(root), leaseMs: 30_000, logger, instance: 'otherhost-4242-0123abcd' });
    const claim = await fills.claimBlob(layer);
    assert.equal(claim.kind, 'mine');
    const pass = await gc(mirror, '--now', '+1000h');
    assert.equal(pass.code, 0, pass.stderr);
    assert.match(pass.stdout, /^1 tag, 1 manifest, 2 blobs, .*; 1 kept \(used during the pass\)/m);
    assert.doesNotMatch(pass.stdout, new RegExp(`removed blob ${layer}`));
    assert.ok(await stored(root, layer), 'the layer under a fill lease stays');
    await claim.lease.release('committed');
    await fills.close();
    const next = await gc(mirror, '--now', '+1000h');
    assert.match(next.stdout, new RegExp(`removed blob ${layer}`));
    await mirror.stop();
  });
});
