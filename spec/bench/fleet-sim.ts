/**
 * Bench case `fleet` (issue 24 item 9): a fleet simulation. Four pullmirror instances
 * (separate processes), one Redis behind Sentinel (a master, a replica, three Sentinels), the
 * upstream behind the bench's uplink (100 MiB/s shared, 20 ms), and 1,000 simulated clients,
 * at most 64 at once. Each pull fetches a manifest by tag and every blob it names, verifying
 * every digest, from the next live instance (as a Service spreads connections); a failed
 * attempt is retried on the next instance, at most twice, as `docker pull` retries a layer.
 * The images: 24, with skewed popularity (Zipf, s = 1), two shared base layers, three of them
 * with a BENCH_BLOB_MIB (256) MiB layer.
 *
 * Halfway (500 pulls done) one instance is SIGKILLed and a new one joins; at three quarters the
 * Redis master is SIGKILLed (Sentinel promotes the replica). Reported: copies of each blob over
 * the uplink (goal 1.0), p50/p99 pull time, p99 time to first byte of a warm blob (one some
 * client had verified before the GET started; goal < 100 ms), failed pulls (goal 0), retried
 * pulls and why, Redis commands per pull. Beside it, four independent distribution proxies on
 * the same link serve the same pulls (no kills: they share nothing a kill could test).
 *
 * Modes (BENCH_FLEET_MODE): `volume` (one store directory, the default), `bucket` (one S3
 * bucket on a RADOS Gateway; spools private, followers stream from the holder's peer listener),
 * `disks` (each instance its own directory, one fleet by `redis.fleet.name`, peers stream). Knobs: BENCH_FLEET_PULLS (1000), BENCH_FLEET_CONCURRENCY (64),
 * BENCH_FLEET_INSTANCES (4), BENCH_BLOB_MIB (the big layers' size), BENCH_FLEET_SIDES
 * (`pullmirror,distribution`). Loopback only; every wait is bounded.
 */
import { createHash } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { MT, pushBlob, pushRandomBlob, registryFetch } from '../support/images.ts';
import { startLinkProxy, type LinkStats } from '../support/link-proxy.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { freePort, tempDir } from '../support/processes.ts';
import { SENTINEL_AND_REPLICATION, startFailoverTopology, type FailoverTopology } from '../support/redis-failover.ts';
import { startDistributionProxy, startUpstreamRegistry, type RegistryServer } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { BLOB_MIB, MiB, target, writeResults, type Target } from './measure.ts';

type Log = (message: string) => void;
type OnCleanup = (what: string, run: () => Promise<void> | void) => void;

