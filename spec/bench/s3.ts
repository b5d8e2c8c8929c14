/**
 * Bench case `s3` (issue 25, item 8): pullmirror with its store on S3 next to distribution 2.8
 * (proxy mode, Debian's docker-registry, its `s3` driver) on the same RADOS Gateway, each in a
 * bucket of its own, on the same local upstream (token server + docker-registry), one server at
 * a time, BENCH_RUNS runs (default 3), medians and ranges in one table:
 * - cold, 1 client (blob A): MiB/s;
 * - cold, 16 clients (blob B): MiB/s, wall s, upstream GETs carrying the blob;
 * - S3 requests per warm pull of an image (manifest by tag, config, one BLOB_MIB layer: blob B),
 *   counted from RGW's own access log per bucket and split by method (a GET of the bucket
 *   itself is a LIST): the goal is about one GET per object, not HEAD + GET + LIST;
 * - warm, 1 and 16 clients (blob B): MiB/s (wrk, out of process, as in `hit`);
 * - pullmirror's peak RSS over the run.
 * Every cold body and every warm-pull body is hashed and checked against its digest.
 *
 * Each run starts a fresh Ceph cluster (spec/support/s3.ts): the OSD's memstore keeps objects in
 * RAM (about 1.7× the bytes), and RGW frees deleted objects' tails only later, so a fresh one per
 * run bounds the memory. What a run stores: pullmirror 2 big blobs; distribution 2, each written
 * twice (its upload lands under _uploads and is copied to the blob's path, the upload's copy is
 * freed only by RGW's gc). With the small objects and slack the memstore is sized
 * 12 × BLOB_MIB + 512 MiB (3.5 GiB for 256 MiB blobs).
 *
 * `npm run bench -- s3`; BENCH_RUNS=N, BENCH_BLOB_MIB=N for short runs while developing;
 * BENCH_S3_READCACHE=1 turns pullmirror's storage.s3.readcache on (4GiB): warm blobs then come
 * from a local copy after their first warm read (the S3 request count per warm pull shows it).
 * Needs docker-registry and Ceph (Debian: radosgw ceph-mon ceph-osd ceph-common); wrk for the
 * warm clients (else node:http clients in this process, said in the note).
 */
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { makeImageConfig, MT, pushBlob, pushRandomBlob, registryFetch, sha256Digest, type Layer } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { findBinary, tempDir } from '../support/processes.ts';
import { accessLogCounter } from '../support/access-log.ts';
import { startDistributionProxy, startUpstreamRegistry } from '../support/registry.ts';
import { skipUnlessS3, startS3, type S3Server } from '../support/s3.ts';
import { startTokenServer } from '../support/token-server.ts';
import { cell, cold, get, rssWatch, spread, warm, type Cold, type Flow, type Served } from './hit.ts';
import { BLOB_MIB, target, writeResults, type Target } from './measure.ts';

/** storage.s3.readcache when BENCH_S3_READCACHE=1 (off otherwise, as by default). */
function readCache(): { readcache?: { size: string } } {
  return process.env.BENCH_S3_READCACHE === '1' ? { readcache: { size: '4GiB' } } : {};
}

