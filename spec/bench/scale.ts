/**
 * `npm run bench -- scale`: a mirror on a fleet-sized store (150 000 blobs, 3 000 repositories,
 * 10 000 tags, with the `_layers` links a real mirror writes), generated in the on-disk layout
 * as the gc bench does, on each storage driver in turn: the filesystem, then S3 (the same
 * store PUT into a bucket of a fresh RADOS Gateway, a tenth of it by default: see scaledShape
 * and prepareS3). BENCH_DRIVER=filesystem or s3 runs one; BENCH_SCALE=F scales the store by F;
 * BENCH_SCALE_PASS_DELAY=S starts the pass S seconds after the mirror (45 on the filesystem,
 * 300 on S3: the first walk must be over by then). Measured, each against the issue's target:
 *  - `/metrics` and `/api/status` latency, sampled every 250 ms from start-up (while the first
 *    walk runs) through an eviction pass inside the server: under 50 ms always;
 *  - the event loop's longest stall during the pass (the server measures it and logs it with
 *    the pass: `maxEventLoopDelayMs`): at most 20 ms;
 *  - warm GET latency of a stored 1 MiB blob (2 clients, each a GET every 10 ms): p99 during the pass at most
 *    2x its idle p99;
 *  - the server's RSS (sampled from /proc every 50 ms) during and after the pass: under 150 MB;
 *  - `pullmirror gc --dry-run` on the same store beforehand: peak RSS and how soon its first
 *    line comes (it streams its report).
 * Everything on 127.0.0.1; the mirror's upstream is a closed port (nothing here is a miss).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { stringify } from 'yaml';
import { mergeConfig, startCommand, startMirror, type RunningMirror } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { accessItem } from '../../src/eviction/access-clock.ts';
import { LocalAccessClock } from '../../src/eviction/local-access-clock.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { blobPath } from '../support/store.ts';
import { generateStore, type StoreShape } from './gc.ts';
import { peakRssWatch } from './measure.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SCALE_SHAPE: StoreShape = { blobs: 150_000, images: 10_000, repositories: 3_000, layerPool: 80_000, layerLinks: true };
const MiB = 1024 * 1024;

type Log = (message: string) => void;
type Phase = 'first walk' | 'idle' | 'pass' | 'after';

interface Sample {
  phase: Phase;
  ms: number;
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `gc --dry-run`: wall time, time to the first line of output, peak RSS. */
function dryRun(configFile: string): Promise<{ seconds: number; firstLineS: number; peakRssMiB: number; lines: number; summary: string }> {
  const shipped = startCommand();
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [...shipped.args, 'gc', '--dry-run', configFile], { env: { ...cleanEnv(['REGISTRY_']), ...shipped.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstLine = 0;
    let lines = 0;
    let last = '';
    let err = '';
    const watch = peakRssWatch(child.pid);
    let partial = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (!firstLine) firstLine = performance.now();
      partial += chunk.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      lines += parts.length;
      const summary = parts.filter((line) => line.startsWith('dry run:')).pop();
      if (summary) last = summary;
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('close', (code) => {
      const peak = watch.stop();
      if (code !== 0) return reject(new Error(`gc --dry-run exited ${code}: ${err}`));
      resolve({ seconds: (performance.now() - started) / 1000, firstLineS: (firstLine - started) / 1000, peakRssMiB: peak / 1024, lines, summary: last });
    });
  });
}

/**
 * A small image in the store whose 1 MiB layer the warm GETs read: a real blob, a config, a
 * manifest, its link, a tag and the `_layers` links, all written now (the pass keeps it: it is
 * within the grace period on the filesystem, and recently used on S3, see prepareS3).
 */
