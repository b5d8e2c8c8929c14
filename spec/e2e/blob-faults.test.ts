/**
 * The blob path under faults: for every way a blob is served (a stored file, a fill of this
 * instance, a fill another instance runs, a pass-through) and every fault a user meets
 * (upstream reset, a link that cuts every few MiB, a stalled upstream, a client that leaves or
 * stops reading, a hung or dead Redis, a full or read-only store, SIGKILL mid-fill), the client
 * gets the verified bytes or a broken connection within a bounded time, nothing half-written
 * is served afterwards, no descriptor or temp file is left behind, and the mirror keeps
 * serving.
 *
 * Real servers throughout (docker-registry behind the token server, redis-server, the mirror
 * process). Faked, because it cannot be made real on demand: a broken upstream link (the
 * fault-injecting proxy of spec/support/upstream-proxy.ts) and a full disk (minfreespace set
 * past the disk's size, the check the mirror makes before taking a blob).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { openFilesUnder, socketCount } from '../support/descriptors.ts';
import { getBlob, type BlobGetOptions, type Outcome } from '../support/blob-get.ts';
import { pushImage, pushRandomBlob, randomLayer, sha256OfBody } from '../support/images.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { mergeConfig, tempFiles, type RunningMirror } from '../support/mirror.ts';
import { eventually } from '../support/wait.ts';
import { skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { blobPath } from '../support/store.ts';
import { matchRequests, type FaultAction } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MiB = 1024 * 1024;
const BLOB_MIB = 8;
/** Every outcome must come within this: verified bytes or a broken connection, never a hang. */
const BOUND_MS = 20_000;
/** Short timeouts, so faults show within a test's time. */
const FAST = {
  http: { sendtimeout: '2s', headertimeout: '1s' },
  proxy: { tagfreshness: '0', timeouts: { connect: '1s', headers: '2s', bodyidle: '1s' }, resume: { retries: 2, backoff: '50ms' } },
};

type Kind = 'cached' | 'own fill' | 'follower' | 'pass-through';

/**
 * GETs a blob as a client would, hashing the body (spec/support/blob-get.ts); a hang shows as a
 * wait past BOUND_MS, which assertBoundedOutcome fails.
 */
function get(url: string, options: Omit<BlobGetOptions, 'deadlineMs'> = {}): Promise<Outcome> {
  return getBlob(url, { ...options, deadlineMs: BOUND_MS + 5_000 });
}

/** The verified bytes or a broken connection, in bounded time; never a clean end of wrong content. */
function assertBoundedOutcome(outcome: Outcome, blob: { digest: string; size: number }, expect: 'verified' | 'broken' | 'either'): void {
  assert.ok(outcome.ms < BOUND_MS, `the client waited ${outcome.ms} ms`);
  const verified = outcome.status === 200 && outcome.complete && outcome.bytes === blob.size && outcome.sha256 === blob.digest;
  if (outcome.complete && outcome.status === 200) assert.ok(verified, `a clean end must carry the verified bytes (got ${outcome.bytes} of ${blob.size})`);
  if (expect === 'verified') assert.ok(verified, `expected the verified blob, got status ${outcome.status}, ${outcome.bytes} bytes, complete ${outcome.complete}`);
  // Not the blob: an error answer (a 502/504 before any byte) or a connection broken mid-body.
  if (expect === 'broken') assert.ok(!verified && (!outcome.complete || outcome.status >= 400), `expected an error or a broken connection, got status ${outcome.status} complete ${outcome.complete}`);
}

