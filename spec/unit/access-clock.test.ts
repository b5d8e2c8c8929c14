import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import winston from 'winston';
import { loadConfig } from '../../src/config/load.ts';
import { accessItem, AccessClockUnavailable } from '../../src/eviction/access-clock.ts';
import { openAccessClock } from '../../src/eviction/access-clock-setup.ts';
import { LocalAccessClock } from '../../src/eviction/local-access-clock.ts';
import { RedisAccessClock } from '../../src/eviction/redis-access-clock.ts';
import { PassHeldElsewhere, RedisPassLock } from '../../src/eviction/pass-lock.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { findStoreId, requireStoreId } from '../../src/storage/store-id.ts';
import { skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { testRedis } from '../support/redis.ts';
import { accessClockSuite } from './access-clock-suite.ts';

const logger = winston.createLogger({ silent: true });
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const T0 = Date.UTC(2026, 0, 1);

accessClockSuite('local journal', async () => {
  const dir = tempDir('pullmirror-clock');
  const clocks: LocalAccessClock[] = [];
  return {
    open: async () => {
      const clock = new LocalAccessClock({ dir: path.join(dir.path, '_access-clock'), logger });
      clocks.push(clock);
      return clock;
    },
    close: async () => {
      await Promise.all(clocks.map((clock) => clock.close()));
      await dir.cleanup();
    },
  };
});

describe('access clock: local journal on disk', () => {
  const dir = tempDir('pullmirror-clock-disk');
  after(() => dir.cleanup());
  let n = 0;
  const fresh = () => path.join(dir.path, `clock-${n++}`);

  it('skips a line torn by a crash; the next process starts on a line of its own', async () => {
    const clockDir = fresh();
    const writer = new LocalAccessClock({ dir: clockDir, logger });
    writer.touch(accessItem.blob(digest('a')), T0 + 1);
    await writer.close();
    // A crash mid-append leaves part of a line.
    appendFileSync(path.join(clockDir, 'journal'), `${T0 + 2} b:sha256:bb`);
    const next = new LocalAccessClock({ dir: clockDir, logger });
    next.touch(accessItem.blob(digest('c')), T0 + 3);
    await next.close();
    const reader = new LocalAccessClock({ dir: clockDir, logger });
    const items = [accessItem.blob(digest('a')), 'b:sha256:bb', accessItem.blob(digest('c'))];
    assert.deepEqual(await reader.lastUses(items), [T0 + 1, T0 + 2, T0 + 3], 'the torn line holds what it holds; the next is whole');
    await reader.close();
  });

  it('compacts a grown journal to one line per item, and a reader that had read it before still sees every record', async () => {
    const clockDir = fresh();
    const journal = path.join(clockDir, 'journal');
    const writer = new LocalAccessClock({ dir: clockDir, logger, compactMinBytes: 20_000 });
    const reader = new LocalAccessClock({ dir: clockDir, logger, compacts: false });
    const items = Array.from({ length: 50 }, (_, i) => accessItem.tag('library/app', `v${i}`));
    writer.touch(items[0], T0);
    await writer.flush();
    assert.deepEqual(await reader.lastUses([items[0]]), [T0]);
    const inodeBefore = statSync(journal).ino;
    // Every item used again and again: the journal grows past twice its size, and is compacted.
    for (let round = 1; round <= 20; round++) {
      for (const item of items) writer.touch(item, T0 + round * 1000);
      await writer.flush();
    }
    const lines = readFileSync(journal, 'utf8').trim().split('\n');
    assert.notEqual(statSync(journal).ino, inodeBefore, 'rewritten (a new file renamed over it)');
    assert.ok(lines.length < 20 * items.length, `compacted: ${lines.length} lines`);
    assert.deepEqual(await reader.lastUses(items), items.map(() => T0 + 20_000));
    await writer.close();
    await reader.close();
  });

  it('a journal that cannot be read stops a lookup with AccessClockUnavailable (no pass runs on object ages alone)', async () => {
    const clockDir = fresh();
    mkdirSync(path.join(clockDir, 'journal'), { recursive: true });
    const clock = new LocalAccessClock({ dir: clockDir, logger });
    await assert.rejects(clock.lastUses([accessItem.blob(digest('e'))]), AccessClockUnavailable);
    await clock.close();
  });

  it('writes nothing while nothing was touched (a dry run leaves the store as it was)', async () => {
    const clockDir = fresh();
    const clock = new LocalAccessClock({ dir: clockDir, logger });
    await clock.lastUses([accessItem.blob(digest('f'))]);
    await clock.close();
    assert.throws(() => statSync(clockDir), /ENOENT/);
  });
});

/**
 * Without Redis, a store on a bucket keeps its journal in the local spool directory, which
 * instances of different buckets on one host share (its default is in the OS's temp directory).
 * The buckets here are in-memory drivers, each given its id as the mirror gives one
 * (storage/store-id.ts); the journals are real files in one spool.
 */
describe('access clock: local journal of a store on a bucket', () => {
  const dir = tempDir('pullmirror-clock-bucket');
  after(() => dir.cleanup());
  let n = 0;
  const spool = () => path.join(dir.path, `spool-${n++}`);
  const bucketConfig = (bucket: string, spooldirectory: string) =>
    loadConfig({ env: { REGISTRY_STORAGE_S3_BUCKET: bucket, REGISTRY_STORAGE_S3_REGION: 'us-east-1', REGISTRY_STORAGE_S3_SPOOLDIRECTORY: spooldirectory } });
  /** The clock a mirror on `bucket` opens: it makes the store's id when there is none. */
  const mirrorClock = (bucket: MemoryDriver, name: string, spooldirectory: string) =>
    openAccessClock({ config: bucketConfig(name, spooldirectory), logger, storeId: () => requireStoreId(bucket) });
  const item = accessItem.tag('library/alpine', '3');

  it("two stores on one spool directory keep their records apart, each instance and `gc` reading its own store's", async () => {
    const shared = spool();
    const [one, two] = [new MemoryDriver(), new MemoryDriver()];
    const clockOne = mirrorClock(one, 'one', shared);
    clockOne.touch(item, T0 + 1);
    await clockOne.close();
    const clockTwo = mirrorClock(two, 'two', shared);
    assert.deepEqual(await clockTwo.lastUses([item]), [undefined], "the other store's use is not this one's");
    clockTwo.touch(item, T0 + 2);
    await clockTwo.close();
    // gc beside each (it reads the id, never makes one) finds that store's records.
    for (const [bucket, name, expected] of [[one, 'one', T0 + 1], [two, 'two', T0 + 2]] as const) {
      const gcClock = openAccessClock({ config: bucketConfig(name, shared), logger, compacts: false, storeId: () => findStoreId(bucket) });
      assert.deepEqual(await gcClock.lastUses([item]), [expected], name);
      await gcClock.close();
    }
  });

  it('a store keeps the records of the journal every store of the spool shared before, and adds its own apart', async () => {
    const shared = spool();
    const before = new LocalAccessClock({ dir: path.join(shared, '_access-clock'), logger });
    before.touch(item, T0 + 5);
    await before.close();
    const [one, two] = [new MemoryDriver(), new MemoryDriver()];
    const clockOne = mirrorClock(one, 'one', shared);
    assert.deepEqual(await clockOne.lastUses([item]), [T0 + 5], 'the use recorded before the upgrade still counts');
    clockOne.touch(item, T0 + 9);
    await clockOne.close();
    const clockTwo = mirrorClock(two, 'two', shared);
    assert.deepEqual(await clockTwo.lastUses([item]), [T0 + 5], 'the other store has the shared records too, not the first store\'s new one');
    await clockTwo.close();
    // A store no instance of this version has run on has no id: gc reads the shared journal, as before.
    const untouched = openAccessClock({ config: bucketConfig('three', shared), logger, compacts: false, storeId: () => findStoreId(new MemoryDriver()) });
    assert.deepEqual(await untouched.lastUses([item]), [T0 + 5]);
    await untouched.close();
  });

  it("while the store's id is not known (the bucket has not answered), uses wait in memory and a lookup is unavailable; then they are written under it", async () => {
    const shared = spool();
    let answers = false;
    const id = '00000000000000aa';
    const clock = openAccessClock({
      config: bucketConfig('late', shared),
      logger,
      storeId: async () => {
        if (!answers) throw new Error('the bucket has not answered');
        return id;
      },
    });
    clock.touch(item, T0 + 3);
    await clock.flush();
    await assert.rejects(clock.lastUses([item]), AccessClockUnavailable, 'no pass on a journal that is not known');
    answers = true;
    await clock.flush();
    assert.deepEqual(await clock.lastUses([item]), [T0 + 3]);
    await clock.close();
    assert.match(readFileSync(path.join(shared, '_access-clock', id, 'journal'), 'utf8'), new RegExp(`^${T0 + 3} ${item}$`, 'm'));
  });
});

const noRedis = skipUnlessBinaries(['redis-server']);

describe('access clock: redis', { skip: noRedis }, () => {
  const redis = testRedis();
  const connect = (prefix = 'store-a') => redis.connect(logger, prefix);

  accessClockSuite('redis', async () => {
    await redis.server.command('FLUSHALL');
    const clocks: RedisAccessClock[] = [];
    return {
      open: async () => {
        // Each clock on a connection of its own, as each instance has.
        const connection = await connect();
        const clock = new RedisAccessClock({ redis: connection, logger });
        clocks.push(clock);
        return clock;
      },
      close: async () => {
        await Promise.all(clocks.map((clock) => clock.close()));
      },
    };
  });

  it("keeps each store's records apart (the store id in the key prefix)", async () => {
    const a = await connect('store-a');
    const b = await connect('store-b');
    const item = accessItem.blob(digest('7'));
    const clockA = new RedisAccessClock({ redis: a, logger });
    clockA.touch(item, T0 + 7);
    await clockA.close();
    const clockB = new RedisAccessClock({ redis: b, logger });
    assert.deepEqual(await clockB.lastUses([item]), [undefined]);
    await clockB.close();
  });

  it("the fleet's eviction lock: one holder at a time, a second pass told who holds it; a lease that expired is lost to the next holder (the fence says so)", async () => {
    const one = await connect('store-lock');
    const two = await connect('store-lock');
    const first = await new RedisPassLock({ redis: one, name: 'instance-a', leaseMs: 300 }).acquire();
    assert.equal(await first.stillHeld(), true);
    const other = new RedisPassLock({ redis: two, name: 'instance-b', leaseMs: 300 });
    await assert.rejects(other.acquire(), (error: unknown) => error instanceof PassHeldElsewhere && error.holder === 'instance-a');
    // The holder stalls past its lease (its renewals stop): the lock expires and another pass takes it.
    redis.server.pause();
    await sleep(400);
    redis.server.resume();
    assert.ok(await one.whenReady(5_000) && await two.whenReady(5_000));
    const deadline = Date.now() + 5_000;
    let second;
    while (!second && Date.now() < deadline) second = await other.acquire().catch(() => undefined);
    assert.ok(second, 'the expired lock was taken by the other instance');
    assert.equal(await first.stillHeld(), false, 'the stalled pass is told before its next deletion');
    await first.release();
    await assert.rejects(new RedisPassLock({ redis: one, name: 'instance-a' }).acquire(), PassHeldElsewhere, "releasing a lost lease does not free the new holder's lock");
    await second.release();
    const third = await new RedisPassLock({ redis: one, name: 'instance-a' }).acquire();
    await third.release();
  });

  it('with Redis stopped: a lookup fails with AccessClockUnavailable at once; uses made meanwhile are written once it is back', async () => {
    const connection = await connect('store-outage');
    const clock = new RedisAccessClock({ redis: connection, logger });
    const item = accessItem.tag('library/busybox', 'latest');
    await redis.server.stop();
    try {
      await sleep(100);
      await assert.rejects(clock.lastUses([item]), AccessClockUnavailable);
      clock.touch(item, T0 + 42);
      await clock.flush();
    } finally {
      await redis.server.start();
    }
    assert.ok(await connection.whenReady(10_000), 'reconnected');
    await clock.flush();
    const other = await connect('store-outage');
    const reader = new RedisAccessClock({ redis: other, logger });
    assert.deepEqual(await reader.lastUses([item]), [T0 + 42]);
    await Promise.all([clock.close(), reader.close()]);
  });
});