const envInt = (name: string, fallback: number): number => {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${text}`);
  return n;
};

const PULLS = envInt('BENCH_FLEET_PULLS', 1000);
const CONCURRENCY = envInt('BENCH_FLEET_CONCURRENCY', 64);
const INSTANCES = envInt('BENCH_FLEET_INSTANCES', 4);
const IMAGES = 24;
const BIG_IMAGES = new Set([11, 17, 23]);
const MODE = (process.env.BENCH_FLEET_MODE ?? 'volume') as 'volume' | 'bucket' | 'disks';
const SIDES = (process.env.BENCH_FLEET_SIDES ?? 'pullmirror,distribution').split(',').map((s) => s.trim());
const LINK_MIBPS = 100;
const LINK_RTT_MS = 20;
/** Attempts per pull (the first and two retries, as docker retries a layer download). */
const ATTEMPTS = 3;
/** A blob GET that makes no progress for this long is abandoned (an attempt fails, never hangs). */
const IDLE_TIMEOUT_MS = 60_000;
/** The whole side's deadline: a run that has not finished by then is reported as failed. */
const SIDE_TIMEOUT_MS = 30 * 60_000;
const TTFB_TARGET_MS = 100;
const COMMAND_SAMPLE_MS = 1_000;

interface Blob {
  digest: string;
  size: number;
}

interface Image {
  repo: string;
  manifestDigest: string;
  manifestSize: number;
  blobs: Blob[];
}

/** A deterministic PRNG (mulberry32): every run pulls the same sequence. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Image indexes for every pull: Zipf over the images (index = popularity rank). */
export function pullSequence(pulls: number, images: number, seed = 24): number[] {
  const weights = Array.from({ length: images }, (_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const random = prng(seed);
  return Array.from({ length: pulls }, () => {
    let r = random() * total;
    for (let i = 0; i < images; i++) {
      r -= weights[i];
      if (r <= 0) return i;
    }
    return images - 1;
  });
}

async function pushImages(registry: RegistryServer, log: Log): Promise<Image[]> {
  const images: Image[] = [];
  const bases: Record<string, Blob> = {};
  for (let i = 0; i < IMAGES; i++) {
    const repo = `library/app-${String(i).padStart(2, '0')}`;
    const layers: Blob[] = [];
    // Two base layers shared as real images share them: a dozen images on one, eight on another.
    const base = i < 12 ? 'base-a' : i < 20 ? 'base-b' : undefined;
    if (base) {
      bases[`${base}:${repo}`] = await pushRandomBlob(registry.url, PUSHER, repo, { sizeMiB: base === 'base-a' ? 8 : 24, label: `fleet-${base}` });
      layers.push(bases[`${base}:${repo}`]);
    }
    layers.push(await pushRandomBlob(registry.url, PUSHER, repo, { sizeMiB: 1 + ((i * 7) % 12), label: `fleet-own-${i}` }));
    if (BIG_IMAGES.has(i)) layers.push(await pushRandomBlob(registry.url, PUSHER, repo, { sizeMiB: BLOB_MIB, label: `fleet-big-${i}` }));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { image: repo } }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }));
    const configBlob = await pushBlob(registry.url, PUSHER, repo, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configBlob.digest, size: configBlob.size },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
      }),
    );
    const put = await registryFetch(registry.url, PUSHER, repo, `/v2/${repo}/manifests/latest`, { method: 'PUT', headers: { 'content-type': MT.ociManifest }, body: manifest as Uint8Array<ArrayBuffer> });
    if (put.status !== 201) throw new Error(`PUT manifest ${repo}: HTTP ${put.status} ${await put.text()}`);
    await put.arrayBuffer();
    images.push({ repo, manifestDigest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`, manifestSize: manifest.length, blobs: [configBlob, ...layers] });
  }
  const unique = new Map(images.flatMap((image) => image.blobs.map((b) => [b.digest, b.size] as const)));
  log(`fleet: pushed ${images.length} images, ${unique.size} distinct blobs, ${([...unique.values()].reduce((a, b) => a + b, 0) / MiB).toFixed(0)} MiB in all`);
  return images;
}

// ---------------------------------------------------------------------------
// The clients

interface Endpoint {
  url: string;
  pid: number;
  agent: Agent;
  /** False once killed: no new attempt goes there. */
  alive: boolean;
  name: string;
}

interface GetResult {
  ok: boolean;
  ttfbMs?: number;
  error?: string;
}

/** GET a URL, hash the body, compare with the digest and size; bounded by an idle timeout. */
function getVerified(url: string, agent: Agent, digest: string, size: number, accept?: string): Promise<GetResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    let ttfbMs: number | undefined;
    const request = httpRequest(url, { agent, headers: accept ? { accept } : {} }, (response) => {
      const hash = createHash('sha256');
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        ttfbMs ??= performance.now() - started;
        hash.update(chunk);
        bytes += chunk.length;
      });
      response.on('end', () => {
        const got = `sha256:${hash.digest('hex')}`;
        if (response.statusCode !== 200) resolve({ ok: false, error: `HTTP ${response.statusCode}` });
        else if (bytes !== size || got !== digest) resolve({ ok: false, error: `wrong bytes (${bytes} of ${size}, ${got === digest ? 'digest ok' : 'digest mismatch'})` });
        else resolve({ ok: true, ttfbMs });
      });
      response.on('error', (error) => resolve({ ok: false, error: `body: ${error.message}` }));
      response.on('aborted', () => resolve({ ok: false, error: 'body aborted' }));
    });
    request.setTimeout(IDLE_TIMEOUT_MS, () => request.destroy(new Error(`no progress for ${IDLE_TIMEOUT_MS} ms`)));
    request.on('error', (error) => resolve({ ok: false, error: error.message }));
    request.end();
  });
}

