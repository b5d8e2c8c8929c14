import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import winston from 'winston';
import { MemoryDescriptorCache } from '../../src/cache/memory-descriptor-cache.ts';
import { RedisDescriptorCache } from '../../src/cache/redis-descriptor-cache.ts';
import { skipUnlessBinaries } from '../support/processes.ts';
import { testRedis } from '../support/redis.ts';
import { descriptorCacheSuite } from './descriptor-cache-suite.ts';

const noRedis = skipUnlessBinaries(['redis-server']);

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: winston.Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] }), lines };
}

descriptorCacheSuite('inmemory', async () => new MemoryDescriptorCache(100));

describe('redis', { skip: noRedis }, () => {
  const redis = testRedis();

  descriptorCacheSuite('redis', async () => {
    await redis.server.command('FLUSHALL');
    const connection = await redis.connect(capturingLogger().logger);
    return new RedisDescriptorCache(connection);
  });

  it('shares descriptors between instances on one Redis', async () => {
    const one = await redis.connect(capturingLogger().logger);
    const two = await redis.connect(capturingLogger().logger);
    const digest = `sha256:${'d'.repeat(64)}`;
    await new RedisDescriptorCache(one).set({ digest, size: 77 });
    assert.deepEqual(await new RedisDescriptorCache(two).get(digest), { digest, size: 77 });
    await new RedisDescriptorCache(two).delete(digest);
    assert.equal(await new RedisDescriptorCache(one).get(digest), undefined);
  });

  it('with Redis hung (commands time out on an open connection) logs once and notices when it answers again', async () => {
    const { logger, lines } = capturingLogger();
    const connection = await redis.connect(logger);
    const cache = new RedisDescriptorCache(connection);
    const digest = `sha256:${'9'.repeat(64)}`;
    redis.server.pause();
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => cache.get(digest)));
      assert.deepEqual(results, Array(20).fill(undefined), 'every call answered "not cached" after the timeout');
    } finally {
      redis.server.resume();
    }
    const deadline = performance.now() + 10_000;
    while (!lines.some((line) => line.message === 'redis reachable again') && performance.now() < deadline) await sleep(50);
    assert.equal(lines.filter((line) => line.level === 'error').length, 1, JSON.stringify(lines));
    assert.ok(lines.some((line) => line.message === 'redis reachable again'));
    await cache.set({ digest, size: 1 });
    assert.deepEqual(await cache.get(digest), { digest, size: 1 });
  });

  it('with Redis stopped answers "not cached" at once, logs the outage once, and recovers by itself', async () => {
    const { logger, lines } = capturingLogger();
    const connection = await redis.connect(logger);
    const cache = new RedisDescriptorCache(connection);
    const digest = `sha256:${'e'.repeat(64)}`;
    await cache.set({ digest, size: 3 });
    await redis.server.stop();
    try {
      for (let i = 0; i < 50; i++) {
        assert.equal(await cache.get(digest), undefined);
        await cache.set({ digest, size: 4 });
        await cache.delete(digest);
        await sleep(10);
      }
      await sleep(1_000); // several reconnect attempts fail meanwhile
      assert.equal(lines.filter((line) => line.level === 'error').length, 1, JSON.stringify(lines));
    } finally {
      await redis.server.start();
    }
    const deadline = performance.now() + 10_000;
    while (!connection.available && performance.now() < deadline) await sleep(50);
    await cache.set({ digest, size: 5 });
    assert.deepEqual(await cache.get(digest), { digest, size: 5 });
    assert.ok(lines.some((line) => line.message === 'redis reachable again'));
    assert.equal(lines.filter((line) => line.level === 'error').length, 1);
  });
});
