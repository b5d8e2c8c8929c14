/**
 * The s3 storage driver against a real S3 server: Ceph's RADOS Gateway (spec/support/s3.ts),
 * one cluster for the file, one bucket for the file, a root directory per case. It passes the
 * conformance suite every driver passes, and what only S3 has: multipart uploads that become an
 * object only when complete, stale uploads a crash leaves, refused credentials, a missing
 * bucket, an endpoint that is down or hung, and what a warm read costs in requests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { stringify } from 'yaml';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command, UploadPartCommand, type S3Client } from '@aws-sdk/client-s3';
import { metricsRegistry } from '../../src/metrics/metrics.ts';
import { MeteredDriver } from '../../src/storage/driver/metered-driver.ts';
import { S3Driver, type S3DriverOptions } from '../../src/storage/driver/s3-driver.ts';
import { StorageDriverError } from '../../src/storage/driver/storage-driver.ts';
import { collect } from '../support/collect.ts';
import { describeDriverConformance, isFault, Pattern, sendRange } from '../support/driver-conformance.ts';
import { runPullmirror } from '../support/mirror.ts';
import { freePort } from '../support/processes.ts';
import { skipUnlessS3, startS3, type S3Server } from '../support/s3.ts';
import { eventually } from '../support/wait.ts';

const MiB = 1024 * 1024;
const skip = skipUnlessS3();

let s3: S3Server;
let bucket: string;
let admin: S3Client;
let spoolRoot: string;

/** A driver on the test bucket under its own root directory. */
function driverFor(options: Partial<S3DriverOptions> = {}): S3Driver {
  return new S3Driver({
    bucket,
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    rootDirectory: `/root-${randomBytes(4).toString('hex')}/registry/`,
    partSize: 5 * MiB,
    ...options,
  });
}

function freshSpool(): string {
  return mkdtempSync(path.join(spoolRoot, 'spool-'));
}