function storeWarmImage(root: string): { repository: string; digest: string; tag: string; manifest: string } {
  const bytes = createHash('sha512').update('scale-warm').digest();
  const content = Buffer.alloc(MiB);
  for (let i = 0; i < content.length; i += bytes.length) bytes.copy(content, i);
  const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const digest = sha256(content);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: sha256(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: content.length, digest }],
    }),
  );
  const manifestDigest = sha256(manifest);
  const write = (file: string, data: Buffer | string) => {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, data);
  };
  for (const blob of [content, config, manifest]) write(blobPath(root, sha256(blob)), blob);
  const repository = 'library/warm';
  const repo = path.join(root, 'repositories', ...repository.split('/'));
  write(path.join(repo, '_manifests', 'sha256', manifestDigest.slice(7)), JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length }));
  write(path.join(repo, '_tags', 'latest'), manifestDigest);
  for (const d of [digest, sha256(config)]) write(path.join(repo, '_layers', 'sha256', d.slice(7)), d);
  return { repository, digest, tag: 'latest', manifest: manifestDigest };
}

/** A six-field cron expression for the second `seconds` from now (the one pass of this run). */
function cronIn(seconds: number): { expression: string; at: number } {
  const at = new Date(Date.now() + seconds * 1000);
  return { expression: `${at.getSeconds()} ${at.getMinutes()} ${at.getHours()} * * *`, at: at.getTime() };
}

type DriverName = 'filesystem' | 's3';

/** BENCH_DRIVER: filesystem, s3, or both (the default: the issue's figures are on both). */
function chosenDrivers(): DriverName[] {
  const choice = process.env.BENCH_DRIVER ?? 'both';
  if (choice === 'both') return ['filesystem', 's3'];
  if (choice === 'filesystem' || choice === 's3') return [choice];
  throw new Error(`BENCH_DRIVER must be filesystem, s3 or both, got ${choice}`);
}

/**
 * BENCH_SCALE: a factor on the store's counts (blobs, images, repositories, the layer pool).
 * On the filesystem 1 by default. On S3 0.1 by default (15 000 blobs, about 26 000 objects):
 * populating the bucket is one PUT per object, and the RADOS Gateway here took them at 93 PUT/s
 * on a loaded 2-core machine (17 339 objects in 186 s, 32 at a time), so the full store's
 * 260 000 objects would take the better part of an hour.
 */
function scaledShape(driver: DriverName): StoreShape {
  const factor = Number(process.env.BENCH_SCALE ?? (driver === 's3' ? 0.1 : 1));
  if (!(factor > 0 && factor <= 1)) throw new Error(`BENCH_SCALE must be in (0, 1], got ${process.env.BENCH_SCALE}`);
  const scale = (n: number) => Math.max(1, Math.round(n * factor));
  return { ...SCALE_SHAPE, blobs: scale(SCALE_SHAPE.blobs), images: scale(SCALE_SHAPE.images), repositories: scale(SCALE_SHAPE.repositories), layerPool: scale(SCALE_SHAPE.layerPool) };
}

/** A store ready for the mirror and `gc`: where it is, and what each driver's run needs. */
interface PreparedStore {
  driver: DriverName;
  /** config.storage's driver part (filesystem or s3) for the mirror and `gc`. */
  storage: Record<string, unknown>;
  /** Config merged over the mirror's (the TTL and grace the S3 run needs, see prepareS3). */
  config: Record<string, any>;
  /** Seconds from start-up to the pass: the first walk must be over by then. */
  passDelayS: number;
  /** Just before the mirror starts (S3: the fresh images' access records). */
  beforeStart(): Promise<void>;
  /** How long the store took to build, in s, and any driver figures (S3: objects uploaded, PUT/s). */
  preparation: Record<string, number | string>;
  generated: { referenced: number; orphans: number; staleImages: number };
  warm: { repository: string; digest: string };
  close(): Promise<void>;
}

/** The store on disk, in the filesystem driver's layout: stale images are 200 h old by their mtimes. */
function prepareFilesystem(work: string, shape: StoreShape, log: Log): PreparedStore {
  const root = path.join(work, 'store');
  const generating = performance.now();
  const { fresh: _fresh, ...generated } = generateStore(root, log, shape);
  const warm = storeWarmImage(root);
  const seconds = (performance.now() - generating) / 1000;
  return {
    driver: 'filesystem',
    storage: { filesystem: { rootdirectory: root } },
    config: {},
    passDelayS: Number(process.env.BENCH_SCALE_PASS_DELAY ?? 45),
    beforeStart: async () => {},
    preparation: { generatedS: Number(seconds.toFixed(1)) },
    generated,
    warm,
    close: async () => {},
  };
}

