/**
 * The Redis code against Sentinel and Cluster, as `redis.mastername` + `addrs` and several
 * `addrs` configure them: the descriptor cache suite, and the fleet coordinator's claims and
 * scripts (which must keep each blob's keys in one Cluster slot).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { RedisDescriptorCache } from '../../src/cache/redis-descriptor-cache.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { HolderState } from '../../src/fleet/fill-coordinator.ts';
import { RedisFillCoordinator } from '../../src/fleet/redis-fill-coordinator.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { skipUnlessBinaries } from '../support/processes.ts';
import { startCluster, startRedis, startSentinel, type RedisServer, type RedisTopology } from '../support/redis.ts';
import { startFailoverTopology, type FailoverTopology } from '../support/redis-failover.ts';
import { descriptorCacheSuite } from './descriptor-cache-suite.ts';

const logger = winston.createLogger({ silent: true });
const DIGEST = `sha256:${'f'.repeat(64)}`;

async function connect(topology: RedisTopology): Promise<RedisConnection> {
  const env: Record<string, string> = { REGISTRY_REDIS_ADDRS: topology.addrs.join(','), REGISTRY_REDIS_READTIMEOUT: '2s' };
  if (topology.mastername) env.REGISTRY_REDIS_MASTERNAME = topology.mastername;
  const connection = createRedisConnection(loadConfig({ env }).redis, logger, 'test');
  const deadline = performance.now() + 10_000;
  while (!connection.available && performance.now() < deadline) await sleep(20);
  assert.ok(connection.available, `connected to ${topology.addrs.join(',')}`);
  return connection;
}

function topologySuite(name: string, start: () => Promise<RedisTopology>): void {
  describe(`redis ${name}`, { skip: skipUnlessBinaries(['redis-server', 'redis-cli']) }, () => {
    let topology: RedisTopology;
    const connections: RedisConnection[] = [];
    const connected = async () => {
      const connection = await connect(topology);
      connections.push(connection);
      return connection;
    };
    before(async () => {
      topology = await start();
    });
    after(async () => {
      await Promise.all(connections.map((c) => c.close()));
      await topology?.close();
    });

    descriptorCacheSuite(`redis ${name}`, async () => new RedisDescriptorCache(await connected()));

    it('hands a blob download to one instance and tells the others who holds it (name and epoch, no path), or why it failed', async () => {
      const [one, two] = [
        new RedisFillCoordinator({ redis: await connected(), leaseMs: 5_000, logger, instance: 'host-1-abcdef01' }),
        new RedisFillCoordinator({ redis: await connected(), leaseMs: 5_000, logger, instance: 'host-2-abcdef02' }),
      ];
      const claim = await one.claimBlob(DIGEST);
      assert.equal(claim.kind, 'mine');
      if (claim.kind !== 'mine') return;
      const holder = { instance: 'host-1-abcdef01', epoch: claim.lease.epoch! };
      assert.ok(holder.epoch > 0);
      assert.deepEqual(await two.claimBlob(DIGEST), { kind: 'theirs', holder });
      assert.deepEqual(withoutExpiry(await two.blobHolder(DIGEST)), { kind: 'held', holder, started: false, size: undefined });
      await claim.lease.publish(1234);
      const held = await two.blobHolder(DIGEST);
      assert.deepEqual(withoutExpiry(held), { kind: 'held', holder, started: true, size: 1234 });
      assert.ok(held.kind === 'held' && held.expiresInMs! > 0 && held.expiresInMs! <= 5_000, 'when the claim expires unless renewed');
      await claim.lease.release({ failed: { code: 'DIGEST_INVALID', message: 'bad', status: 502 } });
      const after = await two.blobHolder(DIGEST);
      assert.deepEqual(after, { kind: 'free', failure: { code: 'DIGEST_INVALID', message: 'bad', status: 502, epoch: holder.epoch } });
      const again = await two.claimBlob(DIGEST);
      assert.equal(again.kind, 'mine', 'free to claim again');
      assert.ok(again.kind === 'mine' && again.lease.epoch! > holder.epoch, 'each claim of a digest has a later epoch');
      await Promise.all([one.close(), two.close()]);
    });

    it('a lease Redis handed to another instance is lost: the renewal stops the holder and the commit fence refuses', async () => {
      const digest = `sha256:${'e'.repeat(64)}`;
      const redis = await connected();
      const [one, two] = [
        new RedisFillCoordinator({ redis, leaseMs: 600, logger, instance: 'host-1-abcdef01' }),
        new RedisFillCoordinator({ redis: await connected(), leaseMs: 600, logger, instance: 'host-2-abcdef02' }),
      ];
      const claim = await one.claimBlob(digest);
      assert.ok(claim.kind === 'mine');
      assert.equal(await claim.lease.stillHeld(), true);
      // What a pause past the lease leads to: the claim expired and another instance took it.
      await redis.client.del(`fill:{${digest}}`);
      const taken = await two.claimBlob(digest);
      assert.ok(taken.kind === 'mine');
      assert.equal(await claim.lease.stillHeld(), false, 'the fence refuses the old epoch');
      assert.ok(claim.lease.lost.aborted, 'the old holder is told to stop');
      assert.equal(await taken.lease.stillHeld(), true, 'the new holder is untouched');
      await claim.lease.release('committed');
      assert.deepEqual(
        withoutExpiry(await one.blobHolder(digest)),
        { kind: 'held', holder: { instance: 'host-2-abcdef02', epoch: taken.lease.epoch }, started: false, size: undefined },
        'the old holder releases nothing of the new one',
      );
      await taken.lease.release('committed');
      await Promise.all([one.close(), two.close()]);
    });

    it("a follower's watch wakes at each state change the holder publishes (started, released, failed), not at its renewals", async () => {
      const digest = `sha256:${'d'.repeat(64)}`;
      const [one, two] = [
        new RedisFillCoordinator({ redis: await connected(), leaseMs: 300, logger, instance: 'host-1-abcdef01' }),
        new RedisFillCoordinator({ redis: await connected(), leaseMs: 300, logger, instance: 'host-2-abcdef02' }),
      ];
      let wakes = 0;
      let other = 0;
      const unwatch = two.watchBlob(digest, () => wakes++);
      two.watchBlob(`sha256:${'c'.repeat(64)}`, () => other++);
      // Subscribed (the subscription itself wakes every follower once: what came before went unheard).
      await until(() => wakes >= 1);
      const woken = async (what: string, act: () => Promise<void>) => {
        const before = wakes;
        await act();
        await until(() => wakes > before, what);
      };
      const claim = await one.claimBlob(digest);
      assert.ok(claim.kind === 'mine');
      await woken('started', () => claim.lease.publish(10));
      const afterStart = wakes;
      // Several renewals (every 100 ms): no word to followers.
      await sleep(450);
      assert.equal(wakes, afterStart, 'renewals publish nothing');
      await woken('committed', () => claim.lease.release('committed'));
      const again = await one.claimBlob(digest);
      assert.ok(again.kind === 'mine');
      await woken('failed', () => again.lease.release({ failed: { code: 'DIGEST_INVALID', message: 'bad', status: 502 } }));
      assert.equal(other, 1, "another digest's follower heard only the subscription");
      unwatch();
      await Promise.all([one.close(), two.close()]);
    });

    it('runs one check for a tag asked on two instances at once, and shares its answer', async () => {
      const [one, two] = [new RedisFillCoordinator({ redis: await connected(), leaseMs: 5_000, logger, instance: 'host-3-abcdef03' }), new RedisFillCoordinator({ redis: await connected(), leaseMs: 5_000, logger, instance: 'host-3-abcdef03' })];
      let checks = 0;
      const check = async () => {
        checks++;
        await sleep(200);
        return DIGEST;
      };
      const answers = await Promise.all([one.lookupOnce('docker.io/library/x:1', 10_000, check), two.lookupOnce('docker.io/library/x:1', 10_000, check)]);
      assert.deepEqual(answers, [DIGEST, DIGEST]);
      assert.equal(checks, 1);
      assert.equal(await two.lookupOnce('docker.io/library/x:1', 10_000, check), DIGEST);
      assert.equal(checks, 1, 'fresh for the window');
      await Promise.all([one.close(), two.close()]);
    });
  });
}

/** A held claim as compared field by field: its expiry moves with every look. */
function withoutExpiry(state: HolderState): HolderState {
  if (state.kind !== 'held') return state;
  const { expiresInMs, ...rest } = state;
  void expiresInMs;
  return rest;
}

