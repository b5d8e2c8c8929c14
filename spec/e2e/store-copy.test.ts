/**
 * A store copied with its `_store-id` (a cloned volume; here `cp -a`) is not the store it was
 * copied from: instances on the two disks must not believe they share one. Two store
 * directories made by copying one, one real redis-server, real mirrors (no upstream needed:
 * nothing is pulled). Instances on one store keep sharing (the control).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { KEY_PREFIX } from '../../src/redis/redis-connection.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { eventually } from '../support/wait.ts';

const run = promisify(execFile);

interface FleetAnswer {
  redis: string;
  instances: { address: string; state: string; self: boolean }[];
}

describe('a cloned store volume', { skip: skipUnlessBinaries(['redis-server', 'cp']) }, () => {
  let redis: RedisServer;
  const work = tempDir('pullmirror-store-copy');
  const mirrors: RunningMirror[] = [];

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    await Promise.all(mirrors.map((mirror) => mirror.stop()));
    await redis?.close();
    await work.cleanup();
  });

  const start = async (root: string) => {
    const mirror = await startMirror({ remoteurl: 'http://127.0.0.1:9', root, config: { redis: { addr: redis.addr, dialtimeout: '2s' } } });
    mirrors.push(mirror);
    return mirror;
  };
  const storeIdOf = (root: string) => readFileSync(path.join(root, '_store-id'), 'utf8').trim();
  const fleetOf = async (mirror: RunningMirror) => (await (await fetch(`${mirror.url}/api/fleet`)).json()) as FleetAnswer;
  const addressesIn = async (mirror: RunningMirror) => (await fleetOf(mirror)).instances.filter((i) => i.state === 'alive').map((i) => i.address);
  const addressOf = (mirror: RunningMirror) => `127.0.0.1:${mirror.port}`;
  const copyWarnings = (mirror: RunningMirror) => mirror.logLines().filter((line) => /this store is a copy of another one/.test(String(line.message)));

  it('is told apart at start: said in the log, given an id of its own; instances on the original keep sharing theirs', async () => {
    const original = path.join(work.path, 'original');
    const copy = path.join(work.path, 'copy');
    const first = await start(original);
    await first.stop();
    const id = storeIdOf(original);
    await run('cp', ['-a', original, copy]);
    assert.equal(storeIdOf(copy), id, 'the copy carries the id');

    // Two instances on the original: one store, one id, one fleet.
    const a = await start(original);
    const b = await start(original);
    assert.ok(await eventually(async () => (await addressesIn(a)).length === 2, 15_000), 'the two instances on the original see each other');

    const c = await start(copy);
    const warnings = copyWarnings(c);
    assert.equal(warnings.length, 1, JSON.stringify(c.logLines().filter((line) => line.level !== 'info')));
    assert.equal(warnings[0].level, 'warn');
    assert.equal(warnings[0].copiedStoreId, id);
    assert.equal(warnings[0].storeId, storeIdOf(copy));
    assert.notEqual(storeIdOf(copy), id, 'the copy has an id of its own');
    assert.equal(storeIdOf(original), id, "the original's id is untouched");

    // Once the copy's instance has announced itself, the original's fleet does not hold it, and it holds nobody else.
    assert.ok(await eventually(async () => (await addressesIn(c)).includes(addressOf(c)), 15_000));
    assert.deepEqual(await addressesIn(c), [addressOf(c)]);
    assert.deepEqual((await addressesIn(a)).sort(), [addressOf(a), addressOf(b)].sort());
    for (const mirror of [a, b]) assert.deepEqual(copyWarnings(mirror), [], 'the original is not taken for a copy');

    // A restart of the copy's instance keeps its new id: it is a store of its own now.
    await c.stop();
    const again = await start(copy);
    assert.deepEqual(copyWarnings(again), []);
    assert.equal(storeIdOf(copy), warnings[0].storeId);
    assert.deepEqual(copyWarnings(a), []);
  });

  it('a copy made while an instance runs, and started at once, is found by the probe renewals (15 s) and the two stores get two ids', async () => {
    const original = path.join(work.path, 'live');
    const copy = path.join(work.path, 'live-copy');
    const a = await start(original);
    const id = storeIdOf(original);
    await run('cp', ['-a', original, copy]);
    const c = await start(copy);
    // Either the copy's start finds it (the original renewed its probe between the copy and the
    // start), or a renewal does within one interval: then the instance that finds it logs an error.
    const reports = () => [...copyWarnings(a), ...copyWarnings(c)];
    assert.ok(await eventually(() => reports().length > 0, 40_000, 250), 'found within the renewal interval');
    assert.equal(reports().length, 1, JSON.stringify(reports()));
    const [report] = reports();
    assert.equal(report.copiedStoreId, id);
    assert.notEqual(storeIdOf(original), storeIdOf(copy), 'the two stores have two ids now');
    if (report.level === 'error') assert.match(String(report.message), /restart this instance/);
  });

  it('a probe name read from Redis that is not one (a path) is never used as a file name', async () => {
    const root = path.join(work.path, 'probed');
    const first = await start(root);
    await first.stop();
    // Whoever can write the Redis keys: a name that would reach outside the probe directory.
    await mkdir(path.join(root, 'blobs'), { recursive: true });
    writeFileSync(path.join(root, 'blobs', 'keep-me'), 'x');
    assert.match(await redis.command(`SET ${KEY_PREFIX}${storeIdOf(root)}:store-probe ../blobs/keep-me`), /^\+OK/);
    const mirror = await start(root);
    assert.ok(mirror.logLines().some((line) => line.message === 'store probe: ignoring a malformed probe name read from redis'));
    assert.deepEqual(copyWarnings(mirror), [], 'not taken for a copy either');
    assert.equal(readFileSync(path.join(root, 'blobs', 'keep-me'), 'utf8'), 'x', 'nothing outside the probe directory touched');
  });
});