interface SideResult {
  side: string;
  mode?: string;
  pulls: number;
  failedPulls: number;
  retriedPulls: number;
  retryReasons: Record<string, number>;
  pullP50Ms: number;
  pullP99Ms: number;
  warmTtfbP99Ms?: number;
  warmGets: number;
  wallSeconds: number;
  /** Copies over the uplink: bytes of blob GETs that crossed it / the blobs' sizes. */
  uplinkCopies: number;
  maxCopiesOfOneBlob: number;
  blobsOverOnce: number;
  manifestGetsOverLink: number;
  redisCommandsPerPull?: number;
  redisDetail?: string;
  events: string[];
  error?: string;
}

function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Fleet {
  targets: Endpoint[];
  /** Called at half the pulls (kill one, start one) and at three quarters (kill the Redis master). */
  events: Array<{ at: number; run: () => Promise<string> }>;
}

async function runPulls(side: string, fleet: Fleet, images: Image[], sequence: number[], log: Log): Promise<Omit<SideResult, 'uplinkCopies' | 'maxCopiesOfOneBlob' | 'blobsOverOnce' | 'manifestGetsOverLink'>> {
  const durations: number[] = [];
  const warmTtfb: number[] = [];
  const verified = new Set<string>();
  const retryReasons: Record<string, number> = {};
  const eventsDone: string[] = [];
  let failed = 0;
  let retried = 0;
  let next = 0;
  let done = 0;
  let rr = 0;
  const pending = [...fleet.events].sort((a, b) => a.at - b.at);
  let eventRunning: Promise<void> = Promise.resolve();
  const pick = (): Endpoint => {
    const live = fleet.targets.filter((t) => t.alive);
    return live[rr++ % live.length];
  };
  const pullOnce = async (image: Image, to: Endpoint): Promise<string | undefined> => {
    const manifest = await getVerified(`${to.url}/v2/${image.repo}/manifests/latest`, to.agent, image.manifestDigest, image.manifestSize, MT.ociManifest);
    if (!manifest.ok) return `manifest: ${manifest.error}`;
    // Three blobs at a time, as docker's max-concurrent-downloads.
    const queue = [...image.blobs];
    let problem: string | undefined;
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let blob = queue.shift(); blob && !problem; blob = queue.shift()) {
          const warm = verified.has(blob.digest);
          const got = await getVerified(`${to.url}/v2/${image.repo}/blobs/${blob.digest}`, to.agent, blob.digest, blob.size);
          if (!got.ok) problem = `blob: ${got.error}`;
          else {
            verified.add(blob.digest);
            if (warm && got.ttfbMs !== undefined) warmTtfb.push(got.ttfbMs);
          }
        }
      }),
    );
    return problem;
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < sequence.length; i = next++) {
        const image = images[sequence[i]];
        const pullStarted = performance.now();
        let ok = false;
        for (let attempt = 0; attempt < ATTEMPTS && !ok; attempt++) {
          const to = pick();
          const problem = await pullOnce(image, to);
          if (problem === undefined) ok = true;
          else {
            const reason = `${to.alive ? 'live instance' : 'killed instance'}: ${problem.replace(/\d+/g, 'N')}`;
            retryReasons[reason] = (retryReasons[reason] ?? 0) + 1;
            if (attempt === 0) retried++;
          }
        }
        if (ok) durations.push(performance.now() - pullStarted);
        else failed++;
        done++;
        while (pending.length && done >= pending[0].at) {
          const event = pending.shift()!;
          // Events run one after another, beside the pulls (a kill does not wait for the clients).
          eventRunning = eventRunning.then(async () => {
            const what = await event.run().catch((error: Error) => `event failed: ${error.message}`);
            eventsDone.push(`after ${event.at} pulls: ${what}`);
            log(`${side}: after ${event.at} pulls: ${what}`);
          });
        }
        if (done % 100 === 0) log(`${side}: ${done}/${sequence.length} pulls (${failed} failed, ${retried} retried)`);
      }
    }),
  );
  await eventRunning;
  return {
    side,
    pulls: sequence.length,
    failedPulls: failed,
    retriedPulls: retried,
    retryReasons,
    pullP50Ms: percentile(durations, 50),
    pullP99Ms: percentile(durations, 99),
    warmTtfbP99Ms: warmTtfb.length ? percentile(warmTtfb, 99) : undefined,
    warmGets: warmTtfb.length,
    wallSeconds: (performance.now() - started) / 1000,
    events: eventsDone,
  };
}

