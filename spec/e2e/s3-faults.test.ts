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
import { pushRandomBlob } from '../support/images.ts';
import { type RunningMirror } from '../support/mirror.ts';
import { sum, scrape } from '../support/prometheus.ts';
import { freePort, tempDir } from '../support/processes.ts';
import { bucketProblems, startS3, skipUnlessS3, uploadsLeft, type S3Server } from '../support/s3.ts';
import { startUpstreamProxy, type FaultAction, type UpstreamProxy } from '../support/upstream-proxy.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

/** Every outcome must come within this: verified bytes or a broken connection, never a hang. */
const BOUND_MS = 20_000;

interface Outcome {
  status: number;
  bytes: number;
  complete: boolean;
  sha256: string;
  ms: number;
}

/** A blob GET as a client makes it, hashed; `abortAfter` leaves after so many bytes. */
function get(url: string, options: { abortAfter?: number } = {}): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let status = 0;
    let settled = false;
    const done = (complete: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve({ status, bytes, complete, sha256: `sha256:${hash.digest('hex')}`, ms: Math.round(performance.now() - started) });
    };
    const req = httpRequest(url, { agent: false }, (res) => {
      status = res.statusCode ?? 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        if (options.abortAfter !== undefined && bytes >= options.abortAfter) {
          req.destroy();
          done(false);
        }
      });
      res.on('end', () => done(res.complete));
      res.on('close', () => done(res.complete && !res.errored && res.readableEnded));
      res.on('error', () => done(false));
    });
    req.on('error', () => done(false));
    const deadline = setTimeout(() => {
      req.destroy();
      done(false);
    }, BOUND_MS + 10_000);
    req.end();
  });
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
          spooldirectory: path.join(work.path, `spool-${++label}`),
          ...overrides,
        },
      },
    };
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
});
