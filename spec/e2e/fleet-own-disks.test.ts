/**
 * A fleet whose instances share no disk (issue 24, mode c): two real pullmirror processes, each
 * on a store directory of its own, one real redis-server, peer listeners (redis.fleet.peers) and
 * one fleet name (redis.fleet.name), in front of the real upstream (token server +
 * docker-registry behind the counting, fault-injecting proxy). What a user checks: a cold blob
 * crosses the uplink once for both instances, each instance ends up holding it, and a blob one
 * instance holds is served by the other from it while upstream is down.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import type { RedisConnection } from '../../src/redis/redis-connection.ts';
import { pushImage, pushRandomBlob, randomLayer, sha256Digest, type PushedImage } from '../support/images.ts';
import { runPullmirror, tempFiles, type RunningMirror } from '../support/mirror.ts';
import { getBlob, type Outcome } from '../support/blob-get.ts';
import { openFilesUnder } from '../support/descriptors.ts';
import { freePort, skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { startTcpRelay, type TcpRelay } from '../support/tcp-relay.ts';
import { connectToRedis, startRedis, type RedisServer } from '../support/redis.ts';
import { blobPath, stored } from '../support/store.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const SECRET = 'peer-secret-for-the-own-disks-fleet-0123456789';
const FLEET = 'own-disks-test';
const MiB = 1024 * 1024;
/** How long a follower's client may take past a fault: the 15 s. */
const BOUND_MS = 15_000;
const logger = winston.createLogger({ silent: true });

/**
 * One client's GET of a blob: the status and the digest of what it got (or why its transfer
 * broke); `firstByte` is called when its first bytes come.
 */
async function pull(url: string, firstByte?: () => void): Promise<{ status: number; digest?: string; error?: string }> {
  try {
    const response = await fetch(url);
    const hash = createHash('sha256');
    for await (const chunk of response.body!) {
      if (firstByte) firstByte();
      firstByte = undefined;
      hash.update(chunk);
    }
    return { status: response.status, digest: `sha256:${hash.digest('hex')}` };
  } catch (error) {
    return { status: 0, error: (error as Error).message };
  }
}

/** `pullmirror gc ARGS config.yml` against a mirror's store (its own config, so its own Redis keys); its stdout. */
async function gc(mirror: RunningMirror, ...args: string[]): Promise<string> {
  const run = await runPullmirror(['gc', ...args, mirror.configFile]);
  if (run.code !== 0) throw new Error(`pullmirror gc failed: ${run.stderr || run.stdout}`);
  return run.stdout;
}

/**
 * A client's GET of an image's manifest by tag: the instance then knows which blobs the
 * repository holds, as a pull would have it (with upstream credentials, proxy.privaterepos.protect
 * serves an anonymous client a blob only through a repository known to hold it).
 */
async function pullManifest(mirror: RunningMirror, image: PushedImage): Promise<void> {
  const response = await fetch(`${mirror.url}/v2/${image.name}/manifests/${image.tag}`, { headers: { accept: image.mediaType } });
  assert.equal(response.status, 200);
  assert.equal(sha256Digest(Buffer.from(await response.arrayBuffer())), image.manifestDigest);
}

const storeIdOf = (mirror: RunningMirror) => readFileSync(path.join(mirror.root, '_store-id'), 'utf8').trim();