/** Copies of each blob that crossed the link: body bytes of its GETs over its size, for the blobs of the images pulled. */
function uplinkCopies(stats: LinkStats, pulled: Image[]): Pick<SideResult, 'uplinkCopies' | 'maxCopiesOfOneBlob' | 'blobsOverOnce' | 'manifestGetsOverLink'> {
  const sizes = new Map(pulled.flatMap((image) => image.blobs.map((b) => [b.digest, b.size] as const)));
  const bytes = new Map<string, number>();
  let manifests = 0;
  for (const r of stats.requests) {
    if (r.method !== 'GET') continue;
    const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(r.path);
    if (blob) bytes.set(blob[1], (bytes.get(blob[1]) ?? 0) + r.bodyBytes);
    else if (/\/manifests\//.test(r.path) && r.status === 200) manifests++;
  }
  let total = 0;
  let unique = 0;
  let max = 0;
  let overOnce = 0;
  for (const [digest, size] of sizes) {
    const copies = (bytes.get(digest) ?? 0) / size;
    total += bytes.get(digest) ?? 0;
    unique += size;
    max = Math.max(max, copies);
    if (copies > 1.001) overOnce++;
  }
  return { uplinkCopies: total / unique, maxCopiesOfOneBlob: max, blobsOverOnce: overOnce, manifestGetsOverLink: manifests };
}

/** The images some pull asked for (an image of low popularity may never be pulled). */
function pulledImages(images: Image[], sequence: number[]): Image[] {
  return [...new Set(sequence)].map((i) => images[i]);
}

// ---------------------------------------------------------------------------
// Redis work

/** Samples every data server's command counts; sums the work done while each was master. */
function redisCounter(topology: FailoverTopology) {
  const last = new Map<number, Map<string, number>>();
  const first = new Map<number, Map<string, number>>();
  const sample = async () => {
    for (const port of topology.serverPorts) {
      const calls = await topology.commandCalls(port);
      if (!calls) continue;
      if (!first.has(port)) first.set(port, calls);
      last.set(port, calls);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const count = (from: Map<string, number> | undefined, to: Map<string, number> | undefined) => {
    let n = 0;
    for (const [command, calls] of to ?? []) if (!SENTINEL_AND_REPLICATION.has(command)) n += calls - (from?.get(command) ?? 0);
    return n;
  };
  let masterAtStart = 0;
  let promotedFrom: Map<string, number> | undefined;
  let promoted = 0;
  return {
    async start() {
      masterAtStart = await topology.masterPort();
      await sample();
      timer = setInterval(() => void sample(), COMMAND_SAMPLE_MS);
    },
    /** The moment the replica took over: its counts so far were replication, not clients'. */
    async promotedNow(port: number) {
      promoted = port;
      promotedFrom = await topology.commandCalls(port);
    },
    async stop(): Promise<{ commands: number; detail: string }> {
      clearInterval(timer);
      await sample();
      const before = count(first.get(masterAtStart), last.get(masterAtStart));
      const after = promoted ? count(promotedFrom, last.get(promoted)) : 0;
      return {
        commands: before + after,
        detail: `${before} on the first master (to its last sample, ≤ ${COMMAND_SAMPLE_MS} ms before the kill)${promoted ? ` + ${after} on the promoted replica` : ''}; Sentinel and replication commands (PING, INFO, REPLCONF, …) left out, Sentinel's hello PUBLISHes (about 1.5/s per server) included`,
      };
    },
  };
}

// ---------------------------------------------------------------------------
// The sides

async function pullmirrorSide(ctx: Context): Promise<SideResult> {
  const { log, later, images, sequence, link } = ctx;
  const topology = await startFailoverTopology();
  later('fleet redis topology', () => topology.close());
  const work = tempDir('pullmirror-bench-fleetsim');
  later('fleet temp dir', () => work.cleanup());
  let storage: Record<string, unknown> = {};
  if (MODE === 'bucket') {
    const { startS3 } = await import('../support/s3.ts');
    const s3 = await startS3({ memMiB: Math.max(1024, Math.ceil(BLOB_MIB * 3 * 2.5 + 1024)) });
    later('fleet s3', () => s3.close());
    const bucket = await s3.createBucket('fleet');
    storage = { s3: { bucket, region: s3.region, regionendpoint: s3.endpoint, forcepathstyle: true, accesskey: s3.accessKeyId, secretkey: s3.secretAccessKey } };
  }
  const secret = createHash('sha256').update(`fleet-bench-${process.pid}-${Date.now()}`).digest('hex');
  let started = 0;
  const startInstance = async (): Promise<Endpoint> => {
    const n = started++;
    const own = path.join(work.path, MODE === 'disks' ? `store-${n}` : 'store');
    const config: Record<string, unknown> = {
      storage: { ...storage, ...(MODE === 'bucket' ? { s3: { ...(storage.s3 as object), spooldirectory: path.join(work.path, `spool-${n}`) } } : {}), cache: { blobdescriptor: 'redis' } },
      redis: { addrs: topology.addrs, mastername: topology.mastername, dialtimeout: '1s', readtimeout: '1s', writetimeout: '1s' },
      log: { level: 'info', accesslog: { disabled: true } },
    };
    if (MODE !== 'volume') {
      // Spools are private on a bucket and on disks of their own: followers stream the holder's
      // download from its peer listener. Disks of their own are one fleet by its name (each
      // store has its own id, which would otherwise split the fleet's keys).
      const port = await freePort();
      (config.redis as Record<string, unknown>).fleet = { ...(MODE === 'disks' ? { name: 'bench' } : {}), peers: { addr: `127.0.0.1:${port}`, advertise: `127.0.0.1:${port}` } };
      config.http = { secret };
    }
    const mirror: RunningMirror = await startMirror({ remoteurl: link.url, ...MIRROR_ACCOUNT, root: MODE === 'bucket' ? undefined : own, config, bundle: true });
    later(`fleet pullmirror pid ${mirror.process.pid}`, () => mirror.stop());
    return { url: mirror.url, pid: mirror.process.pid, agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }), alive: true, name: `pullmirror pid ${mirror.process.pid}` };
  };
  const targets: Endpoint[] = [];
  for (let i = 0; i < INSTANCES; i++) targets.push(await startInstance());
  const redis = redisCounter(topology);
  const fleet: Fleet = {
    targets,
    events: [
      {
        at: Math.floor(PULLS / 2),
        run: async () => {
          const victim = targets[1];
          victim.alive = false;
          process.kill(victim.pid, 'SIGKILL');
          const joined = await startInstance();
          targets.push(joined);
          return `SIGKILLed ${victim.name}; ${joined.name} joined`;
        },
      },
      {
        at: Math.floor((PULLS * 3) / 4),
        run: async () => {
          const killedAt = performance.now();
          const old = await topology.killMaster();
          const promoted = await topology.waitForFailover(old);
          await redis.promotedNow(promoted);
          return `SIGKILLed the Redis master (:${old}); Sentinel promoted :${promoted} after ${((performance.now() - killedAt) / 1000).toFixed(1)} s`;
        },
      },
    ],
  };
  for (const t of targets) await fetch(`${t.url}/v2/`).then((r) => r.arrayBuffer());
  await link.reset();
  await redis.start();
  const result = await withDeadline(runPulls('pullmirror', fleet, images, sequence, log));
  const work_ = await redis.stop();
  for (const t of targets) t.agent.destroy();
  return { ...result, mode: MODE, ...uplinkCopies(await link.stats(), pulledImages(images, sequence)), redisCommandsPerPull: work_.commands / PULLS, redisDetail: work_.detail };
}

async function distributionSide(ctx: Context): Promise<SideResult> {
  const { log, later, images, sequence, link } = ctx;
  const targets: Endpoint[] = [];
  for (let i = 0; i < INSTANCES; i++) {
    const dist = await startDistributionProxy({ remoteurl: link.url, ...MIRROR_ACCOUNT });
    later(`fleet distribution pid ${dist.pid}`, () => dist.stop());
    targets.push({ url: dist.url, pid: dist.pid, agent: new Agent({ keepAlive: true, maxSockets: CONCURRENCY }), alive: true, name: `distribution pid ${dist.pid}` });
  }
  await link.reset();
  const result = await withDeadline(runPulls('distribution', { targets, events: [] }, images, sequence, log));
  for (const t of targets) t.agent.destroy();
  return { ...result, ...uplinkCopies(await link.stats(), pulledImages(images, sequence)) };
}

async function withDeadline<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not finished within ${SIDE_TIMEOUT_MS / 60_000} minutes`)), SIDE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

interface Context {
  log: Log;
  later: OnCleanup;
  images: Image[];
  sequence: number[];
  link: Awaited<ReturnType<typeof startLinkProxy>>;
}

function describe(r: SideResult): string[] {
  if (r.pulls === undefined) return [`${r.side}: ERROR: ${r.error}`];
  const f = (v: number | undefined, d = 0) => (v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));
  return [
    `${r.side}${r.mode ? ` (mode ${r.mode})` : ''}: ${r.pulls} pulls in ${f(r.wallSeconds, 1)} s; failed ${r.failedPulls}, retried ${r.retriedPulls}` +
      `${Object.keys(r.retryReasons).length ? ` (${Object.entries(r.retryReasons).map(([why, n]) => `${n}× ${why}`).join('; ')})` : ''}`,
    `  pull time p50 ${f(r.pullP50Ms)} ms, p99 ${f(r.pullP99Ms)} ms; warm blob time to first byte p99 ${f(r.warmTtfbP99Ms, 1)} ms (${r.warmGets} warm GETs)`,
    `  uplink: ${f(r.uplinkCopies, 2)} copies of the blobs (worst blob ${f(r.maxCopiesOfOneBlob, 2)}, ${r.blobsOverOnce} blob(s) more than once), ${r.manifestGetsOverLink} manifest GETs`,
    ...(r.redisCommandsPerPull !== undefined ? [`  Redis: ${f(r.redisCommandsPerPull, 1)} commands per pull (${r.redisDetail})`] : []),
    ...r.events.map((e) => `  event ${e}`),
    ...(r.error ? [`  ERROR: ${r.error}`] : []),
  ];
}

/** `npm run bench -- fleet`. Exit status 1 when the harness failed or a pull got wrong bytes with no retry left. */
export async function benchFleetSimCase(log: Log, onCleanup: OnCleanup): Promise<number> {
  const benchStarted = performance.now();
  const stops: Array<() => Promise<void> | void> = [];
  const later: OnCleanup = (what, run) => {
    stops.push(run);
    onCleanup(what, run);
  };
  try {
    const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
    later('token server', () => tokens.close());
    const registry = await startUpstreamRegistry({ tokenServer: tokens });
    later(`upstream docker-registry pid ${registry.pid}`, () => registry.stop());
    const images = await pushImages(registry, log);
    const link = await startLinkProxy({ target: new URL(registry.url).host, rateMiBps: LINK_MIBPS, rttMs: LINK_RTT_MS });
    later(`link pid ${link.pid}`, () => link.stop());
    const sequence = pullSequence(PULLS, IMAGES);
    const ctx: Context = { log, later, images, sequence, link };
    const results: SideResult[] = [];
    for (const side of SIDES) {
      log(`fleet: ${side}: ${INSTANCES} instances, ${PULLS} pulls, ${CONCURRENCY} at once, through ${LINK_MIBPS} MiB/s / ${LINK_RTT_MS} ms`);
      const run = side === 'pullmirror' ? pullmirrorSide : side === 'distribution' ? distributionSide : undefined;
      if (!run) throw new Error(`BENCH_FLEET_SIDES: unknown side ${side}`);
      results.push(
        await run(ctx).catch((error: Error) => {
          log(`fleet: ${side} failed: ${error.stack ?? error.message}`);
          return { side, error: error.message } as SideResult;
        }),
      );
    }
    const pm = results.find((r) => r.side === 'pullmirror');
    const ds = results.find((r) => r.side === 'distribution');
    const targets: Target[] = pm && !pm.error
      ? [
          target('each blob crosses the uplink once (copies 1.0)', pm.uplinkCopies <= 1.001 && pm.maxCopiesOfOneBlob <= 1.001, `${pm.uplinkCopies.toFixed(3)} copies, worst blob ${pm.maxCopiesOfOneBlob.toFixed(2)}`),
          target('failed pulls 0', pm.failedPulls === 0, `${pm.failedPulls} failed, ${pm.retriedPulls} retried`),
          target(`warm blob time to first byte p99 < ${TTFB_TARGET_MS} ms`, pm.warmTtfbP99Ms === undefined ? undefined : pm.warmTtfbP99Ms < TTFB_TARGET_MS, `${pm.warmTtfbP99Ms?.toFixed(1)} ms`),
          ...(ds && !ds.error ? [target('pull time p99 ≤ distribution', pm.pullP99Ms <= ds.pullP99Ms, `${pm.pullP99Ms.toFixed(0)} vs ${ds.pullP99Ms.toFixed(0)} ms`)] : []),
        ]
      : [];
    const lines = [
      `Fleet simulation (spec/bench/fleet-sim.ts), ${new Date().toISOString()}, ${((performance.now() - benchStarted) / 1000).toFixed(0)} s, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
      `${INSTANCES} instances, ${PULLS} pulls (${CONCURRENCY} at once) of ${IMAGES} images (Zipf; three with a ${BLOB_MIB} MiB layer), uplink ${LINK_MIBPS} MiB/s shared, ${LINK_RTT_MS} ms`,
      ...results.flatMap(describe),
      '',
      'Targets (informational):',
      ...targets.map((t) => `  ${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`),
    ];
    process.stdout.write(`\n${lines.join('\n')}\n`);
    const file = writeResults('fleet', { results, targets, loadavg: os.loadavg() }, `${lines.join('\n')}\n`);
    process.stdout.write(`Results: ${file}.{json,md}\n`);
    return results.some((r) => r.error || r.failedPulls > 0) ? 1 : 0;
  } finally {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined);
    await sleep(0);
  }
}