/** Parallel PUTs into the bucket while populating it. */
const PUT_CONCURRENCY = 32;

/**
 * The same store in a bucket of a fresh RADOS Gateway (spec/support/s3.ts): generated on disk
 * with small blobs (maxBlobBytes; a bucket has no sparse objects), then PUT object by object,
 * PUT_CONCURRENCY at a time, and the local copy removed.
 *
 * An object's write time is when it was PUT (S3 sets it; nothing can make it 200 h old), so the
 * ages come from the access clock and a short TTL instead: every object was written at least
 * MARGIN_S before the mirror starts; the fresh images' tags and links (and the warm image's)
 * are recorded as used at start-up, in the local access clock's journal the mirror reads
 * (spool/_access-clock); proxy.ttl is the pass delay + MARGIN_S / 2 and the grace period
 * GRACE_S. At the pass, stale items are older than the TTL, fresh ones younger and past the
 * grace period: the same plan as on the filesystem.
 */
async function prepareS3(work: string, shape: StoreShape, log: Log): Promise<PreparedStore> {
  const MARGIN_S = 40;
  const GRACE_S = 10;
  // RGW keeps every object's head (its metadata and, for small objects, its bytes) and its
  // bucket index entry in the OSD's memstore: the OSD's RSS was 729 MiB with 17 339 objects.
  const memMiB = Number(process.env.BENCH_SCALE_S3_MEM_MIB ?? 4096);
  const s3 = await startS3({ memMiB });
  try {
    const bucket = await s3.createBucket('scale');
    const local = path.join(work, 'generated');
    const generating = performance.now();
    const { fresh, ...generated } = generateStore(local, log, { ...shape, maxBlobBytes: 1024 });
    const warm = storeWarmImage(local);
    const generatedS = (performance.now() - generating) / 1000;
    log(`scale[s3]: uploading the store (${PUT_CONCURRENCY} PUTs at a time)`);
    const uploading = performance.now();
    const objects = await uploadTree(local, s3, bucket, log);
    const uploadS = (performance.now() - uploading) / 1000;
    const uploadedAt = Date.now();
    log(`scale[s3]: ${objects} objects in ${uploadS.toFixed(1)} s (${(objects / uploadS).toFixed(0)} PUT/s)`);
    rmSync(local, { recursive: true, force: true });
    const spool = path.join(work, 'spool');
    // The first walk lists the bucket (a request per repository directory, per blob prefix, a
    // HEAD per linked manifest): 207 s for a 10 000-blob store on the loaded machine.
    const passDelayS = Number(process.env.BENCH_SCALE_PASS_DELAY ?? 300);
    return {
      driver: 's3',
      storage: { s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey, spooldirectory: spool } },
      config: { proxy: { ttl: `${passDelayS + MARGIN_S / 2}s` }, storage: { eviction: { grace: `${GRACE_S}s` } } },
      passDelayS,
      beforeStart: async () => {
        const wait = uploadedAt + MARGIN_S * 1000 - Date.now();
        if (wait > 0) await sleep(wait);
        const logger = createLogger({ level: 'error', formatter: 'json' } as never);
        const clock = new LocalAccessClock({ dir: path.join(spool, '_access-clock'), logger, compacts: false });
        const now = Date.now();
        for (const image of [...fresh, warm]) {
          clock.touch(accessItem.tag(image.repository, image.tag), now);
          clock.touch(accessItem.manifest(image.repository, image.manifest), now);
        }
        await clock.close();
      },
      preparation: { generatedS: Number(generatedS.toFixed(1)), objects, uploadS: Number(uploadS.toFixed(1)), putsPerS: Math.round(objects / uploadS), memstoreMiB: memMiB, osdRssMiB: osdRssMiB(s3) },
      generated,
      warm,
      close: () => s3.close(),
    };
  } catch (error) {
    await s3.close();
    throw error;
  }
}

