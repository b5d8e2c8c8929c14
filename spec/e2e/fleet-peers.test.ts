/**
 * The peer listener (redis.fleet.peers): two real pullmirror processes on one store and one
 * real redis-server, in front of the real upstream (token server + docker-registry behind the
 * counting proxy). Instance A advertises a TCP relay in front of its peer port (a relay that can
 * flip a byte: see spec/support/tcp-relay.ts for why that one part is faked); B advertises its
 * own port. The peer side in this process is the mirror's own client (PeerClient, PeerDirectory
 * on the same Redis) writing through the mirror's own fill and writer into a store of its own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import winston from 'winston';
import { PeerAuth } from '../../src/fleet/peer-auth.ts';
import { PeerClient, type PeerBlobAnswer } from '../../src/fleet/peer-client.ts';
import { PeerDirectory } from '../../src/fleet/peer-directory.ts';
import { BlobFill } from '../../src/proxy/blob-fill.ts';
import { fillSource } from '../../src/proxy/shared-fill.ts';
import type { RedisConnection } from '../../src/redis/redis-connection.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { FilesystemBlobStore } from '../../src/storage/blob-store.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { pushRandomBlob } from '../support/images.ts';
import { runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { blobPath, stored } from '../support/store.ts';
import { freePort, skipUnlessBinaries, tempDir, type TempDir } from '../support/processes.ts';
import { connectToRedis, startRedis, type RedisServer } from '../support/redis.ts';
import { startConnectionRecorder, startTcpRelay, type TcpRelay } from '../support/tcp-relay.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const SECRET = 'peer-secret-for-the-test-fleet-0123456789';
const MiB = 1024 * 1024;
const logger = winston.createLogger({ silent: true });

/** The keys of the fleet heartbeat (src/fleet/heartbeat.ts), under the store's prefix. */
const RECORDS = 'fleet:{fleet}:instances';
const aliveKey = (id: string) => `fleet:{fleet}:alive:${id}`;

interface Answer {
  status: number;
  code?: string;
  contentType: string | null;
}

