/**
 * Faults of the object store, on a real RADOS Gateway: a bucket that cannot be used at start
 * (wrong access key, wrong secret, no such bucket, nothing listening), and at run time one that
 * is unreachable, hung, answering 503 SlowDown or 403, while blobs are read from it or committed
 * to it. Clients get verified bytes or a broken connection within a bound, and the mirror falls
 * back to a verified pass-through from upstream; the bucket never holds a partial or unverified
 * object, no multipart upload is left, no spool file or descriptor either; readiness says what
 * it sees; the storage metrics move.
 *
 * A sibling of blob-faults.test.ts rather than more rows in it: that matrix is built around a
 * store directory (its assertions read the files), this one around a bucket (its assertions list
 * objects and uploads), and it needs its own RGW cluster.
 *
 * Real: radosgw (SIGSTOP makes it hang for real), docker-registry upstream, the mirror process.
 * Faked, because RGW cannot be made to do it on demand: 503 SlowDown, 403 on a request that was
 * correctly signed, and a refused connection to a running RGW — by spec/support/upstream-proxy.ts
 * placed in front of RGW (it forwards the Host header, so SigV4 signatures still match).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getBlob, type Outcome } from '../support/blob-get.ts';
import { openFilesUnder, socketCount, spoolTempFiles } from '../support/descriptors.ts';
import { MT, pushImage, pushRandomBlob, randomLayer, sha256Digest } from '../support/images.ts';
import { startRedis } from '../support/redis.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { sum, scrape } from '../support/prometheus.ts';
import { freePort, tempDir } from '../support/processes.ts';
import { bucketProblems, startS3, skipUnlessS3, uploadsLeft, type S3Server } from '../support/s3.ts';
import { matchRequests, startUpstreamProxy, type FaultAction, type UpstreamProxy } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

/** Every outcome must come within this: verified bytes or a broken connection, never a hang. */
const BOUND_MS = 20_000;

/** A blob GET as a client makes it, hashed (spec/support/blob-get.ts); `abortAfter` leaves after so many bytes. */
function get(url: string, options: { abortAfter?: number } = {}): Promise<Outcome> {
  return getBlob(url, { ...options, deadlineMs: BOUND_MS + 10_000 });
}

function assertVerified(outcome: Outcome, blob: { digest: string; size: number }, what: string): void {
  assert.ok(outcome.ms < BOUND_MS, `${what}: the client waited ${outcome.ms} ms`);
  assert.ok(
    outcome.status === 200 && outcome.complete && outcome.bytes === blob.size && outcome.sha256 === blob.digest,
    `${what}: expected the verified blob, got status ${outcome.status}, ${outcome.bytes} of ${blob.size} bytes, complete ${outcome.complete}`,
  );
}

