/**
 * Values read from Redis are input like any other: whoever can write the fleet's keys must not
 * be able to make the mirror answer odd statuses, nor touch a file. One real pullmirror with a
 * real redis-server, in front of the real upstream; the keys are written straight into Redis
 * as a hostile (or buggy) peer would write them.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pushRandomBlob } from '../support/images.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { stored } from '../support/store.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

describe('fleet: values read from Redis', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let client: Redis;
  let store: TempDir;
  let mirror: RunningMirror;
  let root: string;
  /** The mirror's key prefix: `pullmirror:<store id>:`. */
  let prefix: string;

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    store = tempDir('pullmirror-fleet-values');
    root = path.join(store.path, 'store');
    mirror = await world.startMirror({
      root,
      config: { redis: { addr: redis.addr, fleet: { lease: '1s' } }, proxy: { timeouts: { connect: '1s', headers: '2s', bodyidle: '5s' } } },
    });
    prefix = `pullmirror:${readFileSync(path.join(root, '_store-id'), 'utf8').trim()}:`;
  });

  after(async () => {
    client?.disconnect();
    await world?.close();
    await redis?.close();
    await store?.cleanup();
  });

  /** GETs a blob through the mirror: status, and the digest of the body when it is 200. */
  async function get(digest: string): Promise<{ status: number; digest?: string; body?: string }> {
    const response = await fetch(`${mirror.url}/v2/library/values/blobs/${digest}`);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (response.status !== 200) return { status: response.status, body: bytes.toString('utf8') };
    return { status: 200, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
  }

  /** Another "instance" holds the blob's download for a moment (epoch 7), then leaves `failure` for its followers. */
  async function holderFailsWith(digest: string, failure: Record<string, unknown>): Promise<void> {
    await client.set(`${prefix}fill:{${digest}}`, 'otherhost-4242-feedface 7 {}', 'PX', 1500);
    await client.set(`${prefix}fillfailed:{${digest}}`, JSON.stringify({ epoch: 7, ...failure }), 'PX', 30_000);
  }

  /** Every file under `dir`, relative to it, with its sha256: what a test compares before and after. */
  function snapshot(dir: string): Map<string, string> {
    const files = new Map<string, string>();
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      files.set(path.relative(dir, file), createHash('sha256').update(readFileSync(file)).digest('hex'));
    }
    return files;
  }

  it('a fill lease naming a path (or a name that is not an instance\'s) moves and deletes nothing; the blob is served', async () => {
    // Something in the store to lose.
    const kept = await pushRandomBlob(world.registry.url, PUSHER, 'library/values', { sizeMiB: 0.25, label: 'values-kept' });
    assert.equal((await get(kept.digest)).digest, kept.digest);
    assert.ok(await stored(root, kept.digest));
    const before = snapshot(path.join(root, 'blobs'));
    const hostile = [
      // What a claim used to carry: a temp path, here one that leaves _tmp.
      'feedfacecafe.0123456789ab {"tempPath":"_tmp/../blobs","size":262144}',
      '_tmp/../blobs 1 {"started":true,"size":262144}',
      '../../blobs 1 {"started":true,"size":262144}',
      '.. 1 {"started":true}',
      'otherhost-4242-feedface 1/../../../blobs {"started":true}',
      'otherhost-4242-feedface -1 {"started":true}',
    ];
    // No expiry at all: no instance writes a claim without one.
    const forever = new Set(['.. 1 {"started":true}']);
    for (const [i, value] of hostile.entries()) {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/values', { sizeMiB: 0.25, label: `values-lease-${i}` });
      if (forever.has(value)) await client.set(`${prefix}fill:{${blob.digest}}`, value);
      else await client.set(`${prefix}fill:{${blob.digest}}`, value, 'PX', 1500);
      const got = await get(blob.digest);
      assert.equal(got.status, 200, `lease ${value}: ${got.body?.slice(0, 200)}`);
      assert.equal(got.digest, blob.digest);
      assert.ok(await stored(root, blob.digest), `lease ${value}: the follower fetched the blob itself and stored it`);
    }
    const afterwards = snapshot(path.join(root, 'blobs'));
    for (const [file, hash] of before) assert.equal(afterwards.get(file), hash, `${file} is still in the store, unchanged`);
    assert.equal((await get(kept.digest)).digest, kept.digest);
  });

  it('a failure record with a prototype key or a status that does not match its code is ignored: the request is served', async () => {
    const crafted = [
      { code: 'constructor', message: 'crafted', status: 200 },
      { code: '__proto__', message: 'crafted', status: 500 },
      { code: 'hasOwnProperty', message: 'crafted' },
      { code: 'BLOB_UNKNOWN', message: 'crafted', status: 200 },
      { code: 'UPSTREAM_UNAVAILABLE', message: 'crafted', status: 302 },
      { code: 'TOOMANYREQUESTS', message: 'x'.repeat(100_000), status: 429 },
    ];
    for (const [i, record] of crafted.entries()) {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/values', { sizeMiB: 0.25, label: `values-failure-${i}` });
      await holderFailsWith(blob.digest, record);
      const got = await get(blob.digest);
      assert.equal(got.status, 200, `record ${JSON.stringify(record).slice(0, 80)}: ${got.body?.slice(0, 200)}`);
      assert.equal(got.digest, blob.digest);
      assert.ok(await stored(root, blob.digest), 'the follower fetched the blob itself and stored it');
    }
  });

  it('a well-formed failure record still fails the followers with its code and status', async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/values', { sizeMiB: 0.25, label: 'values-failure-genuine' });
    await holderFailsWith(blob.digest, { code: 'DIGEST_INVALID', message: 'upstream content does not match its digest', status: 502 });
    const got = await get(blob.digest);
    assert.equal(got.status, 502);
    assert.equal(JSON.parse(got.body!).errors[0].code, 'DIGEST_INVALID');
  });
});
