/**
 * A fleet on one bucket (storage.s3 on a real RADOS Gateway) whose instances stream downloads to
 * each other through their peer listeners (redis.fleet.peers): spools are private, so without a
 * peer a follower could only wait for the holder's commit. Two real pullmirror processes, one
 * real redis-server, the real upstream behind the counting proxy (throttled, so a download
 * lasts long enough to be followed).
 *
 * The fault matrix with the peer as a source: a holder unreachable as a peer, refusing the
 * follower's secret, killed mid-stream, stalled, or sending wrong bytes. Each ends for the
 * follower's client in verified bytes (or, for wrong bytes already sent, a broken connection)
 * within BOUND_MS, and leaves the follower no temp file, descriptor or connection. Faults on the
 * link between the instances come from a TCP relay in front of the holder's peer port
 * (spec/support/tcp-relay.ts says why that part is faked); the kill is a real SIGKILL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getBlob, type Outcome } from '../support/blob-get.ts';
import { openFilesUnder, socketCount, spoolTempFiles } from '../support/descriptors.ts';
import { pushRandomBlob } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { freePort, tempDir } from '../support/processes.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { startS3, skipUnlessS3, type S3Server } from '../support/s3.ts';
import { startConnectionRecorder, startTcpRelay } from '../support/tcp-relay.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const SECRET = 'peer-secret-for-the-bucket-fleet-0123456789';
const MiB = 1024 * 1024;
/** How long a follower's client may take, fault included: the 15 s. */
const BOUND_MS = 15_000;

/** A client's GET: status, digest of what it got, and which of the holder's log lines were there when its first byte came. */
async function pullNoting(url: string, holder: RunningMirror, digest: string) {
  const response = await fetch(url);
  const hash = createHash('sha256');
  let holderDoneAtFirstByte: boolean | undefined;
  for await (const chunk of response.body!) {
    holderDoneAtFirstByte ??= holder.logLines().some((line) => line.message === 'blob cached' && line.digest === digest);
    hash.update(chunk);
  }
  return { status: response.status, digest: `sha256:${hash.digest('hex')}`, holderDoneAtFirstByte };
}