describe('object storage faults are bounded (storage.s3 on RADOS Gateway)', { skip: missingBinaries || skipUnlessS3() }, () => {
  let world: World;
  let s3: S3Server;
  /** In front of RGW: the faults RGW cannot be made to produce. */
  let s3proxy: UpstreamProxy;
  const work = tempDir('pullmirror-s3-faults');
  let label = 0;
  const figures: string[] = [];

  before(async () => {
    [world, s3] = await Promise.all([startWorld(), startS3()]);
    s3proxy = await startUpstreamProxy(s3.endpoint);
  });
  after(async () => {
    if (figures.length > 0) console.log(`# client waits:\n#   ${figures.join('\n#   ')}`);
    await world?.close();
    await s3proxy?.close();
    await s3?.close();
    await work.cleanup();
  });

  async function freshBlob(sizeMiB = 8): Promise<{ digest: string; size: number; repo: string }> {
    const repo = `library/s3faults${++label}`;
    const blob = await pushRandomBlob(world.registry.url, PUSHER, repo, { sizeMiB, label: `s3faults-${label}-${Date.now()}` });
    return { ...blob, repo };
  }

  function s3Config(bucket: string, overrides: Record<string, unknown> = {}) {
    const spool = path.join(work.path, `spool-${++label}`);
    return {
      http: { sendtimeout: '2s' },
      proxy: { tagfreshness: '0', timeouts: { connect: '1s', headers: '2s', bodyidle: '1s' } },
      health: { storagedriver: { enabled: true, interval: '200ms', threshold: 1 } },
      storage: {
        s3: {
          bucket,
          region: s3.region,
          regionendpoint: s3proxy.url,
          forcepathstyle: true,
          accesskey: s3.accessKeyId,
          secretkey: s3.secretAccessKey,
          spooldirectory: spool,
          ...overrides,
        },
      },
    };
  }

  const spoolOf = (config: ReturnType<typeof s3Config>) => config.storage.s3.spooldirectory;

  /**
   * After a fault has cleared: nothing partial or unverified in the bucket, no multipart upload
   * left, no spool file or descriptor into the spool, the S3 connections back to what they were,
   * and the blob served again, verified.
   */
  async function assertClean(mirror: RunningMirror, bucket: string, spool: string, blob: { digest: string; size: number; repo: string }, socketsBefore: number): Promise<void> {
    s3proxy.setFault(undefined);
    assert.ok(await eventually(async () => (await uploadsLeft(s3, bucket)) === 0, 15_000), `multipart uploads left: ${await uploadsLeft(s3, bucket)}`);
    assert.deepEqual((await bucketProblems(s3, bucket)).bad, [], 'every object in the bucket is what its key says');
    assert.ok(await eventually(() => spoolTempFiles(spool).length === 0, 15_000), `spool files left: ${spoolTempFiles(spool).join(', ')}`);
    assert.ok(await eventually(() => openFilesUnder(mirror.process.pid, spool).length === 0, 15_000), `descriptors left in the spool: ${openFilesUnder(mirror.process.pid, spool).join(', ')}`);
    // Kept-alive connections to S3, upstream and clients close on their idle timers; a leak never does.
    assert.ok(await eventually(() => socketCount(mirror.process.pid) <= socketsBefore + 2, 15_000), `sockets: ${socketCount(mirror.process.pid)}, before ${socketsBefore}`);
    assertVerified(await get(blobUrl(mirror, blob)), blob, 'after the fault cleared');
  }

  const blobUrl = (mirror: RunningMirror, blob: { repo: string; digest: string }) => `${mirror.url}/v2/${blob.repo}/blobs/${blob.digest}`;

  it('at start: one line naming the key and the cause, no secret anywhere, not ready, and blobs pass through', async () => {
    const bucket = await s3.createBucket('start');
    const blob = await freshBlob(2);
    const closed = await freePort();
    const cases: { name: string; overrides: Record<string, unknown>; line: RegExp }[] = [
      { name: 'wrong access key', overrides: { accesskey: 'pmnosuchkey0' }, line: /^storage\.s3\.accesskey: refused by the server \(InvalidAccessKeyId, HTTP 403\)$/ },
      { name: 'wrong secret', overrides: { secretkey: 'f'.repeat(40) }, line: /^storage\.s3\.secretkey: refused by the server: the signature does not match \(SignatureDoesNotMatch, HTTP 403\)$/ },
      { name: 'missing bucket', overrides: { bucket: 'no-such-bucket-here' }, line: /^storage\.s3\.bucket: no bucket "no-such-bucket-here" at http:\/\/127\.0\.0\.1:\d+ \(NoSuchBucket, HTTP 404\)$/ },
      { name: 'unreachable endpoint', overrides: { regionendpoint: `http://127.0.0.1:${closed}` }, line: /^storage\.s3\.regionendpoint: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/ },
    ];
    for (const { name, overrides, line } of cases) {
      const mirror = await world.startMirror({ config: s3Config(bucket, overrides) });
      try {
        const lines = await (async () => {
          await eventually(() => mirror.logLines().some((l) => l.level === 'error' && /^storage\.s3/.test(String(l.message))), 15_000);
          return mirror.logLines().filter((l) => /^storage\.s3/.test(String(l.message)));
        })();
        assert.equal(lines.length, 1, `${name}: one line naming the key, got ${JSON.stringify(lines)}`);
        assert.match(lines[0].message, line, name);
        const ready = await fetch(`${mirror.url}/health/ready`);
        assert.equal(ready.status, 503, `${name}: not ready`);
        assert.doesNotMatch(await ready.text(), new RegExp(s3.secretAccessKey), `${name}: no secret in readiness`);
        const outcome = await get(blobUrl(mirror, blob));
        assertVerified(outcome, blob, `${name}: a pull`);
        figures.push(`at start, ${name}: ${outcome.ms} ms for a 2 MiB blob (pass-through)`);
      } finally {
        await mirror.stop();
      }
      const log = readFileSync(mirror.process.logFile, 'utf8');
      for (const secret of [s3.secretAccessKey, 'f'.repeat(40)]) assert.ok(!log.includes(secret), `${name}: a secret in the mirror's output`);
    }
  });

  describe('at run time, a blob cached in the bucket', () => {
    const faults: { name: string; fault?: FaultAction; hang?: boolean }[] = [
      { name: 'unreachable (connection refused)', fault: { kind: 'reset' } },
      { name: '503 SlowDown', fault: { kind: 'status', status: 503, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>' } },
      { name: '403 AccessDenied', fault: { kind: 'status', status: 403, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>' } },
      { name: 'hung (radosgw SIGSTOPped)', hang: true },
    ];
    for (const { name, fault, hang } of faults) {
      it(`${name}: served from upstream, verified, within the bound; the metrics count the errors`, async () => {
        const bucket = await s3.createBucket('cached');
        const blob = await freshBlob();
        const mirror = await world.startMirror({ config: s3Config(bucket) });
        try {
          assertVerified(await get(blobUrl(mirror, blob)), blob, 'the cold pull');
          assert.ok(await eventually(async () => (await bucketProblems(s3, bucket)).objects > 0, 10_000), 'the blob is in the bucket');
          const before = await scrape(`${mirror.url}/metrics`);
          if (fault) s3proxy.setFault({ ...fault, match: () => true });
          if (hang) process.kill(s3.rgwPid(), 'SIGSTOP');
          let outcome: Outcome;
          try {
            outcome = await get(blobUrl(mirror, blob));
          } finally {
            if (hang) process.kill(s3.rgwPid(), 'SIGCONT');
            s3proxy.setFault(undefined);
          }
          figures.push(`cached, ${name}: ${outcome.ms} ms for an 8 MiB blob`);
          assertVerified(outcome, blob, name);
          const afterFault = await scrape(`${mirror.url}/metrics`);
          assert.ok(sum(afterFault, 'pullmirror_s3_requests_total') > sum(before, 'pullmirror_s3_requests_total'), 's3 requests counted');
          const errors = (s: Map<string, number>) => sum(s, 'pullmirror_storage_operations_total') - sum(s, 'pullmirror_storage_operations_total', { result: 'ok' });
          assert.ok(errors(afterFault) > errors(before), 'the failed storage operation counted');
          assert.ok(sum(afterFault, 'pullmirror_storage_operation_seconds_count') > sum(before, 'pullmirror_storage_operation_seconds_count'), 'its latency observed');
          const problems = await bucketProblems(s3, bucket);
          assert.deepEqual(problems.bad, [], 'every object in the bucket is what its key says');
          assert.ok(await eventually(async () => (await uploadsLeft(s3, bucket)) === 0, 10_000), 'no multipart upload left');
        } finally {
          await mirror.stop();
        }
      });
    }
  });

  it('hung (radosgw SIGSTOPped), with the default timeouts: the first request is served from upstream within the bound, not after 3 × 15 s', async () => {
    const bucket = await s3.createBucket('hungfirst');
    const blob = await freshBlob();
    // Without the short http.sendtimeout of the cases above: S3's idle timeout follows it (the
    // default is 5 minutes), so only the deadlines of the read itself bound it.
    const { http: _short, ...config } = s3Config(bucket);
    const mirror = await world.startMirror({ config });
    let stopped = false;
    try {
      assertVerified(await get(blobUrl(mirror, blob)), blob, 'the cold pull');
      assert.ok(await eventually(async () => (await bucketProblems(s3, bucket)).objects > 0, 10_000), 'the blob is in the bucket');
      process.kill(s3.rgwPid(), 'SIGSTOP');
      stopped = true;
      const outcome = await get(blobUrl(mirror, blob));
      process.kill(s3.rgwPid(), 'SIGCONT');
      stopped = false;
      figures.push(`cached, hung, default timeouts: ${outcome.ms} ms for an 8 MiB blob`);
      assertVerified(outcome, blob, 'the first request to the hung bucket');
      assert.ok(
        mirror.logLines().some((line) => /no answer within 10000 ms \(storage\.s3\.readtimeout\)/.test(String(line.error ?? ''))),
        'the log names the deadline that passed',
      );
    } finally {
      if (stopped) process.kill(s3.rgwPid(), 'SIGCONT');
      await mirror.stop();
    }
  });

  describe('at run time, manifests by tag and by digest', () => {
    const faults: { name: string; fault?: FaultAction; hang?: boolean }[] = [
      { name: 'unreachable (connection refused)', fault: { kind: 'reset' } },
      { name: '503 SlowDown', fault: { kind: 'status', status: 503, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>' } },
      { name: '403 AccessDenied', fault: { kind: 'status', status: 403, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>' } },
      { name: 'hung (radosgw SIGSTOPped)', hang: true },
    ];
    /** A manifest GET as a client makes it: the status, the digest of the body, the OCI error code, how long it took. */
    async function getManifest(mirror: RunningMirror, repo: string, reference: string): Promise<{ status: number; digest: string; header: string | null; code?: string; ms: number }> {
      const started = performance.now();
      const response = await fetch(`${mirror.url}/v2/${repo}/manifests/${reference}`, {
        headers: { accept: [MT.ociManifest, MT.dockerManifest, MT.ociIndex, MT.dockerList].join(', ') },
        signal: AbortSignal.timeout(BOUND_MS + 10_000),
      });
      const body = Buffer.from(await response.arrayBuffer());
      const code = response.status === 200 ? undefined : (JSON.parse(body.toString('utf8')) as { errors: { code: string }[] }).errors[0]?.code;
      return { status: response.status, digest: sha256Digest(body), header: response.headers.get('docker-content-digest'), code, ms: Math.round(performance.now() - started) };
    }

    for (const { name, fault, hang } of faults) {
      it(`${name}: a client gets the manifest from upstream, verified, within the bound (or, with upstream down too, an OCI error); nothing partial is stored`, async () => {
        const bucket = await s3.createBucket('manifests');
        const n = ++label;
        const stored = await pushImage(world.registry.url, PUSHER, { name: `library/s3mstored${n}`, tag: 'v1', layers: [randomLayer(`stored-${n}-${Date.now()}`)], format: 'oci' });
        const fresh = await pushImage(world.registry.url, PUSHER, { name: `library/s3mfresh${n}`, tag: 'v1', layers: [randomLayer(`fresh-${n}-${Date.now()}`)], format: 'oci' });
        const config = s3Config(bucket);
        const filling = await world.startMirror({ config });
        try {
          const cold = await getManifest(filling, stored.name, 'v1');
          assert.equal(cold.digest, stored.manifestDigest, 'the cold pull');
        } finally {
          await filling.stop();
        }
        assert.ok(await eventually(async () => (await bucketProblems(s3, bucket)).objects > 0, 10_000), 'the manifest is in the bucket');
        // A new instance: what it knows of the manifest, it must read from the bucket.
        const mirror = await world.startMirror({ config });
        let stopped = false;
        try {
          await fetch(`${mirror.url}/v2/`);
          if (fault) s3proxy.setFault({ ...fault, match: () => true });
          if (hang) {
            process.kill(s3.rgwPid(), 'SIGSTOP');
            stopped = true;
          }
          const asked = [
            { what: 'stored, by tag', image: stored, reference: 'v1' },
            { what: 'stored, by digest', image: stored, reference: stored.manifestDigest },
            { what: 'never stored, by tag', image: fresh, reference: 'v1' },
          ];
          for (const { what, image, reference } of asked) {
            const outcome = await getManifest(mirror, image.name, reference);
            figures.push(`manifest ${what}, ${name}: ${outcome.ms} ms`);
            assert.ok(outcome.ms < BOUND_MS, `${what}: the client waited ${outcome.ms} ms`);
            assert.equal(outcome.status, 200, `${what}: status ${outcome.status} ${outcome.code ?? ''}`);
            assert.equal(outcome.digest, image.manifestDigest, `${what}: the manifest's bytes`);
            assert.equal(outcome.header, image.manifestDigest);
          }
          // Upstream down as well: nothing to serve the manifest from, and the client is told so.
          world.proxy.setFault({ kind: 'status', status: 503, match: matchRequests('*', /\/manifests\//) });
          try {
            const outcome = await getManifest(mirror, fresh.name, fresh.manifestDigest);
            assert.ok(outcome.ms < BOUND_MS, `upstream down too: the client waited ${outcome.ms} ms`);
            assert.ok(outcome.status >= 500 && outcome.code !== undefined && outcome.code !== 'UNKNOWN', `upstream down too: an OCI error that says why, got ${outcome.status} ${outcome.code}`);
          } finally {
            world.proxy.setFault(undefined);
          }
        } finally {
          if (stopped) process.kill(s3.rgwPid(), 'SIGCONT');
          s3proxy.setFault(undefined);
          await mirror.stop();
        }
        assert.deepEqual((await bucketProblems(s3, bucket)).bad, [], 'every object in the bucket is what its key says');
        assert.ok(await eventually(async () => (await uploadsLeft(s3, bucket)) === 0, 10_000), 'no multipart upload left');
      });
    }
  });

  describe('at run time, a blob whose fill commits to the bucket', () => {
    const uploads = (method: string) => method === 'PUT' || method === 'POST';
    const faults: { name: string; fault?: FaultAction; hang?: (method: string, path: string) => boolean }[] = [
      { name: 'unreachable during the commit', fault: { kind: 'reset' } },
      { name: '503 SlowDown on every upload request', fault: { kind: 'status', status: 503, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>' } },
      { name: '403 AccessDenied on the upload', fault: { kind: 'status', status: 403, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>' } },
      // The request's own first write (the repository's privacy record): what follows it
      // in the request (the link, the blob) must not each wait out the store's deadline.
      { name: "hung at the request's first write (radosgw SIGSTOPped at it)", hang: (method) => uploads(method) },
      { name: "hung during the blob's commit (radosgw SIGSTOPped at its upload)", hang: (method, p) => uploads(method) && /\/blobs\/sha256\//.test(p) },
    ];
    for (const { name, fault, hang } of faults) {
      it(`${name}: the client gets the verified blob within the bound, nothing partial is left`, async () => {
        const bucket = await s3.createBucket('commit');
        const blob = await freshBlob(16);
        // 5 MiB parts: a 16 MiB blob is a multipart upload of 4 parts.
        const config = s3Config(bucket, { chunksize: 5 * 1024 * 1024 });
        const mirror = await world.startMirror({ config });
        let stopped = false;
        try {
          await fetch(`${mirror.url}/v2/`);
          const socketsBefore = socketCount(mirror.process.pid);
          s3proxy.reset();
          if (fault) s3proxy.setFault({ ...fault, match: uploads });
          const asked = get(blobUrl(mirror, blob));
          let sentBeforeHang = 0;
          if (hang) {
            assert.ok(await eventually(() => s3proxy.requests.some((r) => hang(r.method, r.path)), BOUND_MS, 5), 'the write began');
            process.kill(s3.rgwPid(), 'SIGSTOP');
            stopped = true;
            sentBeforeHang = s3proxy.requests.length;
          }
          const outcome = await asked;
          if (hang) {
            // One operation's attempts (the driver's maxAttempts: 3) meet the hung store; the
            // rest of the request is told at once that the store is failing.
            // (Not counted: the walk of blobs/ the store's figures make in the background at start.)
            const sentDuringHang = s3proxy.requests.slice(sentBeforeHang).filter((r) => !r.path.includes('prefix=blobs%2F'));
            assert.ok(sentDuringHang.length <= 3, `requests sent to the hung store for one client request: ${sentDuringHang.map((r) => `${r.method} ${r.path}`).join(', ')}`);
          }
          figures.push(`commit, ${name}: ${outcome.ms} ms for a 16 MiB blob`);
          assertVerified(outcome, blob, name);
          if (hang) {
            // Hung for a while past the client's answer: what the commit does meanwhile is bounded too.
            await new Promise((resolve) => setTimeout(resolve, 5_000));
            process.kill(s3.rgwPid(), 'SIGCONT');
            stopped = false;
          }
          await assertClean(mirror, bucket, spoolOf(config), blob, socketsBefore);
        } finally {
          if (stopped) process.kill(s3.rgwPid(), 'SIGCONT');
          s3proxy.setFault(undefined);
          await mirror.stop();
        }
      });
    }
  });

  describe('a blob cached in the bucket, and a client or the bucket failing mid-body', () => {
    it('the client leaves mid-body: the S3 body is let go, nothing leaks', async () => {
      const bucket = await s3.createBucket('leave');
      const blob = await freshBlob(32);
      const config = s3Config(bucket);
      const mirror = await world.startMirror({ config });
      try {
        assertVerified(await get(blobUrl(mirror, blob)), blob, 'the cold pull');
        const socketsBefore = socketCount(mirror.process.pid);
        for (let i = 0; i < 4; i++) {
          const outcome = await get(blobUrl(mirror, blob), { abortAfter: 1024 * 1024 });
          assert.ok(!outcome.complete && outcome.ms < BOUND_MS);
        }
        await assertClean(mirror, bucket, spoolOf(config), blob, socketsBefore);
      } finally {
        await mirror.stop();
      }
    });

    it('radosgw hangs mid-GET: the client gets a broken connection within the bound, then the blob again once it is back', async () => {
      const bucket = await s3.createBucket('midget');
      const blob = await freshBlob(64);
      const config = s3Config(bucket);
      const mirror = await world.startMirror({ config });
      let stopped = false;
      try {
        assertVerified(await get(blobUrl(mirror, blob)), blob, 'the cold pull');
        const socketsBefore = socketCount(mirror.process.pid);
        const started = performance.now();
        const outcome = await new Promise<Outcome>((resolve) => {
          const hash = createHash('sha256');
          let bytes = 0;
          const req = httpRequest(blobUrl(mirror, blob), { agent: false }, (res) => {
            res.on('data', (chunk: Buffer) => {
              hash.update(chunk);
              bytes += chunk.length;
              if (!stopped && bytes >= 1024 * 1024) {
                // Paused first, so the mirror stops reading the S3 body and radosgw has most of
                // the blob still to send when it stops.
                res.pause();
                process.kill(s3.rgwPid(), 'SIGSTOP');
                stopped = true;
                setTimeout(() => res.resume(), 300);
              }
            });
            const done = () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete && bytes === blob.size, sha256: `sha256:${hash.digest('hex')}`, ms: Math.round(performance.now() - started) });
            res.on('close', done);
            res.on('error', () => {});
          });
          req.on('error', () => {});
          req.end();
        });
        figures.push(`cached, radosgw hung mid-GET: broken after ${outcome.ms} ms (${outcome.bytes} of ${blob.size} bytes)`);
        assert.ok(outcome.ms < BOUND_MS, `the client waited ${outcome.ms} ms`);
        // RGW may have sent it all before it stopped (socket buffers): then the bytes are whole.
        if (outcome.complete) assert.equal(outcome.sha256, blob.digest);
        process.kill(s3.rgwPid(), 'SIGCONT');
        stopped = false;
        await assertClean(mirror, bucket, spoolOf(config), blob, socketsBefore);
      } finally {
        if (stopped) process.kill(s3.rgwPid(), 'SIGCONT');
        await mirror.stop();
      }
    });
  });

  describe('a fill whose parts went up to the bucket while it downloaded, and then failed', () => {
    // A 16 MiB blob in 5 MiB parts. Upstream drops the connection at 11 MiB; while the mirror
    // waits to resume (proxy.resume.backoff: 1 s), the first two parts go up. Then the resumed
    // body is corrupt, or every resume is refused.
    const size = 16 * 1024 * 1024;
    const blobGet = matchRequests('GET', /\/blobs\/sha256:/);
    const dropped = { kind: 'drop-after', bytes: 11 * 1024 * 1024, match: blobGet, times: 1 } as const;
    const cases: { name: string; faults: Parameters<UpstreamProxy['addFault']>[0][] }[] = [
      { name: 'the digest does not match (the resumed body has a byte flipped)', faults: [dropped, { kind: 'corrupt', atByte: 1024 * 1024, match: blobGet, times: 1 }] },
      { name: 'the upstream breaks mid-way and cannot resume', faults: [dropped, { kind: 'reset', match: blobGet }] },
    ];
    for (const { name, faults } of cases) {
      it(`${name}: the client's connection breaks, no object and no multipart upload is left, nothing leaks`, async () => {
        const bucket = await s3.createBucket('staged');
        const blob = await freshBlob(size / 1024 / 1024);
        const s3Only = s3Config(bucket, { chunksize: 5 * 1024 * 1024 });
        const config = { ...s3Only, proxy: { ...s3Only.proxy, resume: { retries: 2, backoff: '1s' } } };
        const mirror = await world.startMirror({ config });
        try {
          await fetch(`${mirror.url}/v2/`);
          const socketsBefore = socketCount(mirror.process.pid);
          s3proxy.reset();
          world.proxy.setFault(undefined);
          for (const fault of faults) world.proxy.addFault(fault);
          const outcome = await get(blobUrl(mirror, blob));
          assert.ok(outcome.ms < BOUND_MS, `the client waited ${outcome.ms} ms`);
          assert.ok(!outcome.complete && outcome.sha256 !== blob.digest, `the client got a broken connection, not a complete response (${outcome.bytes} bytes)`);
          const partsUp = s3proxy.requests.filter((r) => r.method === 'PUT' && /[?&]partNumber=/.test(r.path) && r.status === 200);
          assert.ok(partsUp.length >= 1, `parts went up before the fill failed: ${s3proxy.requests.map((r) => `${r.method} ${r.path} ${r.status}`).join(', ')}`);
          // The upload is aborted, and nothing was completed.
          assert.ok(await eventually(async () => (await uploadsLeft(s3, bucket)) === 0, 15_000), `multipart uploads left: ${await uploadsLeft(s3, bucket)}`);
          assert.equal(s3proxy.requests.filter((r) => r.method === 'POST' && /[?&]uploadId=/.test(r.path)).length, 0, 'no CompleteMultipartUpload was sent');
          assert.deepEqual(await bucketProblems(s3, bucket), { objects: 0, bad: [] }, 'no blob object in the bucket');
          world.proxy.setFault(undefined);
          await assertClean(mirror, bucket, spoolOf(config), blob, socketsBefore);
        } finally {
          world.proxy.setFault(undefined);
          await mirror.stop();
        }
      });
    }
  });

  describe('a follower on another instance waiting for the commit', () => {
    const faults: { name: string; fault: FaultAction }[] = [
      { name: 'unreachable during the leader’s commit', fault: { kind: 'reset' } },
      { name: '503 SlowDown on the leader’s upload', fault: { kind: 'status', status: 503, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>' } },
    ];
    for (const { name, fault } of faults) {
      it(`${name}: leader's and follower's clients get the verified blob within the bound, nothing partial is left`, async () => {
        const redis = await startRedis();
        const bucket = await s3.createBucket('fleet');
        const blob = await freshBlob(16);
        const member = () => {
          const config = s3Config(bucket, { chunksize: 5 * 1024 * 1024 });
          return { ...config, storage: { ...config.storage, cache: { blobdescriptor: 'redis' } }, redis: { addr: redis.addr, dialtimeout: '500ms', fleet: { lease: '2s' } } };
        };
        const configs = [member(), member()];
        const [leader, follower] = await Promise.all(configs.map((config) => world.startMirror({ config })));
        try {
          await Promise.all([fetch(`${leader.url}/v2/`), fetch(`${follower.url}/v2/`)]);
          const sockets = [socketCount(leader.process.pid), socketCount(follower.process.pid)];
          s3proxy.setFault({ ...fault, match: (method, p) => (method === 'PUT' || method === 'POST') && /\/blobs\/sha256\//.test(p) });
          const first = get(blobUrl(leader, blob));
          // The follower asks once the leader's fill holds the fleet lease.
          await new Promise((resolve) => setTimeout(resolve, 200));
          const second = get(blobUrl(follower, blob));
          const [a, b] = await Promise.all([first, second]);
          figures.push(`fleet, ${name}: leader's client ${a.ms} ms, follower's client ${b.ms} ms (16 MiB)`);
          assertVerified(a, blob, `${name}: the leader's client`);
          // The leader's commit failed for its store, not for the blob: the follower takes the download over.
          assertVerified(b, blob, `${name}: the follower's client`);
          s3proxy.setFault(undefined);
          await assertClean(leader, bucket, spoolOf(configs[0]), blob, sockets[0]);
          await assertClean(follower, bucket, spoolOf(configs[1]), blob, sockets[1]);
        } finally {
          s3proxy.setFault(undefined);
          await Promise.all([leader.stop(), follower.stop()]);
          await redis.close();
        }
      });
    }
  });
});