/** The OSD's RSS (its memstore holds the objects): how full the memstore is getting. */
function osdRssMiB(s3: S3Server): number {
  const pid = s3.osdPid();
  if (!pid) return NaN;
  try {
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024);
  } catch {
    return NaN;
  }
}

/** PUTs every file under `root` as the object at its relative path, PUT_CONCURRENCY at a time; how many. */
async function uploadTree(root: string, s3: S3Server, bucket: string, log: Log): Promise<number> {
  const files = readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
  const client = s3.client();
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < files.length) {
      const file = files[next++];
      const body = readFileSync(file);
      const key = path.relative(root, file).split(path.sep).join('/');
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
      if (++done % 20_000 === 0) log(`  ${done} of ${files.length} objects`);
    }
  };
  await Promise.all(Array.from({ length: PUT_CONCURRENCY }, worker));
  return files.length;
}

/** The JSON log lines a process appended since the last call (the whole file is read once, never again). */
function logTail(file: string): () => Record<string, any>[] {
  let offset = 0;
  let partial = '';
  return () => {
    let text: string;
    try {
      const fd = openSync(file, 'r');
      try {
        const size = fstatSync(fd).size;
        const buffer = Buffer.alloc(size - offset);
        const read = buffer.length > 0 ? readSync(fd, buffer, 0, buffer.length, offset) : 0;
        offset += read;
        text = partial + buffer.toString('utf8', 0, read);
      } finally {
        closeSync(fd);
      }
    } catch {
      return [];
    }
    const lines = text.split('\n');
    partial = lines.pop()!;
    return lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, any>);
  };
}

export async function benchScale(log: Log): Promise<number> {
  let status = 0;
  for (const driver of chosenDrivers()) status = Math.max(status, await benchScaleOn(driver, log));
  return status;
}