/** Resolves once `check` holds; fails the test after 10 s. */
async function until(check: () => boolean, what = 'condition'): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!check() && performance.now() < deadline) await sleep(10);
  assert.ok(check(), what);
}

describe('redis sentinel failover', { skip: skipUnlessBinaries(['redis-server', 'redis-cli']) }, () => {
  let group: FailoverTopology;
  const connections: RedisConnection[] = [];
  before(async () => {
    group = await startFailoverTopology();
  });
  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await group?.close();
  });

  it("a follower's watch comes back on the new master: it is woken at the resubscription, then hears the holder again", async () => {
    const [a, b] = [await connect(group), await connect(group)];
    connections.push(a, b);
    const one = new RedisFillCoordinator({ redis: a, leaseMs: 5_000, logger, instance: 'host-1-abcdef01' });
    const two = new RedisFillCoordinator({ redis: b, leaseMs: 5_000, logger, instance: 'host-2-abcdef02' });
    const first = `sha256:${'1'.repeat(64)}`;
    let wakes = 0;
    two.watchBlob(first, () => wakes++);
    await until(() => wakes >= 1, 'subscribed');
    const before = wakes;
    await group.failOver();
    // Nothing is published during the failover: a wake now is the new subscription's.
    await until(() => wakes > before, 'woken once resubscribed on the new master');
    await until(() => a.available && b.available, 'both connections on the new master');
    const second = `sha256:${'2'.repeat(64)}`;
    let heard = 0;
    two.watchBlob(second, () => heard++);
    const claim = await one.claimBlob(second);
    assert.ok(claim.kind === 'mine', 'the new master hands out claims');
    await claim.lease.publish(10);
    await until(() => heard >= 1, "the holder's publication is heard through the new master");
    await claim.lease.release('committed');
    await Promise.all([one.close(), two.close()]);
  });
});

let master: RedisServer | undefined;
topologySuite('sentinel', async () => {
  master = await startRedis();
  const sentinel = await startSentinel(master);
  return {
    ...sentinel,
    close: async () => {
      await sentinel.close();
      await master?.close();
    },
  };
});
topologySuite('cluster', startCluster);
