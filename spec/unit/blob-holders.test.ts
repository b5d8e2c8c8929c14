/**
 * Who holds what (src/fleet/blob-holders.ts) against a real redis-server: the record names
 * stores, and only a live instance whose heartbeat says it serves one of them is ever named to
 * be dialed. Heartbeats are written by the mirror's own FleetHeartbeat; forged ones by hand, as
 * anyone who can write to Redis could.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import winston from 'winston';
import { BlobHolders } from '../../src/fleet/blob-holders.ts';
import { FleetHeartbeat } from '../../src/fleet/heartbeat.ts';
import { PeerDirectory } from '../../src/fleet/peer-directory.ts';
import { skipUnlessBinaries } from '../support/processes.ts';
import { testRedis } from '../support/redis.ts';
import { eventually } from '../support/wait.ts';

const logger = winston.createLogger({ silent: true });
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const OURS = '0123456789abcdef';
const THEIRS = 'fedcba9876543210';
const ELSEWHERE = '00000000000000ff';

describe('who holds what: the record of the stores holding each blob', { skip: skipUnlessBinaries(['redis-server']) }, () => {
  const redis = testRedis();

  /** A heartbeat of an instance serving `storeId`, as a mirror beats it. */
  function instance(connection: Awaited<ReturnType<typeof redis.connect>>, id: string, storeId: string): FleetHeartbeat {
    const heartbeat = new FleetHeartbeat({ redis: connection, logger, version: 'test', fillsInFlight: () => 0, id, storeId });
    heartbeat.start('127.0.0.1:5000', '127.0.0.1:5001');
    return heartbeat;
  }

  it('keeps the stores that committed a blob, drops one that evicted it, and names the live instances serving the others', async () => {
    const connection = await redis.connect(logger, 'fleet:unit');
    const self = 'host-1-0000000a';
    const holders = new BlobHolders({ redis: connection, storeId: OURS, directory: new PeerDirectory({ redis: connection, self }), logger });
    const theirs = new BlobHolders({ redis: connection, storeId: THEIRS, directory: new PeerDirectory({ redis: connection, self: 'host-2-0000000b' }), logger });
    const beats = [instance(connection, self, OURS), instance(connection, 'host-2-0000000b', THEIRS)];
    try {
      await holders.committed(DIGEST);
      await theirs.committed(DIGEST);
      assert.deepEqual(new Set(await connection.client.smembers(`holders:{${DIGEST}}`)), new Set([OURS, THEIRS]));
      // Both beats are out (the first goes at start, asynchronously).
      assert.ok(await eventually(async () => (await connection.client.hlen('fleet:{fleet}:instances')) === 2));
      // Never this instance's own store: it is the one missing the blob.
      assert.deepEqual(await holders.holders(DIGEST), [{ instance: 'host-2-0000000b', storeId: THEIRS }]);
      await theirs.removed(DIGEST);
      assert.deepEqual(await connection.client.smembers(`holders:{${DIGEST}}`), [OURS]);
      assert.deepEqual(await holders.holders(DIGEST), []);
    } finally {
      for (const beat of beats) await beat.stop();
    }
  });

  it('names no instance that is not alive, not an instance name, or whose heartbeat names another store or no peer address; ignores entries that are no store id', async () => {
    const connection = await redis.connect(logger, 'fleet:forged');
    const holders = new BlobHolders({ redis: connection, storeId: OURS, directory: new PeerDirectory({ redis: connection, self: 'host-1-0000000a' }), logger });
    const record = (id: string, extra: Record<string, unknown>) =>
      JSON.stringify({ id, hostname: 'elsewhere', pid: 1, address: '127.0.0.1:1', peerAddress: '127.0.0.1:2', storeId: THEIRS, version: 'x', startedAt: 0, fillsInFlight: 0, lastSeen: Date.now(), ...extra });
    const alive = (id: string) => connection.client.set(`fleet:{fleet}:alive:${id}`, '1', 'PX', 60_000);
    // A store id on the record that is a path, and one no live instance serves.
    await connection.client.sadd(`holders:{${DIGEST}}`, '../../etc', ELSEWHERE, THEIRS);
    await connection.client.hset('fleet:{fleet}:instances', {
      // Its alive key expired: gone.
      'dead-1-0000000c': record('dead-1-0000000c', {}),
      // Alive, but a name no instance gives itself.
      'not an instance': record('not an instance', {}),
      // Alive, said it stopped.
      'stopped-1-0000000d': record('stopped-1-0000000d', { stoppedAt: Date.now() }),
      // Alive, serving another store.
      'other-1-0000000e': record('other-1-0000000e', { storeId: '1111111111111111' }),
      // Alive, without a peer listener.
      'nopeer-1-0000000f': record('nopeer-1-0000000f', { peerAddress: undefined }),
      // Alive and serving THEIRS: the one to ask.
      'good-1-00000010': record('good-1-00000010', {}),
    });
    for (const id of ['not an instance', 'stopped-1-0000000d', 'other-1-0000000e', 'nopeer-1-0000000f', 'good-1-00000010']) await alive(id);
    assert.deepEqual(await holders.holders(DIGEST), [{ instance: 'good-1-00000010', storeId: THEIRS }]);
  });
});