describe('s3 storage driver on RADOS Gateway', { skip }, () => {
  before(async () => {
    s3 = await startS3();
    process.stderr.write(`# ceph + radosgw started in ${s3.startMs} ms\n`);
    bucket = await s3.createBucket('driver');
    admin = s3.client();
    spoolRoot = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-s3-spool-'));
  });
  after(async () => {
    await s3?.close();
    if (spoolRoot) rmSync(spoolRoot, { recursive: true, force: true });
  });

  describeDriverConformance('s3', async () => {
    const driver = driverFor();
    const spoolDir = freshSpool();
    return {
      driver,
      spoolDir,
      openResources: async () => driver.socketsInUse(),
      teardown: async () => {
        await driver.close();
        rmSync(spoolDir, { recursive: true, force: true });
      },
    };
  });
  /** The keys of the bucket under a driver's root, listed by a client of its own. */
  const objectsUnder = async (prefix: string) => ((await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);
  const uploadsUnder = async (prefix: string) => ((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }))).Uploads ?? []).map((u) => u.Key);
  const rootOf = (driver: S3Driver) => (driver as unknown as { root: string }).root;

  it('a 64 MiB commit becomes an object only once complete: the bucket holds a multipart upload and no object meanwhile', async () => {
    const driver = driverFor();
    const spool = path.join(freshSpool(), 'blob');
    const content = new Pattern(64 * MiB, 3);
    await content.writeTo(spool);
    const key = 'blobs/sha256/ab/inflight';
    const full = `${rootOf(driver)}/${key}`;
    try {
      let done = false;
      const commit = driver.commitFile(spool, key).finally(() => (done = true));
      // Polled objects first, then uploads: an object seen at the key means its upload was
      // complete (gone) already then. Parts going in must never show as an object.
      let seenInFlight = 0;
      while (!done) {
        const objects = await objectsUnder(full);
        const uploads = await uploadsUnder(full);
        if (objects.length > 0) assert.deepEqual(uploads, [], 'an object at the key while its multipart upload still runs');
        else if (uploads.length > 0) seenInFlight++;
      }
      await commit;
      assert.ok(seenInFlight > 0, 'the test saw the commit in flight');
      assert.deepEqual(await objectsUnder(full), [full]);
      assert.deepEqual(await uploadsUnder(full), [], 'no upload left once complete');
      assert.equal((await driver.stat(key))?.size, 64 * MiB);
      assert.equal(existsSync(spool), false);
    } finally {
      await driver.close();
    }
  });

  it('a commit aborted mid-way (its signal) leaves neither an object nor a multipart upload, and the spool file is gone', async () => {
    const driver = driverFor();
    const spool = path.join(freshSpool(), 'blob');
    await new Pattern(64 * MiB, 4).writeTo(spool);
    const key = 'blobs/sha256/ab/aborted';
    const full = `${rootOf(driver)}/${key}`;
    try {
      const controller = new AbortController();
      const commit = driver.commitFile(spool, key, controller.signal);
      commit.catch(() => {});
      // Aborted once the upload exists and parts are going in.
      assert.ok(await eventually(async () => (await uploadsUnder(full)).length > 0, 30_000, 20), 'the multipart upload started');
      controller.abort();
      await assert.rejects(commit, (error: unknown) => error instanceof StorageDriverError && error.operation === 'commitFile');
      // Nothing left the moment commitFile returned: no eventually here.
      assert.deepEqual(await uploadsUnder(full), [], 'the multipart upload was aborted before commitFile returned');
      assert.deepEqual(await objectsUnder(full), []);
      assert.equal(existsSync(spool), false);
    } finally {
      await driver.close();
    }
  });

  it('a staged file goes up in parts while it is written, as a multipart upload and no object; commit completes it, cancel aborts it', async () => {
    const driver = driverFor();
    const spoolDir = freshSpool();
    const content = new Pattern(32 * MiB, 5);
    const [committedKey, cancelledKey] = ['blobs/sha256/ab/staged', 'blobs/sha256/ab/stagedcancel'];
    const full = (key: string) => `${rootOf(driver)}/${key}`;
    try {
      // Written to 16 MiB: three 5 MiB parts can go up; the object must not exist yet.
      for (const key of [committedKey, cancelledKey]) {
        const file = path.join(spoolDir, key.split('/').pop()!);
        const staged = driver.stageFile(file, key, content.size)!;
        await content.writeGrowing(file, (bytes) => staged.grown(bytes), { upTo: 16 * MiB });
        assert.ok(await eventually(async () => (await uploadsUnder(full(key))).length === 1, 15_000, 20), `${key}: the multipart upload began while the file was written`);
        assert.deepEqual(await objectsUnder(full(key)), [], `${key}: no object while the upload runs`);
        if (key === cancelledKey) {
          await staged.cancel();
          // The abort is sent as cancel returns; its answer may come a moment after.
          assert.ok(await eventually(async () => (await uploadsUnder(full(key))).length === 0, 15_000, 20), `${key}: the upload is aborted`);
          assert.deepEqual(await objectsUnder(full(key)), [], `${key}: no object after a cancel`);
          continue;
        }
        // The rest of the file, then the commit.
        await content.writeGrowing(file, (bytes) => staged.grown(bytes), { from: 16 * MiB });
        await staged.commit();
        assert.deepEqual(await uploadsUnder(full(key)), [], 'no upload left once complete');
        assert.equal((await driver.stat(key))?.size, content.size);
        assert.equal((await sendRange(driver, key, 0, content.size - 1)).digest(), content.sha256(0, content.size - 1), 'the object is the file, byte for byte');
        assert.equal(existsSync(file), false);
      }
    } finally {
      await driver.close();
      rmSync(spoolDir, { recursive: true, force: true });
    }
  });

  it('cleanup aborts multipart uploads under its root older than asked, and only those', async () => {
    const driver = driverFor();
    const other = driverFor();
    try {
      // What a crashed commit leaves: an upload with a part, never completed.
      const crashed = async (root: string, key: string) => {
        const { UploadId } = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${root}/${key}` }));
        await admin.send(new UploadPartCommand({ Bucket: bucket, Key: `${root}/${key}`, UploadId, PartNumber: 1, Body: randomBytes(5 * MiB) }));
      };
      await crashed(rootOf(driver), 'blobs/sha256/cd/crashed');
      await crashed(rootOf(other), 'blobs/sha256/cd/elsewhere');
      assert.equal(await driver.cleanup(60 * 60_000), 0, 'an upload younger than olderThanMs is left alone (it may be a commit running now)');
      assert.deepEqual(await uploadsUnder(rootOf(driver)), [`${rootOf(driver)}/blobs/sha256/cd/crashed`]);
      // S3 keeps whole seconds: one second later, it is older than 0 ms.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      assert.equal(await driver.cleanup(0), 1);
      assert.deepEqual(await uploadsUnder(rootOf(driver)), []);
      assert.deepEqual(await uploadsUnder(rootOf(other)), [`${rootOf(other)}/blobs/sha256/cd/elsewhere`], "another root's upload stays");
      assert.equal(await other.cleanup(0), 1);
    } finally {
      await driver.close();
      await other.close();
    }
  });

  it("wrong keys are 'denied', and no message or inspected error holds the secret", async () => {
    const secret = `wrong-${randomBytes(16).toString('hex')}`;
    const cases = [
      { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: secret }, name: 'SignatureDoesNotMatch' },
      { credentials: { accessKeyId: 'NOSUCHKEY0000000', secretAccessKey: secret }, name: 'InvalidAccessKeyId' },
    ];
    for (const { credentials, name } of cases) {
      const driver = driverFor({ credentials });
      try {
        for (const [label, call] of [
          ['probe', () => driver.probe()],
          ['getContent', () => driver.getContent('a/b')],
          ['putContent', () => driver.putContent('a/b', 'x')],
          ['open', () => driver.open('a/b')],
        ] as const) {
          const error = await (call as () => Promise<unknown>)().then(() => undefined, (e: unknown) => e);
          assert.ok(error instanceof StorageDriverError, `${label}: a StorageDriverError`);
          assert.equal(error.fault, 'denied', `${label}: ${error.message}`);
          assert.match(error.message, new RegExp(`${name} \\(HTTP 403\\)`), label);
          assert.ok(!inspect(error, { depth: 20, showHidden: true }).includes(secret), `${label}: the secret key shows in the inspected error`);
          assert.ok(!JSON.stringify(error).includes(secret));
        }
      } finally {
        await driver.close();
      }
    }
  });

  it("a missing bucket is 'missing-store'", async () => {
    const driver = driverFor({ bucket: `missing-${randomBytes(4).toString('hex')}` });
    try {
      await assert.rejects(driver.probe(), isFault('missing-store'));
      await assert.rejects(driver.getContent('a/b'), isFault('missing-store'));
      await assert.rejects(driver.putContent('a/b', 'x'), isFault('missing-store'));
      await assert.rejects(collect(driver.walk('')), isFault('missing-store'));
    } finally {
      await driver.close();
    }
  });

  it("an endpoint that refuses connections, or accepts and never answers, is 'unavailable' within the configured deadline", async () => {
    // Nothing listens on a port just freed.
    const closedPort = await freePort();
    // A server that takes connections and never answers: a black-holing load balancer in front
    // of the store (RGW itself hung is the next case).
    const held: Socket[] = [];
    const hung: Server = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const hungPort = (hung.address() as { port: number }).port;
    try {
      for (const port of [closedPort, hungPort]) {
        const driver = driverFor({ endpoint: `http://127.0.0.1:${port}`, connectTimeoutMs: 500, requestTimeoutMs: 500, maxAttempts: 2 });
        try {
          const started = performance.now();
          const error = await driver.getContent('a/b').then(() => undefined, (e: unknown) => e);
          const took = performance.now() - started;
          assert.ok(error instanceof StorageDriverError && error.fault === 'unavailable', `port ${port}: ${String(error)}`);
          // Two attempts of 500 ms and the SDK's backoff between them: far from unbounded.
          assert.ok(took < 10_000, `port ${port}: ${took} ms`);
          await assert.rejects(driver.probe(), isFault('unavailable'));
        } finally {
          await driver.close();
        }
      }
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => hung.close(resolve));
    }
  });

  it("radosgw hung (SIGSTOP): a body streaming fails 'unavailable' within the idle timeout, a new request within the request timeout", async () => {
    const driver = driverFor({ requestTimeoutMs: 1_000, idleTimeoutMs: 1_500, maxAttempts: 2 });
    const key = 'blobs/sha256/ee/hung';
    const spool = path.join(freshSpool(), 'blob');
    await new Pattern(32 * MiB, 9).writeTo(spool);
    await driver.commitFile(spool, key);
    const opened = await driver.open(key);
    assert.ok(opened);
    const rgw = s3.rgwPid();
    process.kill(rgw, 'SIGSTOP');
    try {
      let received = 0;
      const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => ((received += chunk.length), callback()) });
      const started = performance.now();
      const error = await opened.send(sink, { start: 0, end: 32 * MiB - 1 }).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof StorageDriverError && error.fault === 'unavailable' && error.operation === 'send', String(error));
      assert.ok(received < 32 * MiB, 'the body stopped short');
      assert.ok(performance.now() - started < 15_000, `${Math.round(performance.now() - started)} ms`);
      const probing = performance.now();
      await assert.rejects(driver.probe(), isFault('unavailable'));
      assert.ok(performance.now() - probing < 15_000, `${Math.round(performance.now() - probing)} ms`);
    } finally {
      process.kill(rgw, 'SIGCONT');
      opened.release();
      await driver.close();
    }
    // Back: the store answers again.
    const again = driverFor();
    try {
      await again.probe();
    } finally {
      await again.close();
    }
  });

  it("radosgw hung (SIGSTOP): a read a client waits on fails 'unavailable' at readTimeoutMs, all its attempts together, and lets its connection go", async () => {
    // Each attempt may take 4 s; three of them would be 12 s and more.
    const driver = driverFor({ requestTimeoutMs: 4_000, maxAttempts: 3, readTimeoutMs: 1_000 });
    const key = 'blobs/sha256/ee/readdeadline';
    await driver.putContent(key, 'x'.repeat(100));
    const reads: [string, () => Promise<unknown>][] = [
      ['getContent', () => driver.getContent(key)],
      ['stat', () => driver.stat(key)],
      ['open', () => driver.open(key)],
      ['children', () => collect(driver.children('blobs/sha256'))],
    ];
    const rgw = s3.rgwPid();
    process.kill(rgw, 'SIGSTOP');
    try {
      for (const [name, read] of reads) {
        const started = performance.now();
        const error = await read().then(() => undefined, (e: unknown) => e);
        const took = performance.now() - started;
        assert.ok(error instanceof StorageDriverError && error.fault === 'unavailable' && /no answer within 1000 ms \(storage\.s3\.readtimeout\)/.test(error.message), `${name}: ${String(error)}`);
        assert.ok(took < 4_000, `${name}: ${Math.round(took)} ms, not one attempt's deadline`);
      }
      assert.ok(await eventually(() => driver.socketsInUse() === 0, 5_000), `connections still held: ${driver.socketsInUse()}`);
    } finally {
      process.kill(rgw, 'SIGCONT');
    }
    try {
      assert.equal((await driver.getContent(key))?.toString(), 'x'.repeat(100), 'back once radosgw is');
    } finally {
      await driver.close();
    }
  });

  it('redirectURL is a presigned GET a client without credentials can fetch, valid for the object only', async () => {
    const driver = driverFor();
    try {
      const bytes = randomBytes(100_000);
      await driver.putContent('blobs/sha256/12/redirect', bytes);
      const url = await driver.redirectURL('blobs/sha256/12/redirect');
      assert.ok(url !== undefined && url.startsWith(`${s3.endpoint}/${bucket}/`), url);
      assert.ok(!url.includes(s3.secretAccessKey));
      const response = await fetch(url);
      assert.equal(response.status, 200);
      assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
      // The signature covers the key: another key with it is refused.
      const other = await fetch(url.replace('/redirect?', '/other?'));
      await other.arrayBuffer();
      assert.equal(other.status, 403);
      await assert.rejects(driver.redirectURL('../x'), isFault('invalid-key'));
    } finally {
      await driver.close();
    }
  });

  it('a warm open and send costs one GET and nothing else (RGW\'s own log and pullmirror_s3_requests_total agree)', async () => {
    const driver = driverFor();
    const metered = new MeteredDriver(driver);
    const key = 'blobs/sha256/ef/warm';
    const full = `${rootOf(driver)}/${key}`;
    try {
      const bytes = randomBytes(2 * MiB);
      await driver.putContent(key, bytes);
      const logged = () => s3.requestLog().filter((request) => request.path.startsWith(`/${bucket}/${full}`) || request.path.startsWith(`/${bucket}?`) || request.path === `/${bucket}`);
      assert.ok(await eventually(() => logged().some((r) => r.method === 'PUT'), 10_000), 'RGW logged the PutObject');
      const before = logged().length;
      const requestsBefore = await s3RequestCounts();
      for (const knownSize of [bytes.length, undefined]) {
        const opened = await metered.open(key, knownSize);
        assert.ok(opened);
        assert.equal(opened.size, bytes.length);
        const chunks: Buffer[] = [];
        await opened.send(new Writable({ write: (chunk: Buffer, _e, cb) => (chunks.push(chunk), cb()) }), { start: 0, end: bytes.length - 1 });
        opened.release();
        assert.deepEqual(Buffer.concat(chunks), bytes);
      }
      // The log line is written once the response is done: wait for it, then for nothing more.
      assert.ok(await eventually(() => logged().length >= before + 2, 10_000), 'RGW logged the GETs');
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual(logged().slice(before).map((r) => `${r.method} ${r.status}`), ['GET 200', 'GET 200'], 'two warm reads: two GETs, no HEAD, no LIST');
      const requestsAfter = await s3RequestCounts();
      assert.deepEqual(diff(requestsBefore, requestsAfter), { GetObject: 2 });

      // The metered driver counted them, and counts a fault by its name.
      const operations = await operationCounts();
      assert.ok((operations['s3 open ok'] ?? 0) >= 2 && (operations['s3 send ok'] ?? 0) >= 2, JSON.stringify(operations));
      const missing = new MeteredDriver(driverFor({ bucket: `missing-${randomBytes(4).toString('hex')}` }));
      await assert.rejects(missing.getContent('a/b'), isFault('missing-store'));
      await missing.close();
      assert.equal((await operationCounts())['s3 getContent missing-store'], (operations['s3 getContent missing-store'] ?? 0) + 1);
    } finally {
      await driver.close();
    }
  });
});

