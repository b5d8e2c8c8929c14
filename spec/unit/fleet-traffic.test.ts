/**
 * The fleet's traffic on a real redis-server: two instances' counts add up, a second's
 * batch goes out in one write, and what another writer put in the keys is shown only when it
 * is a figure (numbers ≥ 0, pull records with their fields) and never breaks the answer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import winston from 'winston';
import { FleetTraffic } from '../../src/fleet/fleet-traffic.ts';
import { skipUnlessBinaries } from '../support/processes.ts';
import { testRedis } from '../support/redis.ts';

const logger = winston.createLogger({ silent: true });

describe('fleet traffic', { skip: skipUnlessBinaries(['redis-server']) }, () => {
  const redis = testRedis();
  const connect = () => redis.connect(logger, 'store-a');

  it('adds up what each instance served: totals, minutes, repositories, the latest pulls with who served them', async () => {
    await redis.server.command('FLUSHALL');
    const [one, two] = [await connect(), await connect()];
    const a = new FleetTraffic({ redis: one, logger, address: () => '10.0.0.1:5000' });
    const b = new FleetTraffic({ redis: two, logger, address: () => '10.0.0.2:5000' });
    const now = Date.now();
    a.response('miss', 1000, now);
    a.pull({ at: now, repository: 'library/alpine', reference: '3', cache: 'miss' });
    b.response('hit', 1000, now);
    b.response('stale', 500, now);
    b.pull({ at: now + 1, repository: 'library/alpine', reference: '3', cache: 'hit' });
    b.pull({ at: now + 2, repository: 'team/web', reference: '1', cache: 'stale' });
    await Promise.all([a.flush(), b.flush()]);
    const seen = await a.snapshot(60, now);
    assert.ok(seen);
    assert.deepEqual({ ...seen.totals }, { requests: 3, hits: 1, misses: 1, stale: 1, bytesFromCache: 1500, bytesFromUpstream: 1000, pulls: 3, hitRatio: 2 / 3 });
    assert.deepEqual(seen.minutes.at(-1), { minute: now - (now % 60_000), requests: 3, hits: 2, misses: 1, bytesFromCache: 1500, bytesFromUpstream: 1000 });
    assert.equal(seen.minutes.length, 60);
    assert.deepEqual(seen.topRepositories, [{ repository: 'library/alpine', pulls: 2 }, { repository: 'team/web', pulls: 1 }]);
    assert.deepEqual(seen.recentPulls.map((p) => [p.repository, p.cache, p.instance]), [
      ['team/web', 'stale', '10.0.0.2:5000'],
      ['library/alpine', 'hit', '10.0.0.2:5000'],
      ['library/alpine', 'miss', '10.0.0.1:5000'],
    ]);
    // Nothing counted twice: a flush with nothing new writes nothing.
    await a.flush();
    assert.equal((await b.snapshot(60, now))?.totals.pulls, 3);
  });

  it('shows only figures from keys someone else wrote: junk counts read 0, junk pulls are left out', async () => {
    await redis.server.command('FLUSHALL');
    const connection = await connect();
    // Through the same connection, so under the same key prefix as the figures.
    await connection.client.hset('traffic:{traffic}:totals', { pulls: '-5', hits: 'lots', misses: '1e400', bytesFromCache: '12' });
    await connection.client.lpush(
      'traffic:{traffic}:recent',
      'not json',
      JSON.stringify({ at: 1, repository: { toString: 1 }, reference: '1', cache: 'hit' }),
      JSON.stringify({ at: 2, repository: 'ok/repo', reference: 'v1', cache: 'exploded' }),
      JSON.stringify({ at: 3, repository: 'ok/repo', reference: 'v1', cache: 'hit', instance: 'x'.repeat(1000) }),
    );
    const traffic = new FleetTraffic({ redis: connection, logger, address: () => 'me' });
    const seen = await traffic.snapshot();
    assert.ok(seen);
    assert.deepEqual([seen.totals.pulls, seen.totals.hits, seen.totals.misses, seen.totals.bytesFromCache], [0, 0, 0, 12]);
    assert.deepEqual(seen.recentPulls.map((p) => [p.repository, p.cache, p.instance?.length]), [['ok/repo', 'hit', 100]]);
  });

  it('answers undefined while Redis is unreachable (the overview then shows this instance)', async () => {
    const connection = await connect();
    const traffic = new FleetTraffic({ redis: connection, logger, address: () => 'me' });
    await redis.server.stop();
    try {
      traffic.response('hit', 10, Date.now());
      await traffic.flush();
      assert.equal(await traffic.snapshot(), undefined);
    } finally {
      await redis.server.start();
    }
  });
});
