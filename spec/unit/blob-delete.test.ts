/**
 * A blob removed from the store leaves no descriptor in the shared Redis cache: not when
 * `pullmirror gc` removes it from another process, where no mirror would notice.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { stringify } from 'yaml';
import { RedisDescriptorCache } from '../../src/cache/redis-descriptor-cache.ts';
import { loadConfig } from '../../src/config/load.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { storeId } from '../../src/storage/store-id.ts';
import { sha256Digest } from '../support/images.ts';
import { cleanEnv, skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
const logger = winston.createLogger({ silent: true });

describe('deleting a blob', { skip: skipUnlessBinaries(['redis-server']) }, () => {
  let redis: RedisServer;
  let dir: TempDir;
  const connections: RedisConnection[] = [];
  before(async () => {
    redis = await startRedis();
    dir = tempDir('pullmirror-delete');
  });
  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await redis?.close();
    await dir?.cleanup();
  });

  it('with pullmirror gc leaves no descriptor behind in Redis', async () => {
    const root = path.join(dir.path, 'store');
    const paths = new StorePaths(root);
    mkdirSync(root, { recursive: true });
    const id = await storeId(new FilesystemDriver({ root, tempDir: paths.tmpDir() }));
    assert.ok(id);
    // An unreferenced blob, last used long ago: the next pass removes it.
    const bytes = Buffer.from('an orphan layer');
    const digest = parseDigest(sha256Digest(bytes));
    mkdirSync(path.dirname(paths.blob(digest)), { recursive: true });
    writeFileSync(paths.blob(digest), bytes);
    const old = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    utimesSync(paths.blob(digest), old, old);
    const config = { storage: { filesystem: { rootdirectory: root }, cache: { blobdescriptor: 'redis' } }, redis: { addr: redis.addr } };
    const connection = createRedisConnection(loadConfig({ env: { REGISTRY_REDIS_ADDR: redis.addr } }).redis, logger, id);
    connections.push(connection);
    assert.ok(await connection.whenReady(5_000));
    const descriptors = new RedisDescriptorCache(connection);
    await descriptors.set({ digest: digest.value, size: bytes.length });

    const configFile = path.join(dir.path, 'config.yml');
    writeFileSync(configFile, stringify(config));
    const output = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [MAIN, 'gc', configFile], { env: cleanEnv(['REGISTRY_']) }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout))),
    );
    assert.match(output, new RegExp(`removed blob ${digest.value}`));
    assert.equal(await descriptors.get(digest.value), undefined);
  });
});