/** After a fault: nothing open in the store, no temp file, nothing bad stored, and still serving. */
async function assertClean(mirrors: RunningMirror[], root: string, blob: { digest: string; size: number }, world: World, blobUrl: (m: RunningMirror) => string): Promise<void> {
  world.proxy.setFault(undefined);
  for (const mirror of mirrors) {
    if (mirror.process.hasExited()) continue;
    // Generous: a fill's commit waits for fsync, slow on a busy disk; a leak never clears.
    assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, root).length === 0, 30_000), `descriptors left open in the store: ${openFilesUnder(mirror.process.pid, root).join(', ')}`);
  }
  assert.ok(await eventually(() => tempFiles(root).length === 0, 30_000), `temp files left: ${tempFiles(root).join(', ')}`);
  // Whatever the store holds under the digest is the blob itself.
  const stored = blobPath(root, blob.digest);
  if (existsSync(stored)) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(stored)) hash.update(chunk as Buffer);
    assert.equal(`sha256:${hash.digest('hex')}`, blob.digest, 'a stored blob is always the verified content');
  }
  for (const mirror of mirrors) {
    if (mirror.process.hasExited()) continue;
    const again = await get(blobUrl(mirror));
    assert.ok(again.status === 200, `after the fault, still serving: got ${again.status}; upstream saw ${JSON.stringify(world.proxy.requests.slice(-4))}`);
    assertBoundedOutcome(again, blob, 'verified');
  }
}

