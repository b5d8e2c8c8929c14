import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { MemoryDescriptorCache } from '../../src/cache/memory-descriptor-cache.ts';
import { RedisDescriptorCache } from '../../src/cache/redis-descriptor-cache.ts';
import type { DescriptorCache } from '../../src/cache/descriptor-cache.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ProxyBlobStore } from '../../src/proxy/proxy-blob-store.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { FilesystemBlobStore } from '../../src/storage/blob-store.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { sha256Digest } from '../support/images.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';

const logger = winston.createLogger({ silent: true });

describe('deleting a blob', { skip: skipUnlessBinaries(['redis-server']) }, () => {
  let redis: RedisServer;
  let connection: RedisConnection;
  let dir: TempDir;
  before(async () => {
    redis = await startRedis();
    connection = createRedisConnection(loadConfig({ env: { REDIS_URL: redis.url } }).redis, logger);
    while (!connection.available) await sleep(10);
    dir = tempDir('pullmirror-delete');
  });
  after(async () => {
    await connection?.close();
    await redis?.close();
    await dir?.cleanup();
  });

  for (const [name, cache] of [
    ['inmemory', () => new MemoryDescriptorCache(10)],
    ['redis', () => new RedisDescriptorCache(connection)],
  ] as [string, () => DescriptorCache][]) {
    it(`leaves no descriptor behind (${name})`, async () => {
      const descriptors = cache();
      const blobs = new FilesystemBlobStore(new StorePaths(`${dir.path}/${name}`), `${dir.path}/${name}/_tmp/x`);
      const store = new ProxyBlobStore({ blobs, cache: descriptors, logger });
      const bytes = Buffer.from(`content for ${name}`);
      const digest = parseDigest(sha256Digest(bytes));
      await blobs.putSmall(digest, bytes);
      assert.deepEqual(await store.localDescriptor(digest), { digest: digest.value, size: bytes.length });
      assert.ok(await descriptors.get(digest.value), 'cached after the first look');
      assert.equal(await store.delete(digest), true);
      assert.equal(await descriptors.get(digest.value), undefined);
      assert.equal(await store.localDescriptor(digest), undefined);
    });
  }
});