const REPO = 'library/bench-s3';
const TAG = 'latest';
const RUNS = (() => {
  const n = Number(process.env.BENCH_RUNS ?? 3);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_RUNS must be a positive integer, got ${process.env.BENCH_RUNS}`);
  return n;
})();
const CONCURRENCY = 16;
const WARM_1_SECONDS = 3;
const WARM_16_SECONDS = 4;
/** Warm pulls of the image counted per run; the figure is their mean. */
const COUNTED_PULLS = 3;
/** The memstore's size: see the header. */
const MEM_MIB = Math.ceil(12 * BLOB_MIB) + 512;
/** How long a server may take to have a blob in its bucket after its clients are done. */
const STORED_TIMEOUT_MS = 120_000;
const RSS_TARGET_BYTES = 150e6;
const MANIFEST_ACCEPT = [MT.dockerManifest, MT.dockerList, MT.ociManifest, MT.ociIndex].join(', ');

type Log = (message: string) => void;
type OnCleanup = (what: string, run: () => Promise<void> | void) => void;
type ServerName = 'pullmirror' | 'distribution';
const SERVERS: ServerName[] = ['pullmirror', 'distribution'];

/** S3 requests of one warm image pull, by kind: GET (of an object), LIST (GET of the bucket), HEAD, PUT, POST, DELETE. */
type S3Counts = Record<string, number>;

interface RunFigures {
  cold1: Record<ServerName, Cold>;
  cold16: Record<ServerName, Cold>;
  warm1: Record<ServerName, Flow>;
  warm16: Record<ServerName, Flow>;
  /** Per warm pull of the image: the mean over COUNTED_PULLS pulls, by kind. */
  s3PerPull: Record<ServerName, S3Counts>;
  /** The counted pulls' S3 requests as RGW logged them ("GET /bucket/key?query 200"), for the JSON: which keys cost what. */
  s3Requests: Record<ServerName, string[]>;
  pullError: Partial<Record<ServerName, string>>;
  storeErrors: string[];
  peakRss: number;
}

interface BenchImage {
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  layerSize: number;
}

/** A docker schema2 image whose one layer is the big blob already pushed (its config and manifest small). */
async function pushImageOf(registryUrl: string, layer: { digest: string; size: number }): Promise<BenchImage> {
  const asLayer: Layer = { bytes: Buffer.alloc(0), digest: layer.digest, size: layer.size, diffId: layer.digest };
  const config = await pushBlob(registryUrl, PUSHER, REPO, makeImageConfig([asLayer], { os: 'linux', architecture: 'amd64' }, { bench: 's3' }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.dockerManifest,
      config: { mediaType: MT.dockerConfig, size: config.size, digest: config.digest },
      layers: [{ mediaType: MT.dockerLayer, size: layer.size, digest: layer.digest }],
    }),
  );
  const res = await registryFetch(registryUrl, PUSHER, REPO, `/v2/${REPO}/manifests/${TAG}`, { method: 'PUT', headers: { 'content-type': MT.dockerManifest }, body: manifest as Uint8Array<ArrayBuffer> });
  if (res.status !== 201) throw new Error(`PUT manifest ${REPO}:${TAG}: HTTP ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
  return { manifestDigest: sha256Digest(manifest), configDigest: config.digest, layerDigest: layer.digest, layerSize: layer.size };
}

/** Where each server keeps a verified blob in its bucket (pullmirror: src/storage/paths.ts; distribution: its v2 layout). */
function blobKey(server: ServerName, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return server === 'pullmirror' ? `blobs/${algorithm}/${hex.slice(0, 2)}/${hex}` : `docker/registry/v2/blobs/${algorithm}/${hex.slice(0, 2)}/${hex}/data`;
}

/** Polls HeadObject until `key` is in `bucket` with `size` bytes (distribution stores in the background); false after the deadline. */
async function inBucket(client: S3Client, bucket: string, key: string, size: number): Promise<boolean> {
  const deadline = performance.now() + STORED_TIMEOUT_MS;
  while (performance.now() < deadline) {
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      if (head.ContentLength === size) return true;
    } catch {
      // not there yet
    }
    await sleep(200);
  }
  return false;
}

/** RGW's access-log lines for `bucket` (path style), from index `from` on, by kind. */
function s3Counts(s3: S3Server, bucket: string, from: number): { counts: S3Counts; lines: string[] } {
  const counts: S3Counts = {};
  const lines: string[] = [];
  for (const r of s3.requestLog().slice(from)) {
    const [pathOnly] = r.path.split('?');
    if (pathOnly !== `/${bucket}` && pathOnly !== `/${bucket}/` && !pathOnly.startsWith(`/${bucket}/`)) continue;
    const onBucket = pathOnly === `/${bucket}` || pathOnly === `/${bucket}/`;
    const kind = r.method === 'GET' && onBucket ? 'LIST' : r.method;
    counts[kind] = (counts[kind] ?? 0) + 1;
    lines.push(`${r.method} ${r.path} ${r.status}`);
  }
  return { counts, lines };
}