describe('a fleet on disks of their own: one Redis, peers stream blobs to each other and each stores them', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let fleetKeys: RedisConnection;
  const work = tempDir('pullmirror-own-disks');

  /** An instance on a store directory of its own, in the fleet FLEET, with a peer listener. */
  const member = (name: string, extra: Record<string, unknown> = {}) =>
    world.startMirror({
      root: path.join(work.path, name),
      config: {
        http: { secret: SECRET },
        redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { name: FLEET, lease: '2s', peers: { addr: '127.0.0.1:0', advertise: '127.0.0.1:0', timeout: '2s' } } },
        proxy: { timeouts: { connect: '1s', headers: '2s', bodyidle: '5s' } },
        storage: { cache: { blobdescriptor: 'redis' } },
        ...extra,
      },
    });

  before(async () => {
    [world, redis] = await Promise.all([startWorld(), startRedis()]);
    fleetKeys = await connectToRedis(redis, logger, `fleet:${FLEET}`);
  });
  after(async () => {
    await fleetKeys?.close();
    await world?.close();
    await redis?.close();
    await work.cleanup();
  });

  it('2×8 clients on two instances pull a cold blob: one upstream GET, the follower streams it from the holder as it lands and stores it itself', async () => {
    const [a, b] = await Promise.all([member('a1'), member('b1')]);
    try {
      assert.notEqual(storeIdOf(a), storeIdOf(b), 'two stores');
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/disks', { sizeMiB: 6, label: 'own-disks-cold' });
      const upstreamPath = new RegExp(`/blobs/${blob.digest}$`);
      world.proxy.reset();
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', upstreamPath) });
      let pulls: ReturnType<typeof pull>[];
      try {
        const onA = Array.from({ length: 8 }, () => pull(`${a.url}/v2/library/disks/blobs/${blob.digest}`));
        assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
        // Whether A had stored the blob when each of B's clients got its first bytes.
        const holderDoneAtFirstByte: boolean[] = [];
        const onB = Array.from({ length: 8 }, () =>
          pull(`${b.url}/v2/library/disks/blobs/${blob.digest}`, () => holderDoneAtFirstByte.push(a.logLines().some((line) => line.message === 'blob cached' && line.digest === blob.digest))),
        );
        pulls = [...onA, ...onB];
        for (const result of await Promise.all(pulls)) assert.deepEqual(result, { status: 200, digest: blob.digest });
        // B's clients were served while A still downloaded: B streamed A's download, it did not wait for it.
        assert.deepEqual(holderDoneAtFirstByte, Array(8).fill(false), "B's clients had bytes before A had stored the blob");
        assert.ok(b.logLines().some((line) => line.message === 'streaming a blob download from the instance that holds it' && line.digest === blob.digest), 'B streamed from A');
      } finally {
        world.proxy.setFault(undefined);
      }
      assert.equal(world.proxy.count('GET', upstreamPath), 1, 'one upstream GET for both instances');
      // Each instance holds the blob in its own store, verified.
      for (const mirror of [a, b]) {
        assert.ok(await stored(mirror.root, blob.digest), `stored on ${mirror.root}`);
        assert.equal(`sha256:${createHash('sha256').update(readFileSync(blobPath(mirror.root, blob.digest))).digest('hex')}`, blob.digest);
        assert.deepEqual(tempFiles(mirror.root), [], 'no temporary file left');
        assert.deepEqual(openFilesUnder(mirror.process.pid, mirror.root), [], 'no descriptor left open in the store');
      }
      assert.ok(await eventually(async () => (await fleetKeys.client.scard(`holders:{${blob.digest}}`)) === 2), 'the record names both stores');
      assert.deepEqual(new Set(await fleetKeys.client.smembers(`holders:{${blob.digest}}`)), new Set([storeIdOf(a), storeIdOf(b)]));
      // Upstream down: B serves it from its own store (a local hit, nothing asked of A or upstream).
      world.proxy.setFault({ kind: 'reset', match: () => true });
      try {
        await a.stop();
        assert.deepEqual(await pull(`${b.url}/v2/library/disks/blobs/${blob.digest}`), { status: 200, digest: blob.digest });
      } finally {
        world.proxy.setFault(undefined);
      }
      assert.equal(world.proxy.count('GET', upstreamPath), 1, 'still one upstream GET');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('who holds what: a blob A holds is served by B from A with upstream down; A evicts it and the record says so; a stale record or a holder down falls through to upstream', async () => {
    // A short TTL (120 s), as the eviction tests use, so `gc --now +130s` evicts what A pulled.
    const ttl = { proxy: { tagfreshness: '0', ttl: '120s' }, storage: { cache: { blobdescriptor: 'redis' }, eviction: { grace: '0s' } } };
    const [a, b] = await Promise.all([member('a2', ttl), member('b2', ttl)]);
    try {
      const image = await pushImage(world.registry.url, PUSHER, { name: 'library/held', tag: '1', layers: [randomLayer('own-disks-held', 512 * 1024)], format: 'docker' });
      const layer = image.layerDigests[0];
      const layerPath = new RegExp(`/blobs/${layer}$`);
      // A pulls the image; the record names A's store for each of its blobs. B knows the manifest.
      await pullManifest(a, image);
      await pullManifest(b, image);
      for (const digest of [image.configDigest, layer]) assert.deepEqual(await pull(`${a.url}/v2/library/held/blobs/${digest}`), { status: 200, digest });
      assert.ok(await eventually(async () => (await fleetKeys.client.smembers(`holders:{${layer}}`)).includes(storeIdOf(a))), 'the record names A');
      world.proxy.reset();

      // Upstream down: B asks the record, streams the layer from A, verifies it and stores it.
      world.proxy.setFault({ kind: 'reset', match: () => true });
      try {
        assert.deepEqual(await pull(`${b.url}/v2/library/held/blobs/${layer}`), { status: 200, digest: layer });
      } finally {
        world.proxy.setFault(undefined);
      }
      assert.ok(b.logLines().some((line) => line.message === 'streaming a blob from an instance that holds it' && line.digest === layer));
      assert.ok(await stored(b.root, layer));
      assert.equal(world.proxy.count('GET', layerPath), 0, 'not fetched upstream');
      assert.ok(await eventually(async () => (await fleetKeys.client.scard(`holders:{${layer}}`)) === 2), 'the record names both stores');
      assert.deepEqual(new Set(await fleetKeys.client.smembers(`holders:{${layer}}`)), new Set([storeIdOf(a), storeIdOf(b)]));

      // A evicts everything it pulled (past the TTL): the record no longer names A.
      assert.match(await gc(a, '--now', '+130s'), new RegExp(`removed blob ${layer} `));
      assert.equal(existsSync(blobPath(a.root, layer)), false);
      assert.deepEqual(await fleetKeys.client.smembers(`holders:{${layer}}`), [storeIdOf(b)], 'A is off the record');

      // A stale record: it names A's store again (a write lost, a holder that evicted without saying),
      // and a store no live instance serves. C, a third instance, misses the layer: A answers 404,
      // the dead store is not dialed, and C fetches upstream, once. (B is stopped: only stale holders.)
      await b.stop();
      await fleetKeys.client.sadd(`holders:{${layer}}`, storeIdOf(a), 'feedfacefeedface');
      const c = await member('c2', ttl);
      try {
        world.proxy.reset();
        assert.deepEqual(await pull(`${c.url}/v2/library/held/blobs/${layer}`), { status: 200, digest: layer });
        assert.equal(world.proxy.count('GET', layerPath), 1, 'one upstream GET after the stale holder');
        // One 404 (A), and no dial of B's address: B's heartbeat is gone.
        assert.deepEqual(
          c.logLines().filter((line) => line.message === 'a holder named by the record did not have the blob' && line.digest === layer).map((line) => line.reason),
          ['absent'],
        );
        assert.ok(await stored(c.root, layer));
        // The 404 took A's store off the record; B's (stopped) and the dead store stay (no live instance could say), and C is on it.
        assert.ok(await eventually(async () => (await fleetKeys.client.sismember(`holders:{${layer}}`, storeIdOf(c))) === 1));
        assert.deepEqual(new Set(await fleetKeys.client.smembers(`holders:{${layer}}`)), new Set([storeIdOf(b), 'feedfacefeedface', storeIdOf(c)]));

        // A holder down: C is SIGKILLed (its heartbeat lives on until it expires). D, a fourth
        // instance, finds C's listener refusing, and fetches upstream, once; C's store stays on
        // the record (down is not "does not have it").
        process.kill(c.process.pid, 'SIGKILL');
        const d = await member('d2', ttl);
        try {
          world.proxy.reset();
          assert.deepEqual(await pull(`${d.url}/v2/library/held/blobs/${layer}`), { status: 200, digest: layer });
          assert.equal(world.proxy.count('GET', layerPath), 1, 'one upstream GET after the holder that is down');
          const tried = d.logLines().filter((line) => line.message === 'a holder named by the record did not have the blob' && line.digest === layer);
          assert.equal(tried.length, 1);
          assert.notEqual(tried[0].reason, 'absent', 'C could not be reached');
          assert.ok((await fleetKeys.client.smembers(`holders:{${layer}}`)).includes(storeIdOf(c)));
        } finally {
          await d.stop();
        }
      } finally {
        await c.stop();
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder that sends wrong bytes, of its download or of its store: nothing unverified is committed, the client gets a broken transfer, and the store that sent them is off the record', async () => {
    // A's peer listener behind a relay that can flip a byte (spec/support/tcp-relay.ts says why that one part is faked).
    const relays: TcpRelay[] = [];
    /** A on its store a4, its peer listener behind a new relay (a connection B keeps alive is not reused across them). */
    const startA = async () => {
      const peerPort = await freePort();
      const relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
      relays.push(relay);
      const mirror = await member('a4', { redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { name: FLEET, lease: '2s', peers: { addr: `127.0.0.1:${peerPort}`, advertise: relay.address, timeout: '2s' } } } });
      return { mirror, relay };
    };
    const [first, b] = await Promise.all([startA(), member('b4')]);
    let { mirror: a, relay } = first;
    try {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/disks', { sizeMiB: 4, label: 'own-disks-flipped' });
      const upstreamPath = new RegExp(`/blobs/${blob.digest}$`);
      world.proxy.reset();
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', upstreamPath) });
      relay.flipByteAt = MiB; // well inside the body, past the response head
      try {
        const onA = pull(`${a.url}/v2/library/disks/blobs/${blob.digest}`);
        assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
        const onB = await pull(`${b.url}/v2/library/disks/blobs/${blob.digest}`);
        assert.equal(onB.digest === blob.digest && onB.status === 200 && onB.error === undefined, false, `B's client never sees a clean end of wrong bytes: ${JSON.stringify(onB)}`);
        assert.deepEqual(await onA, { status: 200, digest: blob.digest });
      } finally {
        world.proxy.setFault(undefined);
        relay.flipByteAt = undefined;
      }
      assert.ok(b.logLines().some((line) => line.message === 'blob copy from a peer failed' && line.digest === blob.digest));
      assert.equal(existsSync(blobPath(b.root, blob.digest)), false, 'nothing unverified committed');
      assert.deepEqual(tempFiles(b.root), [], 'no temporary file left');
      assert.deepEqual(openFilesUnder(b.process.pid, b.root), [], 'no descriptor left open');
      assert.ok(await eventually(async () => (await fleetKeys.client.smembers(`holders:{${blob.digest}}`)).includes(storeIdOf(a))), 'A holds it now');

      // A, restarted on its store (a new instance, the same store id), holds it; the record sends B
      // there, and its relay flips a byte.
      await a.stop();
      ({ mirror: a, relay } = await startA());
      relay.flipByteAt = MiB;
      try {
        const again = await pull(`${b.url}/v2/library/disks/blobs/${blob.digest}`);
        assert.equal(again.digest === blob.digest && again.status === 200 && again.error === undefined, false, `a broken transfer: ${JSON.stringify(again)}`);
      } finally {
        relay.flipByteAt = undefined;
      }
      assert.ok(b.logLines().some((line) => line.message === 'streaming a blob from an instance that holds it' && line.digest === blob.digest));
      assert.equal(existsSync(blobPath(b.root, blob.digest)), false, 'nothing unverified committed');
      assert.ok(await eventually(async () => !(await fleetKeys.client.smembers(`holders:{${blob.digest}}`)).includes(storeIdOf(a))), "A's store is off the record for this blob");
      // The next pull is B's own upstream fetch, verified and stored.
      assert.deepEqual(await pull(`${b.url}/v2/library/disks/blobs/${blob.digest}`), { status: 200, digest: blob.digest });
      assert.ok(await stored(b.root, blob.digest));
      assert.equal(world.proxy.count('GET', upstreamPath), 2, "A's fetch, then B's own");
      assert.deepEqual(tempFiles(b.root), [], 'no temporary file left');
      assert.deepEqual(openFilesUnder(b.process.pid, b.root), [], 'no descriptor left open');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      for (const each of relays) await each.close();
    }
  });

  /**
   * A cold blob A downloads slowly (throttled upstream) for a client of its own, copied by B as
   * it lands for a client of B's; `progress` counts what B's client received, the outcome
   * carries the moment it ended.
   */
  async function copiedDownload(a: RunningMirror, b: RunningMirror, label: string) {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/disks', { sizeMiB: 6, label });
    const upstreamPath = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', upstreamPath) });
    const onA = getBlob(`${a.url}/v2/library/disks/blobs/${blob.digest}`, { deadlineMs: 60_000 });
    onA.catch(() => {});
    assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
    const progress = { bytes: 0 };
    const onB = getBlob(`${b.url}/v2/library/disks/blobs/${blob.digest}`, { deadlineMs: 60_000, onBytes: (n) => (progress.bytes = n) }).then((o) => ({ ...o, endedAt: performance.now() }));
    return { blob, upstreamPath, onA, onB, progress };
  }

  /** The client got the blob whole and verified, within BOUND_MS of the fault at `faultAt`. */
  function assertVerified(outcome: Outcome & { endedAt: number }, blob: { digest: string; size: number }, faultAt: number) {
    assert.ok(outcome.endedAt - faultAt < BOUND_MS, `the client waited ${Math.round(outcome.endedAt - faultAt)} ms past the fault`);
    assert.deepEqual({ status: outcome.status, bytes: outcome.bytes, complete: outcome.complete, digest: outcome.sha256 }, { status: 200, bytes: blob.size, complete: true, digest: blob.digest });
  }

  /** B's store holds the blob, verified, and on the record; nothing left behind in it. */
  async function assertCopied(b: RunningMirror, blob: { digest: string }) {
    assert.ok(await eventually(() => stored(b.root, blob.digest)), 'B committed the blob into its own store');
    assert.equal(`sha256:${createHash('sha256').update(readFileSync(blobPath(b.root, blob.digest))).digest('hex')}`, blob.digest);
    assert.ok(await eventually(async () => (await fleetKeys.client.smembers(`holders:{${blob.digest}}`)).includes(storeIdOf(b))), "the record names B's store");
    assert.ok(await eventually(() => tempFiles(b.root).length === 0, BOUND_MS), `temp files left: ${tempFiles(b.root).join(', ')}`);
    assert.ok(await eventually(() => openFilesUnder(b.process.pid, b.root).length === 0, BOUND_MS), `descriptors left: ${openFilesUnder(b.process.pid, b.root).join(', ')}`);
  }

  const duplicates = async (m: RunningMirror, reason: string) => sample(await scrape(`${m.url}/metrics`), 'pullmirror_fleet_duplicate_fetches_total', { reason });
  const blobGets = (upstreamPath: RegExp) => world.proxy.requests.filter((r) => r.method === 'GET' && upstreamPath.test(r.path));

  it('a holder SIGKILLed mid-stream: the follower resumes from upstream at its offset, its client gets verified bytes, and it stores the blob itself', async () => {
    const [a, b] = await Promise.all([member('a5'), member('b5')]);
    try {
      const { blob, upstreamPath, onB, progress } = await copiedDownload(a, b, 'own-disks-kill');
      assert.ok(await eventually(() => progress.bytes >= MiB), "B's client receives bytes copied from A");
      assert.ok(tempFiles(b.root).length >= 1, 'B spools its copy: the count after is of something');
      const killedAt = performance.now();
      process.kill(a.process.pid, 'SIGKILL');
      await a.process.exited;
      assertVerified(await onB, blob, killedAt);
      assert.equal(await duplicates(b, 'peer_failed'), 1);
      const gets = blobGets(upstreamPath);
      assert.equal(gets.length, 2, "A's download and B's resumption");
      assert.match(gets[1].range ?? '', /^bytes=[1-9]\d*-$/, 'B asked upstream only for what it had not copied');
      await assertCopied(b, blob);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder whose stream stalls (the connection open, no byte) is given up after redis.fleet.peers.timeout: the follower resumes from upstream at its offset and stores the blob', async () => {
    const peerPort = await freePort();
    const relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
    const [a, b] = await Promise.all([
      member('a6', { redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { name: FLEET, lease: '2s', peers: { addr: `127.0.0.1:${peerPort}`, advertise: relay.address, timeout: '2s' } } } }),
      member('b6'),
    ]);
    try {
      relay.stallAfter = 2 * MiB;
      const { blob, upstreamPath, onA, onB } = await copiedDownload(a, b, 'own-disks-stall');
      // The stall comes once B's copy reached 2 MiB: B's client is bounded from its request on.
      const askedAt = performance.now();
      assertVerified(await onB, blob, askedAt);
      assert.equal((await onA).sha256, blob.digest);
      assert.equal(await duplicates(b, 'peer_stalled'), 1);
      const [, resumed] = blobGets(upstreamPath);
      assert.match(resumed?.range ?? '', /^bytes=[1-9]\d*-$/, 'B asked upstream only for what it had not copied');
      await assertCopied(b, blob);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
      await relay.close();
    }
  });

  it('a holder of a stored blob that fails mid-copy: the follower goes on from the next holder on the record at its offset, upstream refusing the blob, and stores the blob', async () => {
    /** An instance on store `name`, its peer listener behind a relay of its own. */
    const relayed = async (name: string) => {
      const peerPort = await freePort();
      const relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
      const mirror = await member(name, { redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { name: FLEET, lease: '2s', peers: { addr: `127.0.0.1:${peerPort}`, advertise: relay.address, timeout: '5s' } } } });
      return { mirror, relay };
    };
    const [first, second] = [await relayed('a7'), await relayed('c7')];
    // B waits 5 s for a silent peer too: the holder's break, not its stall, is what it meets.
    const b = await member('b7', { redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { name: FLEET, lease: '2s', peers: { addr: '127.0.0.1:0', advertise: '127.0.0.1:0', timeout: '5s' } } } });
    try {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/disks', { sizeMiB: 6, label: 'own-disks-record-fails' });
      const url = (m: RunningMirror) => `${m.url}/v2/library/disks/blobs/${blob.digest}`;
      // A and C hold it: both on the record.
      for (const { mirror } of [first, second]) assertVerified(await getBlob(url(mirror), { deadlineMs: 60_000 }).then((o) => ({ ...o, endedAt: performance.now() })), blob, performance.now());
      assert.ok(await eventually(async () => (await fleetKeys.client.scard(`holders:{${blob.digest}}`)) === 2), 'the record names both stores');
      world.proxy.reset();
      // Upstream refuses the blob: its bytes can only come from the holders.
      world.proxy.setFault({ kind: 'reset', match: matchRequests('GET', new RegExp(`/blobs/${blob.digest}$`)) });
      try {
        // Whichever B asks first stops sending after 2 MiB; then its connection breaks (it died, as far as B can tell).
        const before = [first.relay.connections, second.relay.connections];
        for (const { relay } of [first, second]) relay.stallAfter = 2 * MiB;
        const progress = { bytes: 0 };
        const onB = getBlob(url(b), { deadlineMs: 60_000, onBytes: (n) => (progress.bytes = n) }).then((o) => ({ ...o, endedAt: performance.now() }));
        assert.ok(await eventually(() => progress.bytes >= MiB), "B's client receives bytes copied from a holder");
        const [used, other] = first.relay.connections > before[0] ? [first, second] : [second, first];
        assert.equal(other.relay.connections, before[other === first ? 0 : 1], 'B asked one holder');
        other.relay.stallAfter = undefined;
        const brokeAt = performance.now();
        await used.relay.close();
        assertVerified(await onB, blob, brokeAt);
      } finally {
        world.proxy.setFault(undefined);
      }
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${blob.digest}$`)), 0, 'nothing fetched upstream');
      assert.ok(b.logLines().some((line) => line.message === 'streaming from the new holder of a download' && line.digest === blob.digest && line.offset > 0), 'B went on from the next holder at its offset');
      assert.equal(await duplicates(b, 'peer_failed'), 0);
      await assertCopied(b, blob);
    } finally {
      await Promise.all([first.mirror.stop(), second.mirror.stop(), b.stop()]);
      for (const { relay } of [first, second]) await relay.close();
    }
  });

  it("keeps each store's descriptors and access records under its own store id: what A cached does not make B believe it holds the blob", async () => {
    const [a, b] = await Promise.all([member('a3'), member('b3')]);
    try {
      const image = await pushImage(world.registry.url, PUSHER, { name: 'library/described', tag: '1', layers: [randomLayer('own-disks-descriptor', 1024 * 1024)], format: 'docker' });
      const blob = { digest: image.layerDigests[0] };
      await pullManifest(a, image);
      await pullManifest(b, image);
      assert.deepEqual(await pull(`${a.url}/v2/library/described/blobs/${blob.digest}`), { status: 200, digest: blob.digest });
      const storeKeys = await connectToRedis(redis, logger, storeIdOf(a));
      const keysOfB = await connectToRedis(redis, logger, storeIdOf(b));
      try {
        assert.ok(await eventually(async () => (await storeKeys.client.exists(`blob:${blob.digest}`)) === 1), "A's descriptor under A's store id");
        assert.equal(await keysOfB.client.exists(`blob:${blob.digest}`), 0, "none under B's");
        assert.equal(await fleetKeys.client.exists(`blob:${blob.digest}`), 0, "none under the fleet's");
        // The access clock (when each item was last used) is the store's too: A's pull is in A's.
        assert.ok(await eventually(async () => (await storeKeys.client.hlen('access')) > 0), "A's access clock under A's store id");
        assert.equal(await fleetKeys.client.exists('access'), 0, "no access clock under the fleet's");
      } finally {
        await storeKeys.close();
        await keysOfB.close();
      }
      // B, asked with upstream down, does not answer from A's descriptor: it streams the blob from A
      // (the record), and only then holds it.
      assert.equal(existsSync(blobPath(b.root, blob.digest)), false);
      world.proxy.setFault({ kind: 'reset', match: () => true });
      try {
        assert.deepEqual(await pull(`${b.url}/v2/library/described/blobs/${blob.digest}`), { status: 200, digest: blob.digest });
      } finally {
        world.proxy.setFault(undefined);
      }
      assert.ok(await stored(b.root, blob.digest));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