describe('blob path faults: every source, every fault, bounded and leak-free', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let label = 0;

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
  });

  after(async () => {
    await world?.close();
    await redis?.close();
  });

  /** A fresh blob (so every case starts cold) in its own repository. */
  async function freshBlob(): Promise<{ digest: string; size: number; repo: string }> {
    const repo = `library/faults${++label}`;
    const blob = await pushRandomBlob(world.registry.url, PUSHER, repo, { sizeMiB: BLOB_MIB, label: `faults-${label}-${Date.now()}` });
    return { ...blob, repo };
  }

  /**
   * Runs one fault against one kind of source and checks the invariants. `fault` is set on the
   * upstream link before the client asks; `act` may provoke the rest (stop Redis, kill the mirror).
   */
  async function scenario(
    kind: Kind,
    options: {
      fault?: FaultAction;
      config?: Record<string, any>;
      client?: { abortAfter?: number; stallAfter?: number };
      redis?: boolean;
      expect: 'verified' | 'broken' | 'either';
      during?: (mirrors: RunningMirror[]) => Promise<void>;
    },
  ): Promise<{ outcome: Outcome; mirrors: RunningMirror[] }> {
    const blob = await freshBlob();
    const store = tempDir('pullmirror-faults').path;
    const redisConfig = kind === 'follower' || options.redis
      ? { storage: { cache: { blobdescriptor: 'redis' } }, redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s', fleet: { lease: '1s' } } }
      : {};
    const config = mergeConfig(FAST, redisConfig, kind === 'pass-through' ? { storage: { maintenance: { readonly: { enabled: true } } } } : {}, options.config ?? {});
    const mirrors: RunningMirror[] = [await world.startMirror({ root: store, config })];
    if (kind === 'follower') mirrors.push(await world.startMirror({ root: store, config }));
    const url = (m: RunningMirror) => `${m.url}/v2/${blob.repo}/blobs/${blob.digest}`;
    try {
      if (kind === 'cached') assertBoundedOutcome(await get(url(mirrors[0])), blob, 'verified');
      let holder: Promise<Outcome> | undefined;
      if (kind === 'follower') {
        // The first instance holds the download (its upstream paced so it lasts), the second follows it.
        // The case's fault hits the holder's own transfer (paced), and any resume after it.
        const first = options.fault && options.fault.kind !== 'delay' ? options.fault : { kind: 'drop-after' as const, bytes: Number.MAX_SAFE_INTEGER };
        world.proxy.setFault({ ...first, bytesPerSecond: 4 * MiB, match: matchRequests('GET', /\/blobs\/sha256:/), times: 1 } as never);
        holder = get(url(mirrors[0]));
        assert.ok(await eventually(() => mirrors[0].logLines().some((line) => line.message === 'blob fill started' && line.digest === blob.digest)), 'the first instance started the fill');
      }
      // Faults that happen once were the holder's; the lasting ones go on for every request.
      const lasting = options.fault && !('times' in options.fault && kind === 'follower');
      if (options.fault && lasting) world.proxy.addFault({ ...options.fault, match: matchRequests('GET', /\/blobs\/sha256:/) });
      const client = kind === 'follower' ? mirrors[1] : mirrors[0];
      let release: (() => void) | undefined;
      const asked = get(url(client), { ...options.client, onStall: (destroy) => (release = destroy) });
      if (options.during) await options.during(mirrors);
      if (options.client?.stallAfter !== undefined) {
        // The mirror lets go of a client that stopped reading after http.sendtimeout (2 s here).
        assert.ok(await eventually(() => release !== undefined, BOUND_MS), 'the client received bytes, then stopped reading');
        const stalledAt = performance.now();
        assert.ok(
          await eventually(() => openFilesUnder(client.process.pid, store).length === 0, BOUND_MS),
          `the mirror still holds the stalled client's file after ${performance.now() - stalledAt} ms`,
        );
        release!();
      }
      const outcome = await asked;
      if (!options.client) assertBoundedOutcome(outcome, blob, options.expect);
      if (kind === 'follower' && !options.redis && !options.during) {
        assert.ok(client.logLines().some((line) => line.message === 'following a blob download of another instance'), 'the second instance followed');
        if (holder) assertBoundedOutcome(await holder, blob, 'either');
      }
      await assertClean(mirrors, store, blob, world, url);
      return { outcome, mirrors };
    } finally {
      world.proxy.setFault(undefined);
      for (const mirror of mirrors) await mirror.stop();
    }
  }

  const kinds: Kind[] = ['cached', 'own fill', 'follower', 'pass-through'];
  // Nothing upstream matters to a stored blob: its cases check it is served whatever upstream does.
  const upstreamFaults: { name: string; fault: FaultAction; expect: (kind: Kind) => 'verified' | 'broken' }[] = [
    { name: 'upstream resets mid-body once', fault: { kind: 'drop-after', bytes: 3 * MiB }, expect: () => 'verified' },
    {
      name: 'upstream resets mid-body for good',
      // Every request is cut before any byte: no progress, so the retries run out.
      fault: { kind: 'drop-after', bytes: 0 },
      expect: (kind) => (kind === 'cached' ? 'verified' : 'broken'),
    },
    { name: 'the link cuts every 1 MiB', fault: { kind: 'drop-after', bytes: MiB }, expect: () => 'verified' },
    // Each resumed request brings 2 MiB more before it stalls too: progress, so it arrives.
    { name: 'upstream stalls mid-body, every time', fault: { kind: 'stall-after', bytes: 2 * MiB }, expect: () => 'verified' },
    { name: 'upstream stalls for good', fault: { kind: 'stall-after', bytes: 0 }, expect: (kind) => (kind === 'cached' ? 'verified' : 'broken') },
  ];
  for (const kind of kinds) {
    for (const { name, fault, expect } of upstreamFaults) {
      // A follower's own upstream is not asked while the holder lives: the holder's fault is its fault.
      it(`${kind}: ${name}`, async () => {
        const times = name.includes('once') ? { times: 1 } : {};
        await scenario(kind, { fault: { ...fault, ...times }, expect: expect(kind) });
      });
    }
    it(`${kind}: the client leaves mid-body`, async () => {
      await scenario(kind, { client: { abortAfter: 2 * MiB }, expect: 'either' });
    });
    it(`${kind}: the client stops reading; the mirror closes it after http.sendtimeout`, async () => {
      await scenario(kind, { client: { stallAfter: MiB }, expect: 'either' });
    });
    if (kind !== 'pass-through') {
      it(`${kind}: Redis hangs (SIGSTOP)`, async () => {
        redis.pause();
        try {
          await scenario(kind, { redis: true, expect: 'verified' });
        } finally {
          redis.resume();
        }
      });
      it(`${kind}: Redis is killed`, async () => {
        await scenario(kind, {
          redis: true,
          expect: 'verified',
          during: async () => {
            await redis.stop();
          },
        }).finally(() => redis.start());
      });
    }
  }

  it('own fill: a full store passes the blob through, verified, and stores nothing', async () => {
    const { mirrors } = await scenario('own fill', { config: { storage: { filesystem: { minfreespace: '1000TB' } } }, expect: 'verified' });
    assert.ok(mirrors[0].logLines().some((line) => line.message === 'store cannot take the blob: passing it through uncached'));
  });

  it('own fill: SIGKILL of the mirror mid-fill; restarted, it serves the verified blob and no partial one', async () => {
    const blob = await freshBlob();
    const store = tempDir('pullmirror-faults-kill').path;
    const first = await world.startMirror({ root: store, config: FAST });
    world.proxy.setFault({ kind: 'drop-after', bytes: Number.MAX_SAFE_INTEGER, bytesPerSecond: 2 * MiB, match: matchRequests('GET', /\/blobs\/sha256:/), times: 1 });
    let received = 0;
    const asked = get(`${first.url}/v2/${blob.repo}/blobs/${blob.digest}`, { onBytes: (n) => (received = n) });
    assert.ok(await eventually(() => received >= MiB));
    process.kill(first.process.pid, 'SIGKILL');
    assertBoundedOutcome(await asked, blob, 'broken');
    world.proxy.setFault(undefined);
    const second = await world.startMirror({ root: store, config: FAST });
    try {
      await assertClean([second], store, blob, world, (m) => `${m.url}/v2/${blob.repo}/blobs/${blob.digest}`);
    } finally {
      await second.stop();
    }
  });

  describe('bugs found on the old blob path', () => {
    it('pass-through: upstream dying mid-body breaks the client connection promptly', async () => {
      // The old pass-through used .pipe(), which does not forward the source's error: the client hung.
      await scenario('pass-through', { fault: { kind: 'drop-after', bytes: 3 * MiB }, config: { proxy: { resume: { retries: 0 } } }, expect: 'broken' });
    });

    it('a link that cuts each response after 1 MiB delivers a 16 MiB blob (retries count since the last progress)', async () => {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/flaky', { sizeMiB: 16, label: `flaky-${Date.now()}` });
      const mirror = await world.startMirror({ config: mergeConfig(FAST, { proxy: { resume: { retries: 3 } } }) });
      try {
        world.proxy.setFault({ kind: 'drop-after', bytes: MiB, match: matchRequests('GET', /\/blobs\/sha256:/) });
        world.proxy.reset();
        const outcome = await get(`${mirror.url}/v2/library/flaky/blobs/${blob.digest}`);
        assertBoundedOutcome(outcome, blob, 'verified');
        assert.ok(world.proxy.count('GET', /\/blobs\/sha256:/) >= 16, 'sixteen cut responses were needed');
      } finally {
        world.proxy.setFault(undefined);
        await mirror.stop();
      }
    });

    it('a hung Redis (SIGSTOP) does not slow warm blob GETs, and tags only until the breaker opens', async () => {
      const image = await pushImage(world.registry.url, PUSHER, { name: 'library/hung', tag: 'v1', layers: [randomLayer('hung-0', 200_000)], format: 'docker' });
      const mirror = await world.startMirror({
        config: mergeConfig(FAST, { proxy: { tagfreshness: '0' }, storage: { cache: { blobdescriptor: 'redis' } }, redis: { addr: redis.addr, readtimeout: '5s', writetimeout: '5s' } }),
      });
      const blobUrl = `${mirror.url}/v2/library/hung/blobs/${image.layerDigests[0]}`;
      const tagUrl = `${mirror.url}/v2/library/hung/manifests/v1`;
      try {
        assert.equal(await sha256OfBody(await fetch(blobUrl)), image.layerDigests[0]);
        await (await fetch(tagUrl)).arrayBuffer();
        redis.pause();
        const blobTimes: number[] = [];
        for (let i = 0; i < 5; i++) {
          const started = performance.now();
          assert.equal(await sha256OfBody(await fetch(blobUrl)), image.layerDigests[0]);
          blobTimes.push(performance.now() - started);
        }
        assert.ok(Math.max(...blobTimes) < 1000, `warm blob GETs with Redis hung took ${blobTimes.join(', ')} ms`);
        const tagTimes: number[] = [];
        for (let i = 0; i < 4; i++) {
          const started = performance.now();
          const response = await fetch(tagUrl);
          assert.equal(response.status, 200);
          await response.arrayBuffer();
          tagTimes.push(performance.now() - started);
        }
        assert.ok(Math.max(...tagTimes.slice(1)) < 1000, `tag requests after the first took ${tagTimes.join(', ')} ms`);
        const head = performance.now();
        assert.equal((await fetch(blobUrl, { method: 'HEAD' })).status, 200);
        assert.ok(performance.now() - head < 1000, 'a HEAD does not wait for the hung cache');
      } finally {
        redis.resume();
        await mirror.stop();
      }
    });

    it('stalled clients are closed after http.sendtimeout, half-sent requests after the header timeout', async () => {
      const blob = await pushRandomBlob(world.registry.url, PUSHER, 'library/stall', { sizeMiB: 32, label: `stall-${Date.now()}` });
      const mirror = await world.startMirror({ config: FAST });
      const url = `${mirror.url}/v2/library/stall/blobs/${blob.digest}`;
      try {
        assertBoundedOutcome(await get(url), blob, 'verified');
        const socketsBefore = socketCount(mirror.process.pid);
        const stalled = Array.from({ length: 20 }, () => get(url, { stallAfter: 64 * 1024 }));
        assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, mirror.root).length >= 20, 5_000), 'the stalled clients hold their files at first');
        assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, mirror.root).length === 0, 10_000), 'after http.sendtimeout (2 s) every stalled response is closed and its file released');
        assert.ok(await eventually(() => socketCount(mirror.process.pid) <= socketsBefore + 2, 5_000), 'and their connections');
        void Promise.all(stalled);
        // Half a request line: closed after the header timeout (1 s here), not held.
        const closedAfter = await new Promise<number>((resolve) => {
          const started = performance.now();
          const socket = connect(mirror.port, '127.0.0.1', () => socket.write('GET /v2/ HT'));
          socket.on('data', () => {});
          socket.on('close', () => resolve(performance.now() - started));
          socket.on('error', () => {});
          setTimeout(() => socket.destroy(), 15_000);
        });
        assert.ok(closedAfter < 5_000, `a half-sent request was held ${closedAfter} ms`);
        // Clients that send half a request and then read nothing (they never see the mirror's
        // answer or its FIN) are let go too, not held half-closed.
        const before = socketCount(mirror.process.pid);
        const silent = await Promise.all(
          Array.from({ length: 10 }, () => new Promise<ReturnType<typeof connect>>((resolve) => {
            const socket = connect(mirror.port, '127.0.0.1', () => {
              socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
              socket.pause();
              resolve(socket);
            });
            socket.on('error', () => {});
          })),
        );
        // (At least most of them: sockets of the earlier phases may still be closing, so the baseline drifts.)
        assert.ok(await eventually(() => socketCount(mirror.process.pid) >= before + 5, 3_000), 'the silent clients are connected');
        assert.ok(await eventually(() => socketCount(mirror.process.pid) <= before, 8_000), `silent half requests still held: ${socketCount(mirror.process.pid) - before}`);
        for (const socket of silent) socket.destroy();
      } finally {
        await mirror.stop();
      }
    });

    it('own fill: a client that keeps up gets the chunks as they arrive, not read back from the file; one that is behind reads the file', async () => {
      const blob = await freshBlob();
      const mirror = await world.startMirror();
      const url = `${mirror.url}/v2/${blob.repo}/blobs/${blob.digest}`;
      const sent = async () => {
        const samples = await scrape(`${mirror.url}/metrics`);
        return { memory: sample(samples, 'pullmirror_fill_sent_bytes_total', { from: 'memory' }), file: sample(samples, 'pullmirror_fill_sent_bytes_total', { from: 'file' }) };
      };
      // Upstream paced at 2 MiB/s: a client that reads at once is always at the fill's front.
      world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * MiB, match: matchRequests('GET', /\/blobs\/sha256:/), times: 1 });
      try {
        const before = await sent();
        // The other joins once the first has 4 MiB: behind what the fill holds in memory (what it has not written yet).
        let joinLate!: () => void;
        const halfway = new Promise<void>((resolve) => (joinLate = resolve));
        const keepingUp = get(url, { onBytes: (n) => n >= 4 * MiB && joinLate() });
        await halfway;
        const fallingBehind = get(url);
        assertBoundedOutcome(await keepingUp, blob, 'verified');
        assertBoundedOutcome(await fallingBehind, blob, 'verified');
        const after = await sent();
        // Every byte but the last, which waits for the digest (the fill holds nothing it wrote).
        assert.ok(after.memory - before.memory >= blob.size - 1, `the client that kept up took every byte from memory (${after.memory - before.memory} bytes from memory, ${after.file - before.file} from the file)`);
        assert.ok(after.file - before.file >= 2 * MiB, `the client that joined late read from the file (${after.file - before.file} bytes)`);
      } finally {
        world.proxy.setFault(undefined);
        await mirror.stop();
      }
    });

    it('a HEAD while a pass-through starts answers 200, not 500', async () => {
      const blob = await freshBlob();
      const mirror = await world.startMirror({ config: mergeConfig(FAST, { storage: { maintenance: { readonly: { enabled: true } } } }) });
      const url = `${mirror.url}/v2/${blob.repo}/blobs/${blob.digest}`;
      try {
        // The GET's upstream answer is slow, so the HEAD comes while the pass-through starts.
        world.proxy.setFault({ kind: 'delay', ms: 500, match: matchRequests('GET', /\/blobs\/sha256:/), times: 1 });
        const getting = get(url);
        await new Promise((resolve) => setTimeout(resolve, 100));
        const heads = await Promise.all([fetch(url, { method: 'HEAD' }), fetch(url, { method: 'HEAD' })]);
        for (const head of heads) {
          assert.equal(head.status, 200);
          assert.equal(head.headers.get('content-length'), String(blob.size));
        }
        assertBoundedOutcome(await getting, blob, 'verified');
        // Joiners of a pass-through get their own, each verified.
        const both = await Promise.all([get(url), get(url)]);
        for (const outcome of both) assertBoundedOutcome(outcome, blob, 'verified');
      } finally {
        world.proxy.setFault(undefined);
        await mirror.stop();
      }
    });

    it('an error answer carries no content headers (a 416 is not a year-cacheable blob)', async () => {
      const blob = await freshBlob();
      const mirror = await world.startMirror({ config: FAST });
      const url = `${mirror.url}/v2/${blob.repo}/blobs/${blob.digest}`;
      try {
        assertBoundedOutcome(await get(url), blob, 'verified');
        const response = await fetch(url, { headers: { range: `bytes=${blob.size + 10}-` } });
        assert.equal(response.status, 416);
        assert.equal(response.headers.get('content-range'), `bytes */${blob.size}`);
        assert.equal(response.headers.get('cache-control'), null);
        assert.equal(response.headers.get('etag'), null);
        assert.equal(response.headers.get('docker-content-digest'), null);
        assert.equal((await response.json()).errors[0].code, 'RANGE_NOT_SATISFIABLE');
        // Closing is asynchronous: the descriptor goes a moment after the answer.
        assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, mirror.root).length === 0, 2_000), 'the 416 released the file');
      } finally {
        await mirror.stop();
      }
    });
  });
});