/** Waits until RGW's log stopped growing for 1 s (its log is written asynchronously; max 15 s). */
async function settledLog(s3: S3Server): Promise<void> {
  const deadline = performance.now() + 15_000;
  let last = s3.requestLog().length;
  let stableSince = performance.now();
  while (performance.now() < deadline) {
    await sleep(200);
    const now = s3.requestLog().length;
    if (now !== last) {
      last = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 1000) return;
  }
}

/** One image pull as a client makes it: the manifest by tag, then the config and the layer; every body checked. */
async function pullImage(base: string, image: BenchImage): Promise<string | undefined> {
  const manifest = await get(`${base}/v2/${REPO}/manifests/${TAG}`, { hash: true, headers: { accept: MANIFEST_ACCEPT } });
  if (manifest.status !== 200 || manifest.sha256 !== image.manifestDigest) return `manifest ${REPO}:${TAG}: HTTP ${manifest.status} ${manifest.error ?? ''} ${manifest.sha256}`;
  for (const digest of [image.configDigest, image.layerDigest]) {
    const blob = await get(`${base}/v2/${REPO}/blobs/${digest}`, { hash: true });
    if (blob.status !== 200 || blob.sha256 !== digest) return `blob ${digest}: HTTP ${blob.status} ${blob.error ?? ''} (${blob.bytes} bytes, ${blob.sha256})`;
  }
  return undefined;
}