describe('config check with storage.s3 on RADOS Gateway', { skip }, () => {
  let server: S3Server;
  let configBucket: string;
  let dir: string;
  before(async () => {
    server = await startS3();
    configBucket = await server.createBucket('config');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-s3-config-'));
  });
  after(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const configFile = (name: string, s3Section: Record<string, unknown>) => {
    const file = path.join(dir, `${name}.yml`);
    writeFileSync(file, stringify({ storage: { s3: { region: 'us-east-1', forcepathstyle: true, regionendpoint: server.endpoint, ...s3Section } } }));
    return file;
  };

  it('passes a reachable bucket with accepted keys; the printed config reads back the same and never shows the secret key', async () => {
    const keyFile = path.join(dir, 'secret-key');
    writeFileSync(keyFile, `${server.secretAccessKey}\n`);
    const file = configFile('good', { bucket: configBucket, accesskey: server.accessKeyId, secretkeyfile: keyFile, rootdirectory: '/registry', v4auth: true });
    const first = await runPullmirror(['config', 'check', file]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /warning: storage\.s3\.v4auth is ignored by pullmirror/);
    assert.ok(!first.stdout.includes(server.secretAccessKey) && !first.stderr.includes(server.secretAccessKey));
    assert.match(first.stdout, /chunksize: 10MiB/);
    const printed = path.join(dir, 'printed.yml');
    writeFileSync(printed, first.stdout);
    const again = await runPullmirror(['config', 'check', printed]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, first.stdout);

    // From REGISTRY_STORAGE_S3_* alone; and without accesskey, the SDK's default chain (AWS_*).
    const fromEnv = await runPullmirror(['config', 'check'], {
      env: {
        REGISTRY_STORAGE_S3_BUCKET: configBucket,
        REGISTRY_STORAGE_S3_REGION: 'us-east-1',
        REGISTRY_STORAGE_S3_REGIONENDPOINT: server.endpoint,
        REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
        REGISTRY_STORAGE_S3_ACCESSKEY: server.accessKeyId,
        REGISTRY_STORAGE_S3_SECRETKEY: server.secretAccessKey,
      },
    });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.match(fromEnv.stdout, /secretkey: "\*{5}"/);
    assert.ok(!fromEnv.stdout.includes(server.secretAccessKey));
    const chain = await runPullmirror(['config', 'check', configFile('chain', { bucket: configBucket })], {
      env: { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey },
    });
    assert.equal(chain.code, 0, chain.stderr);
  });

  it('names the key at fault in one line, exit status 2: access key, secret key, bucket, endpoint', async () => {
    const wrongSecret = `wrong-${randomBytes(12).toString('hex')}`;
    const closedPort = await freePort();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['accesskey', { bucket: configBucket, accesskey: 'NOSUCHACCESSKEY1', secretkey: wrongSecret }, /^pullmirror: storage\.s3\.accesskey: refused by the server \(InvalidAccessKeyId, HTTP 403\)$/],
      ['secretkey', { bucket: configBucket, accesskey: server.accessKeyId, secretkey: wrongSecret }, /^pullmirror: storage\.s3\.secretkey: refused by the server: the signature does not match \(SignatureDoesNotMatch, HTTP 403\)$/],
      ['bucket', { bucket: 'no-such-bucket', accesskey: server.accessKeyId, secretkey: server.secretAccessKey }, /^pullmirror: storage\.s3\.bucket: no bucket "no-such-bucket" at http:\/\/127\.0\.0\.1:\d+ \(NoSuchBucket, HTTP 404\)$/],
      ['endpoint', { bucket: configBucket, accesskey: server.accessKeyId, secretkey: server.secretAccessKey, regionendpoint: `http://127.0.0.1:${closedPort}` }, /^pullmirror: storage\.s3\.regionendpoint: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/],
    ];
    for (const [name, section, line] of cases) {
      const { code, stdout, stderr } = await runPullmirror(['config', 'check', configFile(name, section)]);
      assert.equal(code, 2, `${name}: ${stderr}`);
      assert.equal(stdout, '', `${name}: nothing printed`);
      assert.equal(stderr.trim().split('\n').length, 1, `${name}: one line: ${stderr}`);
      assert.match(stderr.trim(), line, name);
      assert.ok(!stderr.includes(wrongSecret) && !stderr.includes(server.secretAccessKey), `${name}: no secret`);
    }
  });
});

/** pullmirror_s3_requests_total by request, from the registry /metrics serves. */
async function s3RequestCounts(): Promise<Record<string, number>> {
  const metric = await metricsRegistry.getSingleMetric('pullmirror_s3_requests_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [String(v.labels.request), v.value]));
}

/** pullmirror_storage_operations_total as 'driver operation result' → count. */
async function operationCounts(): Promise<Record<string, number>> {
  const metric = await metricsRegistry.getSingleMetric('pullmirror_storage_operations_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [`${v.labels.driver} ${v.labels.operation} ${v.labels.result}`, v.value]));
}

function diff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(after)) if (value !== (before[name] ?? 0)) out[name] = value - (before[name] ?? 0);
  return out;
}