describe('fleet peers: the internal listener, its authentication, and streaming blobs between instances', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let dirs: TempDir;
  let relay: TcpRelay;
  let a: RunningMirror;
  let b: RunningMirror;
  let connection: RedisConnection;
  let client: PeerClient;
  const auth = new PeerAuth(SECRET);

  /** A request to a peer listener (or the client port), signed for `signAs` (method, target) when given. */
  async function ask(base: string, target: string, options: { method?: string; authorization?: string; range?: string } = {}): Promise<Answer> {
    const headers: Record<string, string> = {};
    if (options.authorization !== undefined) headers.authorization = options.authorization;
    if (options.range) headers.range = options.range;
    const response = await fetch(`${base}${target}`, { method: options.method ?? 'GET', headers });
    const text = await response.text();
    const code = text.startsWith('{') ? (JSON.parse(text) as { errors?: { code: string }[] }).errors?.[0]?.code : undefined;
    return { status: response.status, code, contentType: response.headers.get('content-type') };
  }

  /** The id an instance goes by in the fleet (its heartbeat's, its leases'). */
  async function instanceId(mirror: RunningMirror): Promise<string> {
    const fleet = (await (await fetch(`${mirror.url}/api/fleet`)).json()) as { instances: { id: string; self: boolean; peerAddress?: string }[] };
    return fleet.instances.find((instance) => instance.self)!.id;
  }

  /** A store of this test's own, as a third instance would have. */
  function ownStore(): { store: FilesystemBlobStore; root: string; tmp: string } {
    const root = path.join(dirs.path, `peer-store-${Math.random().toString(36).slice(2, 8)}`);
    const tmp = path.join(root, '_tmp', 'test');
    return { store: new FilesystemBlobStore(new StorePaths(root), tmp), root, tmp };
  }

  /** Fills `store` from a peer's answer through the mirror's own fill; resolves with the fill and one reader's outcome. */
  async function fillFrom(answer: PeerBlobAnswer, digest: string, store: FilesystemBlobStore) {
    assert.equal(answer.kind, 'found', JSON.stringify(answer));
    if (answer.kind !== 'found') throw new Error('unreachable');
    const parsed = parseDigest(digest);
    const fill = new BlobFill({ digest, size: answer.body.size, writer: await store.createWriter(parsed), openCommitted: () => store.openObject(parsed), body: answer.body });
    // One reader, as a client of this instance would be: how many bytes it got, and whether its transfer ended cleanly.
    let received = 0;
    const hash = createHash('sha256');
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        hash.update(chunk);
        callback();
      },
    });
    const reading = fillSource(digest, fill)
      .send(sink)
      .then(
        () => ({ ended: true, received, digest: `sha256:${hash.digest('hex')}` }),
        (error: Error) => ({ ended: false, received, error }),
      );
    return { fill, reading };
  }

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
    dirs = tempDir('pullmirror-peers');
    const root = path.join(dirs.path, 'store');
    const peerPort = await freePort();
    relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
    const base = {
      http: { secret: SECRET },
      redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s', fleet: { lease: '2s' } },
      proxy: { timeouts: { connect: '1s', headers: '2s', bodyidle: '5s' } },
    };
    [a, b] = await Promise.all([
      world.startMirror({ root, config: { ...base, redis: { ...base.redis, fleet: { ...base.redis.fleet, peers: { addr: `127.0.0.1:${peerPort}`, advertise: relay.address, timeout: '3s' } } } } }),
      world.startMirror({ root, config: { ...base, redis: { ...base.redis, fleet: { ...base.redis.fleet, peers: { addr: '127.0.0.1:0', advertise: '127.0.0.1:0', timeout: '3s' } } } } }),
    ]);
    const storeId = readFileSync(path.join(root, '_store-id'), 'utf8').trim();
    connection = await connectToRedis(redis, logger, storeId);
    client = new PeerClient({ auth, directory: new PeerDirectory({ redis: connection, self: 'the-test' }), timeoutMs: 3_000 });
    // Both heartbeats are out (the first beat goes at start).
    assert.ok(await eventually(async () => (await connection.client.hlen(RECORDS)) >= 2), 'both instances beat');
  });

  after(async () => {
    await client?.close();
    await connection?.close();
    await world?.close();
    await relay?.close();
    await redis?.close();
    await dirs?.cleanup();
  });

  it('each instance publishes the address its peers dial in its heartbeat: the advertised one, port 0 standing for the port bound', async () => {
    const fleet = (await (await fetch(`${a.url}/api/fleet`)).json()) as { instances: { self: boolean; peerAddress?: string }[] };
    assert.equal(fleet.instances.find((instance) => instance.self)?.peerAddress, relay.address);
    const peerPortOfB = new URL(b.peerUrl!).port;
    const fromB = (await (await fetch(`${b.url}/api/fleet`)).json()) as { instances: { self: boolean; peerAddress?: string }[] };
    assert.equal(fromB.instances.find((instance) => instance.self)?.peerAddress, `127.0.0.1:${peerPortOfB}`);
  });

  it('answers 401 in the OCI error format to missing, malformed, forged, expired and wrong-method credentials, counted by reason', async () => {
    const target = `/peer/v1/blobs/sha256:${'0'.repeat(64)}`;
    const before = await scrape(`${b.url}/metrics`);
    const cases: [string, { method?: string; authorization?: string }][] = [
      ['missing', {}],
      ['malformed', { authorization: 'Bearer abc' }],
      ['forged', { authorization: new PeerAuth('another-secret-of-forty-characters-0000').sign('GET', target) }],
      ['expired', { authorization: new PeerAuth(SECRET, () => Date.now() - 10 * 60_000).sign('GET', target) }],
      // A GET's signature on a DELETE, and on another path.
      ['forged', { method: 'DELETE', authorization: auth.sign('GET', target) }],
      ['forged', { authorization: auth.sign('GET', `/peer/v1/blobs/sha256:${'1'.repeat(64)}`) }],
    ];
    for (const [reason, options] of cases) {
      const answer = await ask(b.peerUrl!, target, options);
      assert.equal(answer.status, 401, reason);
      assert.equal(answer.code, 'UNAUTHORIZED', reason);
      assert.match(answer.contentType ?? '', /^application\/json/);
    }
    const head = await ask(b.peerUrl!, target, { method: 'HEAD', authorization: auth.sign('GET', target) });
    assert.equal(head.status, 401, "a GET's signature on a HEAD");
    const afterwards = await scrape(`${b.url}/metrics`);
    const moved = (reason: string) => sample(afterwards, 'pullmirror_peer_auth_failures_total', { reason }) - sample(before, 'pullmirror_peer_auth_failures_total', { reason });
    assert.deepEqual({ missing: moved('missing'), malformed: moved('malformed'), forged: moved('forged'), expired: moved('expired') }, { missing: 1, malformed: 1, forged: 4, expired: 1 });
    // The same request, signed: through to the route (a blob no one has).
    assert.deepEqual(await ask(b.peerUrl!, target, { authorization: auth.sign('GET', target) }), { status: 404, code: 'BLOB_UNKNOWN', contentType: 'application/json; charset=utf-8' });
    // The secret is in no log line and no answer.
    assert.ok(!readFileSync(b.process.logFile, 'utf8').includes(SECRET));
    assert.ok(readFileSync(b.process.logFile, 'utf8').includes('peer request refused'));
  });

  it('serves nothing of /v2/ on the peer port and nothing of the peer route on the client port', async () => {
    const blob = `/peer/v1/blobs/sha256:${'0'.repeat(64)}`;
    for (const target of ['/v2/', '/v2/library/peers/blobs/sha256:' + '0'.repeat(64), '/metrics', '/api/fleet']) {
      assert.equal((await ask(b.peerUrl!, target)).status, 401, `${target} without credentials`);
      assert.deepEqual(await ask(b.peerUrl!, target, { authorization: auth.sign('GET', target) }), { status: 404, code: 'NOT_FOUND', contentType: 'application/json; charset=utf-8' }, target);
    }
    assert.deepEqual(await ask(b.url, blob, { authorization: auth.sign('GET', blob) }), { status: 404, code: 'NOT_FOUND', contentType: 'application/json; charset=utf-8' });
  });

  it('validates the digest before any store access: a malformed or path-like digest is 400, an unknown one 404', async () => {
    const cases: [string, number, string][] = [
      ['/peer/v1/blobs/sha256:abc', 400, 'DIGEST_INVALID'],
      ['/peer/v1/blobs/..%2F..%2F_store-id', 400, 'DIGEST_INVALID'],
      [`/peer/v1/blobs/sha256:${'A'.repeat(64)}`, 400, 'DIGEST_INVALID'],
      [`/peer/v1/blobs/md5:${'0'.repeat(32)}`, 400, 'UNSUPPORTED'],
      [`/peer/v1/blobs/sha256:${'f'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
      ['/peer/v1/blobs/', 404, 'NOT_FOUND'],
    ];
    for (const [target, status, code] of cases) {
      const answer = await ask(b.peerUrl!, target, { authorization: auth.sign('GET', target) });
      assert.deepEqual([answer.status, answer.code], [status, code], target);
    }
  });

  it('a peer reads a blob another instance is filling from a throttled upstream, and stores it only once it verified', async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 4, label: 'peer-fill' });
    const upstreamPath = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 1 * MiB, match: matchRequests('GET', upstreamPath) });
    try {
      // A client of B starts B's download.
      const pulled = fetch(`${b.url}/v2/library/peers/blobs/${blob.digest}`).then(async (response) => ({
        status: response.status,
        digest: `sha256:${createHash('sha256').update(Buffer.from(await response.arrayBuffer())).digest('hex')}`,
      }));
      assert.ok(await eventually(() => b.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'B downloads');
      const { store, root, tmp } = ownStore();
      const answer = await client.openBlob(await instanceId(b), parseDigest(blob.digest));
      // B answered while its own download still ran: the peer tails it.
      assert.ok(!b.logLines().some((line) => line.message === 'blob cached' && line.digest === blob.digest), 'B had not finished when it answered');
      const { fill, reading } = await fillFrom(answer, blob.digest, store);
      assert.deepEqual(await fill.done, { digest: blob.digest, size: blob.size });
      assert.deepEqual(await reading, { ended: true, received: blob.size, digest: blob.digest });
      assert.equal(`sha256:${createHash('sha256').update(readFileSync(blobPath(root, blob.digest))).digest('hex')}`, blob.digest);
      assert.deepEqual(readdirSync(tmp), [], 'no temporary file left');
      assert.deepEqual(await pulled, { status: 200, digest: blob.digest });
      assert.equal(world.proxy.count('GET', upstreamPath), 1, 'the peer cost no upstream request');
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it("a peer tailing a download that turns out bad gets a broken transfer, never the last byte", async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 2, label: 'peer-tail-bad' });
    const upstreamPath = new RegExp(`/blobs/${blob.digest}$`);
    // Upstream sends one wrong byte, slowly enough for the peer to join while B downloads.
    world.proxy.setFault({ kind: 'corrupt', atByte: MiB, bytesPerSecond: MiB, match: matchRequests('GET', upstreamPath), times: 1 });
    try {
      const pulled = fetch(`${b.url}/v2/library/peers/blobs/${blob.digest}`).then((response) => response.arrayBuffer()).then(
        () => 'ended',
        () => 'broken',
      );
      assert.ok(await eventually(() => b.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'B downloads');
      const target = `/peer/v1/blobs/${blob.digest}`;
      const response = await fetch(`${b.peerUrl}${target}`, { headers: { authorization: auth.sign('GET', target) } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-length'), String(blob.size));
      let received = 0;
      const outcome = await (async () => {
        try {
          for await (const chunk of response.body!) received += chunk.length;
          return 'ended';
        } catch {
          return 'broken';
        }
      })();
      assert.equal(outcome, 'broken', 'the transfer breaks');
      assert.ok(received < blob.size, `the last byte never came (${received} of ${blob.size})`);
      assert.equal(await pulled, 'broken', "B's own client too");
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('serves a stored blob and a Range of it; an unsatisfiable Range is 416', async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 1, label: 'peer-range' });
    assert.equal((await fetch(`${a.url}/v2/library/peers/blobs/${blob.digest}`).then((r) => r.arrayBuffer())).byteLength, blob.size);
    // A client has the last byte once it verified, a moment before the commit: wait for the stored blob.
    assert.ok(await stored(a.root, blob.digest), 'A committed the blob');
    const target = `/peer/v1/blobs/${blob.digest}`;
    const whole = await fetch(`${b.peerUrl}${target}`, { headers: { authorization: auth.sign('GET', target) } });
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('docker-content-digest'), blob.digest);
    assert.equal(`sha256:${createHash('sha256').update(Buffer.from(await whole.arrayBuffer())).digest('hex')}`, blob.digest);
    const part = await fetch(`${b.peerUrl}${target}`, { headers: { authorization: auth.sign('GET', target), range: 'bytes=1000-1999' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 1000-1999/${blob.size}`);
    assert.equal((await part.arrayBuffer()).byteLength, 1000);
    const beyond = await ask(b.peerUrl!, target, { authorization: auth.sign('GET', target), range: `bytes=${blob.size}-` });
    assert.deepEqual([beyond.status, beyond.code], [416, 'RANGE_NOT_SATISFIABLE']);
  });

  it('bytes corrupted on the way from a peer are neither stored nor ended cleanly to a reader', async () => {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 2, label: 'peer-corrupt' });
    assert.equal((await fetch(`${a.url}/v2/library/peers/blobs/${blob.digest}`).then((r) => r.arrayBuffer())).byteLength, blob.size);
    const id = await instanceId(a);
    relay.flipByteAt = MiB; // well inside the body, past the response head
    try {
      const { store, tmp } = ownStore();
      const { fill, reading } = await fillFrom(await client.openBlob(id, parseDigest(blob.digest)), blob.digest, store);
      await assert.rejects(fill.done, (error: Error & { code?: string }) => error.code === 'DIGEST_INVALID');
      const read = await reading;
      assert.equal(read.ended, false, "the reader's transfer breaks");
      assert.ok(read.received < blob.size, `the reader never got the last byte (${read.received} of ${blob.size})`);
      assert.equal(await store.stat({ digest: parseDigest(blob.digest) }), undefined, 'nothing stored');
      assert.deepEqual(readdirSync(tmp), [], 'no temporary file left');
    } finally {
      relay.flipByteAt = undefined;
    }
    // The same path without the fault: the relay itself is sound.
    const { store } = ownStore();
    const { fill } = await fillFrom(await client.openBlob(id, parseDigest(blob.digest)), blob.digest, store);
    assert.deepEqual(await fill.done, { digest: blob.digest, size: blob.size });
  });

  it('never dials an address read from Redis unless a live heartbeat names it', async () => {
    const recorder = await startConnectionRecorder();
    try {
      const digest = parseDigest(`sha256:${'0'.repeat(64)}`);
      const record = (id: string, extra: Record<string, unknown> = {}) => JSON.stringify({ id, hostname: 'elsewhere', pid: 4242, address: '127.0.0.1:1', peerAddress: recorder.address, version: 'x', startedAt: Date.now(), fillsInFlight: 0, lastSeen: Date.now(), ...extra });
      // No alive key: an instance gone (or a record anyone with Redis access wrote).
      await connection.client.hset(RECORDS, 'ghost-4242-0000aaaa', record('ghost-4242-0000aaaa'));
      // Alive, but it said it stopped.
      await connection.client.hset(RECORDS, 'stopped-4242-0000bbbb', record('stopped-4242-0000bbbb', { stoppedAt: Date.now() }));
      await connection.client.set(aliveKey('stopped-4242-0000bbbb'), '1', 'PX', 60_000);
      // Alive, with addresses that are no peer address.
      for (const [id, peerAddress] of [
        ['scheme-4242-0000cccc', `http://${recorder.address}`],
        ['path-4242-0000dddd', `${recorder.address}/peer`],
        ['any-4242-0000eeee', `0.0.0.0:${recorder.port}`],
      ]) {
        await connection.client.hset(RECORDS, id, record(id, { peerAddress }));
        await connection.client.set(aliveKey(id), '1', 'PX', 60_000);
      }
      // A name no instance gives itself, alive with a good address.
      await connection.client.hset(RECORDS, '../../etc', record('../../etc'));
      await connection.client.set(aliveKey('../../etc'), '1', 'PX', 60_000);
      for (const id of ['ghost-4242-0000aaaa', 'stopped-4242-0000bbbb', 'scheme-4242-0000cccc', 'path-4242-0000dddd', 'any-4242-0000eeee', '../../etc', 'unknown-4242-0000ffff']) {
        const answer = await client.openBlob(id, digest);
        assert.equal(answer.kind, 'unreachable', id);
      }
      assert.equal(recorder.connections, 0, 'no connection to an address without a live heartbeat');
      // The ghost comes alive: now, and only now, it is dialed.
      await connection.client.set(aliveKey('ghost-4242-0000aaaa'), '1', 'PX', 60_000);
      assert.equal((await client.openBlob('ghost-4242-0000aaaa', digest)).kind, 'unreachable', 'it closes the connection at once');
      assert.equal(recorder.connections, 1);
    } finally {
      await recorder.close();
    }
  });

  it('refuses to start with a peer listener whose advertised address is 0.0.0.0, or without a secret, naming the key', async () => {
    const peers = { REGISTRY_REDIS_FLEET_PEERS_ADDR: '127.0.0.1:0', REGISTRY_REDIS_ADDR: redis.addr, REGISTRY_PROXY_REMOTEURL: world.proxy.url };
    const anyAddress = await runPullmirror(['serve'], { env: { ...peers, REGISTRY_REDIS_FLEET_PEERS_ADVERTISE: '0.0.0.0:5001', REGISTRY_HTTP_SECRET: SECRET } });
    assert.equal(anyAddress.code, 2);
    assert.match(anyAddress.stderr, /redis\.fleet\.peers\.advertise \(from REGISTRY_REDIS_FLEET_PEERS_ADVERTISE\): expected the host:port other instances dial/);
    assert.ok(!anyAddress.stderr.includes(SECRET));
    const noSecret = await runPullmirror(['serve'], { env: { ...peers, REGISTRY_REDIS_FLEET_PEERS_ADVERTISE: '127.0.0.1:0' } });
    assert.equal(noSecret.code, 2);
    assert.match(noSecret.stderr, /http\.secret: redis\.fleet\.peers\.addr needs a shared secret/);
  });
});