describe('a fleet on one bucket: a follower streams the holder\'s download from its peer listener', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  let redis: RedisServer;
  let bucket: string;
  const work = tempDir('pullmirror-s3-peers');

  before(async () => {
    [world, s3, redis] = await Promise.all([startWorld(), startS3(), startRedis()]);
    bucket = await s3.createBucket('peers');
  });
  after(async () => {
    await world?.close();
    await s3?.close();
    await redis?.close();
    await work.cleanup();
  });

  /** An instance on the bucket with a spool of its own and a peer listener advertising `advertise`. */
  /** `fallback` (redis.fleet.peers.fallback): past the 2 s lease, a follower of a dead holder waits for the new one rather than fetch upstream. */
  const member = (name: string, peers: { addr: string; advertise: string }, secret = SECRET, fallback = '1s') => ({
    storage: {
      s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: path.join(work.path, name) },
      cache: { blobdescriptor: 'redis' },
    },
    http: { secret },
    redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { lease: '2s', peers: { ...peers, timeout: '2s', fallback } } },
  });

  it('the follower sends bytes while the holder still downloads, verified, with one upstream GET', async () => {
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a1', { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' }) }),
      world.startMirror({ config: member('b1', { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' }) }),
    ]);
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB: 6, label: 's3-peer-stream' });
    const blobPath = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', blobPath) });
    try {
      const fromHolder = pullNoting(`${a.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
      assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
      const fromFollower = await pullNoting(`${b.url}/v2/library/peers/blobs/${blob.digest}`, a, blob.digest);
      assert.deepEqual(fromFollower, { status: 200, digest: blob.digest, holderDoneAtFirstByte: false }, "B's client had bytes before A had stored the blob");
      assert.equal((await fromHolder).digest, blob.digest);
      assert.ok(b.logLines().some((line) => line.message === 'streaming a blob download from the instance that holds it' && line.digest === blob.digest));
      assert.equal(world.proxy.count('GET', blobPath), 1, 'one upstream GET between both instances');
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });


  const spool = (name: string) => path.join(work.path, name);
  const own = { addr: '127.0.0.1:0', advertise: '127.0.0.1:0' };
  const blobUrl = (m: RunningMirror, digest: string) => `${m.url}/v2/library/peers/blobs/${digest}`;

  /** What a fault could leak in the follower: temp files and descriptors in its spool, and its sockets. */
  const holdings = (m: RunningMirror, name: string) => ({
    tempFiles: spoolTempFiles(spool(name)).length,
    openInSpool: openFilesUnder(m.process.pid, spool(name)).length,
    sockets: socketCount(m.process.pid),
  });

  /**
   * Nothing left in the follower: no temp file, no descriptor into its spool, its sockets back
   * to what it had before (give or take the keep-alive connections pooled to the bucket and
   * upstream by the fetches the test made it do).
   */
  async function assertLeftNothing(t: { diagnostic(message: string): void }, m: RunningMirror, name: string, before: ReturnType<typeof holdings>) {
    assert.ok(await eventually(() => spoolTempFiles(spool(name)).length === 0, 15_000), `temp files left: ${spoolTempFiles(spool(name)).join(', ')}`);
    assert.ok(await eventually(() => openFilesUnder(m.process.pid, spool(name)).length === 0, 15_000), `descriptors left: ${openFilesUnder(m.process.pid, spool(name)).join(', ')}`);
    assert.ok(await eventually(() => socketCount(m.process.pid) <= before.sockets + 3, 15_000), `sockets ${socketCount(m.process.pid)}, before ${before.sockets}`);
    t.diagnostic(`follower before ${JSON.stringify(before)}, after ${JSON.stringify(holdings(m, name))}`);
  }

  /**
   * The client got the blob whole and verified, within BOUND_MS of the fault (`faultAt`, on the
   * monotonic clock; by default the client's request, the fault being there from the start).
   * The test upstream's throttle paces chunks rather than bytes, so a transfer's length varies:
   * the bound is on the fault, not on a download.
   */
  function assertVerified(outcome: Outcome & { endedAt?: number }, blob: { digest: string; size: number }, what: string, faultAt?: number) {
    const waited = faultAt === undefined || outcome.endedAt === undefined ? outcome.ms : Math.round(outcome.endedAt - faultAt);
    assert.ok(waited < BOUND_MS, `${what}: the client waited ${waited} ms`);
    assert.deepEqual({ status: outcome.status, bytes: outcome.bytes, complete: outcome.complete, digest: outcome.sha256 }, { status: 200, bytes: blob.size, complete: true, digest: blob.digest }, what);
  }

  /**
   * A cold blob that takes a while upstream (throttled): A downloads it for a client of its own,
   * then B's client asks B, which follows A. `followerBytes` counts what B's client received.
   */
  async function followedDownload(a: RunningMirror, b: RunningMirror, label: string, sizeMiB = 6) {
    const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/peers', { sizeMiB, label });
    const blobPath = new RegExp(`/blobs/${blob.digest}$`);
    world.proxy.reset();
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', blobPath) });
    const fromHolder = getBlob(blobUrl(a, blob.digest), { deadlineMs: 60_000 });
    assert.ok(await eventually(() => a.logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'A downloads');
    const progress = { bytes: 0 };
    const fromFollower = stamped(getBlob(blobUrl(b, blob.digest), { deadlineMs: 60_000, onBytes: (n) => (progress.bytes = n) }));
    return { blob, blobPath, fromHolder, fromFollower, progress };
  }

  /** The outcome, with the moment it came. */
  const stamped = (outcome: Promise<Outcome>) => outcome.then((o) => ({ ...o, endedAt: performance.now() }));
  const duplicates = async (m: RunningMirror, reason: string) => sample(await scrape(`${m.url}/metrics`), 'pullmirror_fleet_duplicate_fetches_total', { reason });
  const blobGets = (blobPath: RegExp) => world.proxy.requests.filter((r) => r.method === 'GET' && blobPath.test(r.path));

  it('a holder whose peer listener cannot be reached is tried for redis.fleet.peers.fallback; then the follower fetches upstream itself, counted as a duplicate', async (t) => {
    // A advertises an address that takes connections and closes them: a peer listener gone wrong.
    const recorder = await startConnectionRecorder();
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a2', { addr: '127.0.0.1:0', advertise: recorder.address }) }),
      world.startMirror({ config: member('b2', own) }),
    ]);
    try {
      const before = holdings(b, 'b2');
      const { blob, blobPath, fromHolder, fromFollower } = await followedDownload(a, b, 's3-peer-unreachable', 4);
      assertVerified(await fromFollower, blob, "B's client");
      assertVerified(await fromHolder, blob, "A's client");
      assert.ok(recorder.connections >= 2, `B tried A's advertised address more than once (${recorder.connections})`);
      assert.ok(b.logLines().some((line) => line.message === 'holder not readable as a peer; fetching upstream' && line.digest === blob.digest && line.reason === 'peer_unreachable'));
      assert.equal(await duplicates(b, 'peer_unreachable'), 1);
      assert.equal(blobGets(blobPath).length, 2, "A's download and B's own");
      await assertLeftNothing(t, b, 'b2', before);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
      await recorder.close();
    }
  });

  it('a holder that refuses the follower\'s secret (401) is not tried again: the follower fetches upstream at once, counted', async (t) => {
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a3', own) }),
      world.startMirror({ config: member('b3', own, 'a-secret-the-holder-does-not-share-0123') }),
    ]);
    try {
      const before = holdings(b, 'b3');
      const { blob, fromHolder, fromFollower } = await followedDownload(a, b, 's3-peer-secret', 4);
      assertVerified(await fromFollower, blob, "B's client");
      assertVerified(await fromHolder, blob, "A's client");
      assert.equal(sample(await scrape(`${a.url}/metrics`), 'pullmirror_peer_auth_failures_total', { reason: 'forged' }), 1, 'A refused one request, counted');
      assert.equal(await duplicates(b, 'peer_refused'), 1);
      await assertLeftNothing(t, b, 'b3', before);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder SIGKILLed mid-stream: the follower resumes from upstream at its offset and takes the lease over; its client gets every byte, verified, and the blob is committed once', async (t) => {
    const [a, b] = await Promise.all([world.startMirror({ config: member('a4', own) }), world.startMirror({ config: member('b4', own) })]);
    try {
      const before = holdings(b, 'b4');
      const { blob, blobPath, fromFollower, progress } = await followedDownload(a, b, 's3-peer-kill', 6);
      assert.ok(await eventually(() => progress.bytes >= MiB), "B's client receives bytes streamed from A");
      const during = holdings(b, 'b4');
      assert.ok(during.tempFiles >= 1 && during.openInSpool >= 1, `B spools its copy, a descriptor open on it (${JSON.stringify(during)}): the counts after are of something`);
      t.diagnostic(`follower during the stream ${JSON.stringify(during)}`);
      const killedAt = performance.now();
      process.kill(a.process.pid, 'SIGKILL');
      await a.process.exited;
      assertVerified(await fromFollower, blob, "B's client", killedAt);
      assert.equal(await duplicates(b, 'peer_failed'), 1);
      const [, resumed] = blobGets(blobPath);
      assert.match(resumed?.range ?? '', /^bytes=[1-9]\d*-$/, 'B asked upstream only for what it had not streamed');
      assert.equal(blobGets(blobPath).length, 2, "A's download and B's resumption");
      assert.ok(await eventually(() => b.logLines().some((line) => line.message === "the copy streamed from a dead instance goes on as this instance's download")), 'B took the lease over with its copy');
      assert.ok(await eventually(async () => sample(await scrape(`${b.url}/metrics`), 'pullmirror_blob_fills_total', { result: 'committed' }) === 1), 'B committed the blob');
      world.proxy.reset();
      assertVerified(await getBlob(blobUrl(b, blob.digest), { deadlineMs: BOUND_MS }), blob, 'a later client, from the bucket');
      assert.equal(world.proxy.count('GET', blobPath), 0);
      await assertLeftNothing(t, b, 'b4', before);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a holder SIGKILLed mid-stream with two followers: one takes the lease over and resumes from upstream at its offset, the other switches to it from its own offset; one upstream fetch of the rest', async (t) => {
    // One after the other: three starting at once on a busy 2-core machine can outlast the start's deadline.
    const a = await world.startMirror({ config: member('a7', own) });
    const b = await world.startMirror({ config: member('b7', own, SECRET, '5s') });
    const c = await world.startMirror({ config: member('c7', own, SECRET, '5s') });
    try {
      const before = { b: holdings(b, 'b7'), c: holdings(c, 'c7') };
      const { blob, blobPath, fromFollower, progress } = await followedDownload(a, b, 's3-peer-switch', 6);
      const cProgress = { bytes: 0 };
      const fromC = stamped(getBlob(blobUrl(c, blob.digest), { deadlineMs: 60_000, onBytes: (n) => (cProgress.bytes = n) }));
      assert.ok(await eventually(() => progress.bytes >= MiB && cProgress.bytes >= MiB), "B's and C's clients receive bytes streamed from A");
      const killedAt = performance.now();
      process.kill(a.process.pid, 'SIGKILL');
      await a.process.exited;
      assertVerified(await fromFollower, blob, "B's client", killedAt);
      assertVerified(await fromC, blob, "C's client", killedAt);
      const tookOver = (m: RunningMirror) => m.logLines().some((line) => line.message === "the copy streamed from a dead instance goes on as this instance's download");
      const switched = (m: RunningMirror) => m.logLines().some((line) => line.message === 'streaming from the new holder of a download' && line.digest === blob.digest);
      assert.ok(await eventually(() => tookOver(b) !== tookOver(c)), 'one of B and C took the lease over with its copy');
      const [leader, other] = tookOver(b) ? [b, c] : [c, b];
      assert.ok(switched(other), 'the other streams from the new leader');
      assert.equal(await duplicates(leader, 'peer_failed'), 1, "the new leader fetched the rest A had not sent it");
      assert.equal(await duplicates(other, 'peer_failed'), 0, 'the other fetched nothing upstream');
      const gets = blobGets(blobPath);
      assert.equal(gets.length, 2, "A's download and the new leader's resumption");
      assert.match(gets[1].range ?? '', /^bytes=[1-9]\d*-$/);
      assert.ok(await eventually(async () => sample(await scrape(`${leader.url}/metrics`), 'pullmirror_blob_fills_total', { result: 'committed' }) === 1), 'the new leader committed the blob');
      await assertLeftNothing(t, b, 'b7', before.b);
      await assertLeftNothing(t, c, 'c7', before.c);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop(), c.stop()]);
    }
  });

  it('a holder whose stream stalls (the connection open, no byte) is given up after redis.fleet.peers.timeout: the follower resumes from upstream at its offset', async (t) => {
    const peerPort = await freePort();
    const relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a5', { addr: `127.0.0.1:${peerPort}`, advertise: relay.address }) }),
      world.startMirror({ config: member('b5', own) }),
    ]);
    try {
      relay.stallAfter = 2 * MiB;
      const before = holdings(b, 'b5');
      const { blob, blobPath, fromHolder, fromFollower } = await followedDownload(a, b, 's3-peer-stall', 4);
      assertVerified(await fromFollower, blob, "B's client");
      assertVerified(await fromHolder, blob, "A's client");
      assert.equal(await duplicates(b, 'peer_stalled'), 1);
      const [, resumed] = blobGets(blobPath);
      assert.match(resumed?.range ?? '', /^bytes=[1-9]\d*-$/, 'B asked upstream only for what it had not streamed');
      await assertLeftNothing(t, b, 'b5', before);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
      await relay.close();
    }
  });

  it('a holder whose bytes do not match the digest: the follower\'s client never gets a clean end of them, the copy is discarded, and the next client gets verified bytes', async (t) => {
    const peerPort = await freePort();
    const relay = await startTcpRelay(`127.0.0.1:${peerPort}`);
    const [a, b] = await Promise.all([
      world.startMirror({ config: member('a6', { addr: `127.0.0.1:${peerPort}`, advertise: relay.address }) }),
      world.startMirror({ config: member('b6', own) }),
    ]);
    try {
      relay.flipByteAt = MiB;
      const before = holdings(b, 'b6');
      const { blob, fromHolder, fromFollower } = await followedDownload(a, b, 's3-peer-bad-bytes', 4);
      const first = await fromFollower;
      assert.ok(first.ms < BOUND_MS, `the client waited ${first.ms} ms`);
      assert.ok(!first.complete && first.bytes < blob.size, `the client's connection broke before the last byte (${first.bytes} of ${blob.size}, complete: ${first.complete})`);
      assertVerified(await fromHolder, blob, "A's client");
      relay.flipByteAt = undefined;
      // From upstream (counted as peer_bad_bytes), or from the bucket when A committed first.
      assertVerified(await getBlob(blobUrl(b, blob.digest), { deadlineMs: BOUND_MS }), blob, "B's next client");
      t.diagnostic(`peer_bad_bytes duplicates: ${await duplicates(b, 'peer_bad_bytes')}`);
      assert.ok(b.logLines().some((line) => line.message === 'blob stream from a peer failed' && line.digest === blob.digest));
      await assertLeftNothing(t, b, 'b6', before);
    } finally {
      world.proxy.setFault(undefined);
      await Promise.all([a.stop(), b.stop()]);
      await relay.close();
    }
  });
});