async function benchScaleOn(driver: DriverName, log: Log): Promise<number> {
  const work = tempDir(`pullmirror-bench-scale-${driver}`);
  const shape = scaledShape(driver);
  let mirror: RunningMirror | undefined;
  let store: PreparedStore | undefined;
  try {
    log(`scale[${driver}]: generating ${shape.blobs} blobs, ${shape.images} tags in ${shape.repositories} repositories`);
    store = driver === 's3' ? await prepareS3(work.path, shape, log) : prepareFilesystem(work.path, shape, log);
    const { generated, warm } = store;
    log(`scale[${driver}]: store ready (${JSON.stringify(store.preparation)}): ${generated.referenced} referenced blobs, ${generated.orphans} unreferenced, ${generated.staleImages} images past the TTL`);
    const configFile = path.join(work.path, 'config.yml');
    writeFileSync(configFile, stringify({ version: '0.1', log: { level: 'error', formatter: 'json' }, storage: store.storage, ...(store.config.proxy ? { proxy: { remoteurl: 'http://127.0.0.1:9', ...store.config.proxy } } : {}) }));
    log(`scale[${driver}]: gc --dry-run`);
    const gc = await dryRun(configFile);
    log(`scale[${driver}]: gc --dry-run ${gc.seconds.toFixed(2)} s, first line after ${gc.firstLineS.toFixed(2)} s, peak RSS ${gc.peakRssMiB.toFixed(1)} MiB`);

    await store.beforeStart();
    // The pass starts passDelayS after start-up: the first walk is over by then, idle figures taken.
    const passStart = cronIn(store.passDelayS);
    mirror = await startMirror({
      remoteurl: 'http://127.0.0.1:9',
      bundle: true,
      // PULLMIRROR_NODE_OPTIONS (e.g. --cpu-prof, --heapsnapshot-signal=SIGUSR2) to see where time and memory go.
      env: process.env.PULLMIRROR_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PULLMIRROR_NODE_OPTIONS } : {},
      config: mergeConfig({ log: { level: 'info' }, storage: { ...store.storage, delete: { enabled: true }, eviction: { schedule: passStart.expression } } }, store.config),
    });
    const pid = mirror.process.pid;
    const started = performance.now();
    let phase: Phase = 'first walk';
    let passEnd = 0;
    const ops: (Sample & { path: string })[] = [];
    const warmGets: Sample[] = [];
    const rss: Sample[] = [];
    let running = true;
    const failures: string[] = [];

    const rssSampler = setInterval(() => {
      try {
        const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (kb) rss.push({ phase, ms: Number(kb[1]) / 1024 });
      } catch {
        // exited
      }
    }, 50);
    const timed = async (url: string) => {
      const t0 = performance.now();
      const response = await request(url);
      await response.body.dump();
      if (response.statusCode !== 200) throw new Error(`${url}: ${response.statusCode}`);
      return performance.now() - t0;
    };
    const opsProbe = (async () => {
      for (let i = 0; running; i++) {
        const which = i % 2 === 0 ? '/metrics' : '/api/status';
        try {
          ops.push({ phase, path: which, ms: await timed(`${mirror.url}${which}`) });
        } catch (error) {
          failures.push(`${phase}: ${which}: ${(error as Error).message}`);
          if (failures.length > 20) throw error;
        }
        await sleep(250);
      }
    })();
    const warmClient = async () => {
      while (running) {
        try {
          warmGets.push({ phase, ms: await timed(`${mirror!.url}/v2/${warm.repository}/blobs/${warm.digest}`) });
          // Paced (about 100 GETs/s per client): on 2 cores a flat-out loop measures CPU contention, not the pass.
          await sleep(10);
        } catch (error) {
          // Recorded and reported, not thrown: a probe that dies would leave the run hanging.
          failures.push(`${phase}: warm GET: ${(error as Error).message}`);
          if (failures.length > 20) throw error;
          await sleep(100);
        }
      }
    };
    // BENCH_SCALE_WARM=0 measures the pass alone (what memory is the pass's, what the clients').
    const warmClients = Array.from({ length: Number(process.env.BENCH_SCALE_WARM ?? 2) }, warmClient);

    // Phases: first walk (until /api/status says complete), idle, the pass, 10 s after it.
    // The log is read as it grows (the access log adds a line per GET: rereading it whole
    // every 20 ms took CPU from the mirror on 2 cores).
    const tail = logTail(mirror.process.logFile);
    const seen: Record<string, any>[] = [];
    const logged = (...messages: string[]) => {
      for (const line of tail()) if (line.message?.startsWith('eviction pass')) seen.push(line);
      return seen.find((line) => messages.includes(line.message));
    };
    for (;;) {
      const status = (await (await fetch(`${mirror.url}/api/status`)).json()) as { store: { complete: boolean; blobs: number } };
      if (status.store.complete) {
        log(`scale[${driver}]: first walk done after ${((performance.now() - started) / 1000).toFixed(1)} s: ${status.store.blobs} blobs`);
        break;
      }
      await sleep(200);
    }
    if (logged('eviction pass started')) failures.push(`the pass started before the first walk was over: raise BENCH_SCALE_PASS_DELAY (${store.passDelayS} s)`);
    phase = 'idle';
    while (!logged('eviction pass started')) await sleep(20);
    phase = 'pass';
    log(`scale[${driver}]: eviction pass started`);
    let finished: Record<string, any> | undefined;
    while (!(finished = logged('eviction pass finished', 'eviction pass failed'))) await sleep(20);
    passEnd = performance.now();
    phase = 'after';
    log(`scale[${driver}]: eviction pass ${finished.message}: ${JSON.stringify(finished)}`);
    if (finished.message === 'eviction pass failed') failures.push(`the pass failed: ${finished.error}`);
    await sleep(10_000);
    running = false;
    clearInterval(rssSampler);
    await Promise.all([opsProbe, ...warmClients]);
    const afterPassStatus = (await (await fetch(`${mirror.url}/api/status`)).json()) as { store: { blobs: number; bytes: number } };

    const of = <T extends Sample>(samples: T[], p: Phase) => samples.filter((s) => s.phase === p).map((s) => s.ms);
    const opsAll = ops.map((s) => s.ms);
    const idleP99 = percentile(of(warmGets, 'idle'), 99);
    const passP99 = percentile(of(warmGets, 'pass'), 99);
    const rssPass = Math.max(...of(rss, 'pass'));
    const rssAfter = of(rss, 'after').at(-1) ?? NaN;
    const stall = Number(finished.maxEventLoopDelayMs);
    const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
    const load = loadavg().map((l) => l.toFixed(2)).join(' ');
    const table = [
      '',
      `pullmirror on a store of ${shape.blobs} blobs, ${shape.repositories} repositories, ${shape.images} tags, ${driver} driver — ${new Date().toISOString()}, load average ${load}`,
      '',
      '| figure | value | target | |',
      '| --- | ---: | --- | --- |',
      `| /metrics + /api/status, max ms (${opsAll.length} requests; first walk / idle / pass / after) | ${Math.max(...opsAll).toFixed(1)} (${(['first walk', 'idle', 'pass', 'after'] as Phase[]).map((p) => Math.max(...of(ops, p)).toFixed(1)).join(' / ')}) | < 50 | ${verdict(Math.max(...opsAll) < 50)} |`,
      `| event loop, longest stall during the pass, ms | ${stall.toFixed(1)} | <= 20 | ${verdict(stall <= 20)} |`,
      `| warm GET 1 MiB p99, idle / during the pass, ms (${of(warmGets, 'idle').length} / ${of(warmGets, 'pass').length} GETs) | ${idleP99.toFixed(1)} / ${passP99.toFixed(1)} (${(passP99 / idleP99).toFixed(2)}x) | <= 2x | ${verdict(passP99 <= 2 * idleP99)} |`,
      `| warm GET p50 / p90 / max, idle; during the pass, ms | ${[50, 90, 100].map((q) => percentile(of(warmGets, 'idle'), q).toFixed(1)).join(' / ')}; ${[50, 90, 100].map((q) => percentile(of(warmGets, 'pass'), q).toFixed(1)).join(' / ')} | | |`,
      `| RSS: first walk peak / idle / pass peak / 10 s after, MB | ${Math.max(...of(rss, 'first walk')).toFixed(1)} / ${(of(rss, 'idle').at(-1) ?? NaN).toFixed(1)} / ${rssPass.toFixed(1)} / ${rssAfter.toFixed(1)} | < 150 | ${verdict(rssPass < 150 && rssAfter < 150)} |`,
      `| eviction pass: duration, removed | ${(Number(finished.durationMs) / 1000).toFixed(2)} s, ${finished.manifests} manifests, ${finished.tags} tags, ${finished.blobs} blobs | | |`,
      `| store figures after the pass (live) | ${afterPassStatus.store.blobs} blobs | | |`,
      `| gc --dry-run: wall s, first line after s, peak RSS MiB, lines | ${gc.seconds.toFixed(2)}, ${gc.firstLineS.toFixed(2)}, ${gc.peakRssMiB.toFixed(1)}, ${gc.lines} | streams | |`,
      `| store preparation | ${Object.entries(store.preparation).map(([k, v]) => `${k} ${v}`).join(', ')} | | |`,
      '',
      `gc --dry-run summary: ${gc.summary}`,
      ...(failures.length ? ['', `FAILURES (${failures.length}): ${failures.slice(0, 5).join('; ')}`] : []),
      '',
    ];
    process.stdout.write(table.join('\n'));
    const results = path.join(HERE, 'results');
    mkdirSync(results, { recursive: true });
    const file = path.join(results, `scale-${driver}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      `${JSON.stringify({ date: new Date().toISOString(), driver, loadavg: loadavg(), shape, generated, preparation: store.preparation, gc, pass: finished, passDurationMs: passEnd - started, ops, warmGets: { idleP99, passP99 }, rss: { pass: rssPass, after: rssAfter } }, null, 2)}\n`,
    );
    process.stdout.write(`Results: ${file}\n`);
    return failures.length ? 1 : 0;
  } finally {
    await mirror?.stop();
    await store?.close();
    if (process.env.BENCH_KEEP === '1') log(`scale[${driver}]: BENCH_KEEP=1: kept ${work.path}`);
    else await work.cleanup();
  }
}