export async function benchS3Case(log: Log, onCleanup: OnCleanup): Promise<number> {
  const s3Missing = skipUnlessS3();
  if (!findBinary('docker-registry') || s3Missing) {
    log(`ERROR: s3 needs docker-registry and Ceph (Debian: apt-get install docker-registry radosgw ceph-mon ceph-osd ceph-common)${s3Missing ? `: ${s3Missing}` : ''}`);
    return 1;
  }
  const started = performance.now();
  const loadBefore = os.loadavg();
  const work = tempDir('pullmirror-bench-s3');
  onCleanup('s3 temp dir', () => work.cleanup());
  const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
  onCleanup('token server', () => tokens.close());
  const registry = await startUpstreamRegistry({ tokenServer: tokens });
  onCleanup(`upstream docker-registry pid ${registry.pid}`, () => registry.stop());

  log(`pushing two ${BLOB_MIB} MiB blobs and an image whose layer is the second`);
  const blobA = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-s3-a' });
  const blobB = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-s3-b' });
  const image = await pushImageOf(registry.url, blobB);
  const upstream = accessLogCounter(registry.logFile);
  const blobUrl = (base: string, digest: string) => `${base}/v2/${REPO}/blobs/${digest}`;

  const runs: RunFigures[] = [];
  for (let run = 1; run <= RUNS; run++) {
    log(`run ${run}/${RUNS}: a fresh RADOS Gateway (memstore ${MEM_MIB} MiB), a bucket per server`);
    const s3 = await startS3({ memMiB: MEM_MIB });
    onCleanup(`RADOS Gateway (run ${run})`, () => s3.close());
    const admin = s3.client();
    const buckets: Record<ServerName, string> = { pullmirror: await s3.createBucket('pullmirror'), distribution: await s3.createBucket('distribution') };
    const mirror = await startMirror({
      remoteurl: registry.url,
      ...MIRROR_ACCOUNT,
      bundle: true,
      config: {
        storage: {
          s3: { bucket: buckets.pullmirror, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: path.join(work.path, `spool-${run}`), ...readCache() },
        },
      },
    });
    onCleanup(`pullmirror pid ${mirror.process.pid}`, () => mirror.stop());
    // distribution 2.8.2 has no `forcepathstyle` key (added in v3; the binary does not know the
    // word): it goes path style because `regionendpoint` is set. The key stays, as a v3 needs it.
    const dist = await startDistributionProxy({
      remoteurl: registry.url,
      ...MIRROR_ACCOUNT,
      storage: {
        s3: { bucket: buckets.distribution, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, secure: false, v4auth: true },
        redirect: { disable: true },
      },
    });
    onCleanup(`distribution pid ${dist.pid}`, () => dist.stop());
    const rss = rssWatch(mirror.process.pid);
    const bases: Record<ServerName, { url: string; pid: number }> = { pullmirror: { url: mirror.url, pid: mirror.process.pid }, distribution: { url: dist.url, pid: dist.pid } };
    const served = (name: ServerName, digest: string): Served => ({ url: blobUrl(bases[name].url, digest), pid: bases[name].pid });
    const storeErrors: string[] = [];
    const stored = (name: ServerName, blob: { digest: string; size: number }) => async () => {
      if (!(await inBucket(admin, buckets[name], blobKey(name, blob.digest), blob.size))) storeErrors.push(`${name}: ${blob.digest} not in its bucket ${STORED_TIMEOUT_MS / 1000} s after the clients were served`);
    };

    const cold1 = {} as Record<ServerName, Cold>;
    const cold16 = {} as Record<ServerName, Cold>;
    const warm1 = {} as Record<ServerName, Flow>;
    const warm16 = {} as Record<ServerName, Flow>;
    const s3PerPull = {} as Record<ServerName, S3Counts>;
    const s3Requests = {} as Record<ServerName, string[]>;
    const pullError: Partial<Record<ServerName, string>> = {};
    for (const name of SERVERS) {
      log(`run ${run}: ${name}: cold, 1 client, then ${CONCURRENCY} clients`);
      cold1[name] = await cold(served(name, blobA.digest), upstream, stored(name, blobA), blobA.digest, blobA.size, 1);
      cold16[name] = await cold(served(name, blobB.digest), upstream, stored(name, blobB), blobB.digest, blobB.size, CONCURRENCY);

      log(`run ${run}: ${name}: S3 requests per warm pull of the image`);
      // The first pull fetches the manifest and config (the layer is blob B, warm already); then
      // the server's background stores settle before the counted pulls.
      pullError[name] = await pullImage(bases[name].url, image);
      await sleep(2000);
      await settledLog(s3);
      const from = s3.requestLog().length;
      for (let pull = 0; pull < COUNTED_PULLS && !pullError[name]; pull++) pullError[name] = await pullImage(bases[name].url, image);
      await settledLog(s3);
      const { counts, lines } = s3Counts(s3, buckets[name], from);
      s3Requests[name] = lines;
      s3PerPull[name] = Object.fromEntries(Object.entries(counts).map(([kind, n]) => [kind, n / COUNTED_PULLS]));

      log(`run ${run}: ${name}: warm, 1 and ${CONCURRENCY} clients`);
      warm1[name] = await warm(served(name, blobB.digest), blobB.size, 1, WARM_1_SECONDS);
      warm16[name] = await warm(served(name, blobB.digest), blobB.size, CONCURRENCY, WARM_16_SECONDS);
    }
    const peakRss = await rss.stop();
    await mirror.stop();
    await dist.stop();
    await s3.close();
    const figures: RunFigures = { cold1, cold16, warm1, warm16, s3PerPull, s3Requests, pullError, storeErrors, peakRss };
    runs.push(figures);
    log(
      `run ${run}: warm 1 MiB/s pm ${warm1.pullmirror.mibps?.toFixed(0)} ds ${warm1.distribution.mibps?.toFixed(0)}; cold 1 pm ${cold1.pullmirror.mibps?.toFixed(0)} ds ${cold1.distribution.mibps?.toFixed(0)}; ` +
        `S3 requests per pull pm ${countsText(s3PerPull.pullmirror)}, ds ${countsText(s3PerPull.distribution)}; peak RSS ${(peakRss / 1e6).toFixed(0)} MB`,
    );
  }

  // --- the table: median (min–max) over the runs
  const of = (pick: (r: RunFigures) => number | undefined) => runs.map(pick);
  const ratios = (a: (r: RunFigures) => number | undefined, b: (r: RunFigures) => number | undefined) => runs.map((r) => (a(r) ?? NaN) / (b(r) ?? NaN));
  const side = (label: string, pick: (r: RunFigures, name: ServerName) => number | undefined, digits: number, withRatio = true): [string, string, string, string] => [
    label,
    cell(of((r) => pick(r, 'distribution')), digits),
    cell(of((r) => pick(r, 'pullmirror')), digits),
    withRatio ? cell(ratios((r) => pick(r, 'pullmirror'), (r) => pick(r, 'distribution')), 2) : '',
  ];
  const kinds = [...new Set(runs.flatMap((r) => SERVERS.flatMap((name) => Object.keys(r.s3PerPull[name]))))].sort();
  const total = (counts: S3Counts) => Object.values(counts).reduce((a, b) => a + b, 0);
  const lines: Array<[string, string, string, string]> = [
    ['figure', 'distribution', 'pullmirror', 'pullmirror / distribution'],
    side('warm, 1 client, MiB/s', (r, n) => r.warm1[n].mibps, 0),
    side(`warm, ${CONCURRENCY} clients, MiB/s`, (r, n) => r.warm16[n].mibps, 0),
    side('cold, 1 client, MiB/s', (r, n) => r.cold1[n].mibps, 0),
    side(`cold, ${CONCURRENCY} clients, MiB/s`, (r, n) => r.cold16[n].mibps, 0),
    side(`cold, ${CONCURRENCY} clients, wall s`, (r, n) => r.cold16[n].wallSeconds, 2),
    side('cold, 1 client, upstream GETs', (r, n) => r.cold1[n].upstreamGets, 0, false),
    side(`cold, ${CONCURRENCY} clients, upstream GETs`, (r, n) => r.cold16[n].upstreamGets, 0, false),
    side('S3 requests per warm pull (manifest + config + layer)', (r, n) => total(r.s3PerPull[n]), 1),
    ...kinds.map((kind) => side(`  of which ${kind}`, (r, n) => r.s3PerPull[n][kind] ?? 0, 1, false)),
    ['peak RSS, MB', '', cell(of((r) => r.peakRss / 1e6), 0), ''],
  ];
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const text = lines.map((l, n) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + (n === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : '')).join('\n');
  const markdown = [`| ${lines[0].join(' | ')} |`, `|---|${lines[0].slice(1).map(() => '---:').join('|')}|`, ...lines.slice(1).map((l) => `| ${l.join(' | ')} |`)].join('\n');

  const targets: Target[] = [];
  const atLeast = (name: string, values: number[], factor: number) => {
    const m = spread(values).median;
    targets.push(target(name, m === undefined ? undefined : m >= factor, `median ${m?.toFixed(2)}× (need ≥ ${factor}×), runs ${values.map((v) => v.toFixed(2)).join(', ')}`));
  };
  atLeast('warm 1 client ≥ 1.0× distribution', ratios((r) => r.warm1.pullmirror.mibps, (r) => r.warm1.distribution.mibps), 1);
  atLeast(`warm ${CONCURRENCY} clients ≥ 1.0× distribution`, ratios((r) => r.warm16.pullmirror.mibps, (r) => r.warm16.distribution.mibps), 1);
  atLeast('cold 1 client ≥ 1.0× distribution', ratios((r) => r.cold1.pullmirror.mibps, (r) => r.cold1.distribution.mibps), 1);
  atLeast(`cold ${CONCURRENCY} clients ≥ 1.0× distribution`, ratios((r) => r.cold16.pullmirror.mibps, (r) => r.cold16.distribution.mibps), 1);
  const gets = runs.map((r) => r.cold16.pullmirror.upstreamGets);
  targets.push(target(`cold ${CONCURRENCY} clients: one upstream GET`, gets.every((g) => g === 1), `runs ${gets.join(', ')}`));
  // Three objects a pull reads (manifest, config, layer) and the tag it resolves: about one request each, never a LIST.
  const perPull = runs.map((r) => r.s3PerPull.pullmirror);
  targets.push(
    target(
      'S3 requests per warm pull ≤ 4 (about one GET per object read: manifest, config, layer, and the tag), no LIST',
      perPull.every((c) => total(c) <= 4 && !c.LIST),
      `runs ${perPull.map(countsText).join('; ')}; distribution ${runs.map((r) => countsText(r.s3PerPull.distribution)).join('; ')}`,
    ),
  );
  const peak = Math.max(...runs.map((r) => r.peakRss));
  targets.push(target(`peak RSS < 150 MB`, peak < RSS_TARGET_BYTES, `${(peak / 1e6).toFixed(1)} MB (the highest of ${RUNS} runs)`));

  const loadAfter = os.loadavg();
  const note =
    `${RUNS} run(s), ${BLOB_MIB} MiB blobs, ${os.cpus().length} cores, load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}, ${((performance.now() - started) / 1000).toFixed(0)} s. ` +
    `Cells: median (min–max) over the runs; ratios are per run. One RADOS Gateway per run (memstore ${MEM_MIB} MiB, objects in RAM), a bucket per server; distribution: s3 driver, redirect disabled. ` +
    `S3 requests counted from RGW's access log per bucket, mean of ${COUNTED_PULLS} warm pulls after a first one (LIST = a GET of the bucket). Upstream GETs: those answered 2xx (each carries the blob). ` +
    `Warm clients: ${findBinary('wrk') ? 'wrk (out of process)' : 'node:http in the bench process (wrk not found)'}.`;
  const errors = runs.flatMap((r, i) => [
    ...Object.entries({ ...prefixed('cold1', r.cold1), ...prefixed('cold16', r.cold16), ...prefixed('warm1', r.warm1), ...prefixed('warm16', r.warm16) })
      .filter(([, flow]) => flow.error)
      .map(([what, flow]) => `run ${i + 1} ${what}: ${flow.error}`),
    ...Object.entries(r.pullError)
      .filter(([, error]) => error)
      .map(([name, error]) => `run ${i + 1} warm pull ${name}: ${error}`),
    ...r.storeErrors.map((e) => `run ${i + 1} ${e}`),
  ]);
  process.stdout.write(['', `pullmirror on S3 next to distribution on S3 (one RADOS Gateway) — ${new Date().toISOString()}`, '', text, '', 'Targets (informational):', ...targets.map((t) => `  ${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`), '', note, ...errors.map((e) => `ERROR ${e}`), ''].join('\n'));
  const base = writeResults('s3', { runs, targets, note, errors, memMiB: MEM_MIB, image }, [`# pullmirror on S3, ${new Date().toISOString()}`, '', markdown, '', ...targets.map((t) => `- **${t.verdict}** ${t.name}: ${t.detail}`), '', note, ''].join('\n'));
  process.stdout.write(`Results: ${base}.json and ${base}.md\n`);
  return errors.some((e) => /pullmirror/.test(e)) ? 1 : 0;
}

function countsText(counts: S3Counts): string {
  const entries = Object.entries(counts).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([kind, n]) => `${Number.isInteger(n) ? n : n.toFixed(1)} ${kind}`).join(' + ') : 'none';
}

function prefixed<T>(prefix: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [`${prefix} ${key}`, value]));
}
