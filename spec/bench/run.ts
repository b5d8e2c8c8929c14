/**
 * `npm run bench`: pullmirror next to distribution (docker-registry 2.8, proxy mode), both
 * pulling through from the same local Docker-Hub-style upstream (token server + docker-registry).
 *
 * Not a test: it prints a table, informational PASS/FAIL lines for the targets, and writes the
 * same as JSON + markdown to spec/bench/results/bench-<timestamp>.{json,md} (git-ignored).
 *
 * Each server has its own empty storage and talks to the upstream registry directly: nothing
 * sits in between on loopback (a relay in the bench process used to cap every cold transfer at
 * 170–194 MiB/s). Upstream requests are counted from the upstream registry's own access log
 * (spec/support/access-log.ts); the scenarios run one server at a time (pullmirror first, then
 * distribution), never both at once, so each server's requests are the lines logged during its
 * scenario. Everything listens on 127.0.0.1.
 *
 * The bench process itself runs the clients and the token server, so it competes with the
 * servers (and wrk) for CPU: on a 2-core machine absolute numbers are lower than on real
 * hardware; the ratios are the interesting part.
 *
 * Other cases: `npm run bench -- link` (through a link-shaped upstream, spec/bench/link.ts),
 * `stall` (stalled readers, spec/bench/stall.ts), `gc`, `fleet` (a fleet simulation, spec/bench/fleet-sim.ts), `fleet-store`, `hit` (spec/bench/hit.ts), `s3`
 * (the store on S3, spec/bench/s3.ts). BENCH_BLOB_MIB=N (default 256)
 * sets the big blobs' size for every case, for short runs while developing.
 *
 * Exit status: 0 when the bench ran (targets are informational), 1 when the harness failed or
 * pullmirror answered wrongly (error status, wrong digest), 130 on SIGINT/SIGTERM.
 * BENCH_KEEP=1 keeps the servers' temp dirs (logs, stores) and prints where they are.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { fetchToken, MT, pushImage, pushRandomBlob, randomLayer } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { findBinary, tempDir, type TempDir } from '../support/processes.ts';
import { blobDataPath, startDistributionProxy, startUpstreamRegistry, type RegistryServer } from '../support/registry.ts';
import { startTokenServer, type TokenServer } from '../support/token-server.ts';
import { accessLogCounter, type UpstreamRequests } from '../support/access-log.ts';
import { benchScale } from './scale.ts';
import { benchGc } from './gc.ts';
import { benchFleetCase } from './fleet.ts';
import { benchFleetSimCase } from './fleet-sim.ts';
import { benchLinkCase } from './link.ts';
import { benchStallCase } from './stall.ts';
import { benchHitCase } from './hit.ts';
import { benchS3Case } from './s3.ts';
import { BLOB_MIB, blobPathInStore, GiB, MiB, ratio, readCpuSeconds, readProcMem, table, waitForFile, type ProcMem, type Row } from './measure.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(HERE, 'results');

const REPO = 'library/bench';
const TAG = 'latest';
const CONCURRENCY = 16;
const WARM_1_SECONDS = 3;
const WARM_16_SECONDS = 4;
const WRK_CONNECTIONS = 32;
const WRK_THREADS = 2;
const WRK_SECONDS = 10;
const RSS_SAMPLE_MS = 100;
const MANY_CONNECTIONS = 500;
const MANY_SECONDS = 30;
const REQUEST_IDLE_TIMEOUT_MS = 60_000;
const WHOLE_BENCH_TIMEOUT_MS = 40 * 60_000;
const RSS_TARGET_BYTES = 150e6; // "150 MB"

const MANIFEST_ACCEPT = [MT.dockerManifest, MT.dockerList, MT.ociManifest, MT.ociIndex].join(', ');

// ---------------------------------------------------------------------------
// Output

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ---------------------------------------------------------------------------
// Cleanup of everything we started (by pid / handle), on success, error, signal or timeout

const cleanups: Array<{ what: string; run: () => Promise<void> | void }> = [];
let cleaningUp: Promise<void> | undefined;
const wrkChildren = new Set<ChildProcess>();

function onCleanup(what: string, run: () => Promise<void> | void): void {
  cleanups.push({ what, run });
}

function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const child of wrkChildren) {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    // Reverse start order: servers before the proxies/upstream they talk to.
    for (const { what, run } of cleanups.reverse()) {
      try {
        await Promise.race([run(), sleep(10_000)]);
      } catch (err) {
        log(`cleanup of ${what} failed: ${String(err)}`);
      }
    }
  })();
  return cleaningUp;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------
// HTTP client (node:http, keep-alive, streamed hashing)

const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 64 });

interface GetResult {
  status: number;
  bytes: number;
  ms: number;
  sha256?: string;
  headers: Record<string, string | string[] | undefined>;
  /** First bytes of a non-200 body, for error messages. */
  errorBody?: string;
}

function get(url: string, opts: { hash?: boolean; headers?: Record<string, string> } = {}): Promise<GetResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = httpRequest(url, { method: 'GET', agent, headers: opts.headers }, (res) => {
      const status = res.statusCode ?? 0;
      const hash = opts.hash && status === 200 ? createHash('sha256') : undefined;
      let bytes = 0;
      const errChunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (hash) hash.update(chunk);
        else if (status !== 200 && bytes <= 4096) errChunks.push(chunk);
      });
      res.on('end', () => {
        resolve({
          status,
          bytes,
          ms: performance.now() - started,
          sha256: hash ? `sha256:${hash.digest('hex')}` : undefined,
          headers: res.headers,
          errorBody: status !== 200 ? Buffer.concat(errChunks).toString('utf8').slice(0, 500) : undefined,
        });
      });
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`response aborted after ${bytes} bytes`)));
    });
    req.setTimeout(REQUEST_IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no data for ${REQUEST_IDLE_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** A GET that never rejects: transport errors become status 0 with the message. */
async function safeGet(url: string, opts: { hash?: boolean; headers?: Record<string, string> } = {}): Promise<GetResult & { error?: string }> {
  const started = performance.now();
  try {
    return await get(url, opts);
  } catch (err) {
    return { status: 0, bytes: 0, ms: performance.now() - started, headers: {}, error: (err as Error).message };
  }
}

// ---------------------------------------------------------------------------
// RSS from /proc

/** Samples VmRSS of `pid` every 100 ms while `fn` runs; returns fn's result, the peak seen and the CPU seconds `pid` used. */
async function withRssSampling<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; peakRss: number; samples: number; cpuSeconds: number }> {
  const cpuBefore = await readCpuSeconds(pid);
  let peak = 0;
  let samples = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      const mem = await readProcMem(pid);
      if (mem && Number.isFinite(mem.rss)) {
        peak = Math.max(peak, mem.rss);
        samples += 1;
      }
      await sleep(RSS_SAMPLE_MS);
    }
  })();
  try {
    const result = await fn();
    const cpuSeconds = (await readCpuSeconds(pid)) - cpuBefore;
    return { result, peakRss: peak, samples, cpuSeconds };
  } finally {
    running = false;
    await sampler;
    // One last sample so a short scenario still has a value.
    const mem = await readProcMem(pid);
    if (mem && Number.isFinite(mem.rss)) peak = Math.max(peak, mem.rss);
  }
}

// ---------------------------------------------------------------------------
// The servers under test

interface Server {
  name: 'pullmirror' | 'distribution';
  url: string;
  pid: number;
  /** Requests the upstream registry logged (since the last reset()). */
  upstream: UpstreamRequests;
  /** Resolves once the server has finished storing `digest` (distribution stores in the background). */
  blobStored(digest: string, size: number): Promise<void>;
  logTail(): string;
  logFile: string;
}

function blobGets(upstream: UpstreamRequests, digest: string): number {
  return upstream.count('GET', new RegExp(`/blobs/${digest}$`));
}

/** Upstream GETs of `digest` by status, e.g. { '200': 1, '401': 1 }. Only 2xx ones carry the blob. */
function blobGetStatuses(upstream: UpstreamRequests, digest: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of upstream.requests) {
    if (r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`)) out[String(r.status)] = (out[String(r.status)] ?? 0) + 1;
  }
  return out;
}

const ok2xx = (statuses: Record<string, number>): number => Object.entries(statuses).reduce((n, [st, c]) => n + (/^2/.test(st) ? c : 0), 0);
const statusText = (statuses: Record<string, number>): string =>
  Object.entries(statuses)
    .map(([st, c]) => `${c}×${st}`)
    .join(' + ') || 'none';

/** Wait until the upstream's logged request count for `digest` stopped changing for 1 s (max 30 s). */
async function settledBlobGets(upstream: UpstreamRequests, digest: string): Promise<number> {
  const deadline = performance.now() + 30_000;
  let last = blobGets(upstream, digest);
  let stableSince = performance.now();
  while (performance.now() < deadline) {
    await sleep(200);
    const now = blobGets(upstream, digest);
    if (now !== last) {
      last = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 1000) {
      break;
    }
  }
  return last;
}

// ---------------------------------------------------------------------------
// Scenarios

interface ColdOne {
  ok: boolean;
  error?: string;
  mibps?: number;
  seconds?: number;
  upstreamGets: number;
  /** Upstream GETs by status; 401 = the unauthenticated try that fetches the token challenge. */
  upstreamStatuses: Record<string, number>;
  /** Server CPU seconds (user + system, all threads) from the request until the blob was stored (distribution's background fill included). */
  cpuSeconds: number;
  /** cpuSeconds per GiB of blob. */
  cpuSecondsPerGiB?: number;
  cacheHeader?: string;
}

async function coldSingle(server: Server, digest: string, size: number): Promise<ColdOne> {
  server.upstream.reset();
  // CPU is read once the blob is stored: distribution fetches it a second time in the background.
  const { result: r, cpuSeconds } = await withRssSampling(server.pid, async () => {
    const got = await safeGet(`${server.url}/v2/${REPO}/blobs/${digest}`, { hash: true });
    if (got.status === 200 && got.bytes === size && got.sha256 === digest) await server.blobStored(digest, size);
    return got;
  });
  const failed = r.status !== 200 ? `HTTP ${r.status}${r.error ? ` (${r.error})` : ''}${r.errorBody ? `: ${r.errorBody.trim()}` : ''}` : undefined;
  const badBody = !failed && (r.bytes !== size || r.sha256 !== digest) ? `got ${r.bytes} bytes, ${r.sha256} (expected ${size} bytes, ${digest})` : undefined;
  const upstreamGets = await settledBlobGets(server.upstream, digest);
  const error = failed ?? badBody;
  return {
    ok: !error,
    error,
    mibps: error ? undefined : size / MiB / (r.ms / 1000),
    seconds: r.ms / 1000,
    upstreamGets,
    upstreamStatuses: blobGetStatuses(server.upstream, digest),
    cpuSeconds,
    cpuSecondsPerGiB: cpuSeconds / (size / GiB),
    cacheHeader: header(r.headers['x-pullmirror-cache']),
  };
}

interface ColdMany {
  ok: boolean;
  error?: string;
  wallSeconds: number;
  aggregateMibps?: number;
  slowestSeconds: number;
  fastestSeconds: number;
  verified: number;
  upstreamGets: number;
  upstreamStatuses: Record<string, number>;
  peakRss: number;
  cpuSeconds: number;
}

async function coldConcurrent(server: Server, digest: string, size: number): Promise<ColdMany> {
  server.upstream.reset();
  const url = `${server.url}/v2/${REPO}/blobs/${digest}`;
  const started = performance.now();
  const { result, peakRss, cpuSeconds } = await withRssSampling(server.pid, () => Promise.all(Array.from({ length: CONCURRENCY }, () => safeGet(url, { hash: true }))));
  const wallSeconds = (performance.now() - started) / 1000;
  const verified = result.filter((r) => r.status === 200 && r.bytes === size && r.sha256 === digest).length;
  const errors = [
    ...new Set(
      result
        .filter((r) => !(r.status === 200 && r.bytes === size && r.sha256 === digest))
        .map((r) => (r.status !== 200 ? `HTTP ${r.status}${r.error ? ` (${r.error})` : ''}${r.errorBody ? `: ${r.errorBody.trim()}` : ''}` : `wrong body: ${r.bytes} bytes, ${r.sha256}`)),
    ),
  ];
  if (verified > 0) await server.blobStored(digest, size);
  const upstreamGets = await settledBlobGets(server.upstream, digest);
  return {
    ok: verified === CONCURRENCY,
    error: errors.length ? `${CONCURRENCY - verified}/${CONCURRENCY} clients failed: ${errors.join('; ')}` : undefined,
    wallSeconds,
    aggregateMibps: verified === CONCURRENCY ? (CONCURRENCY * size) / MiB / wallSeconds : undefined,
    slowestSeconds: Math.max(...result.map((r) => r.ms)) / 1000,
    fastestSeconds: Math.min(...result.map((r) => r.ms)) / 1000,
    verified,
    upstreamGets,
    upstreamStatuses: blobGetStatuses(server.upstream, digest),
    peakRss,
    cpuSeconds,
  };
}

interface Warm {
  ok: boolean;
  error?: string;
  clients: number;
  mibps?: number;
  gets: number;
  seconds: number;
  upstreamGets: number;
  peakRss: number;
  cpuSeconds: number;
  /** Bytes served per server CPU second, in MiB. */
  mibPerCpuSecond?: number;
  cacheHeader?: string;
}

/** `clients` loops of full GETs until `seconds` have passed (each finishes its current GET). Bodies are counted, not hashed. */
async function warm(server: Server, digest: string, size: number, clients: number, seconds: number): Promise<Warm> {
  const url = `${server.url}/v2/${REPO}/blobs/${digest}`;
  // One hashed GET first: it must be a correct, cached answer.
  const check = await safeGet(url, { hash: true });
  if (check.status !== 200 || check.sha256 !== digest) {
    return { ok: false, error: `warm check GET: HTTP ${check.status} ${check.error ?? check.errorBody ?? ''} ${check.sha256 ?? ''}`.trim(), clients, gets: 0, seconds: 0, upstreamGets: 0, peakRss: 0, cpuSeconds: 0 };
  }
  server.upstream.reset();
  let bytes = 0;
  let gets = 0;
  const errors: string[] = [];
  const started = performance.now();
  const until = started + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < until && errors.length === 0) {
      const r = await safeGet(url);
      if (r.status !== 200 || r.bytes !== size) {
        errors.push(`HTTP ${r.status} ${r.error ?? r.errorBody ?? ''} (${r.bytes} bytes)`.trim());
        return;
      }
      bytes += r.bytes;
      gets += 1;
    }
  };
  const { peakRss, cpuSeconds } = await withRssSampling(server.pid, () => Promise.all(Array.from({ length: clients }, loop)));
  const elapsed = (performance.now() - started) / 1000;
  return {
    ok: errors.length === 0,
    error: errors[0],
    clients,
    mibps: errors.length === 0 ? bytes / MiB / elapsed : undefined,
    gets,
    seconds: elapsed,
    upstreamGets: blobGets(server.upstream, digest),
    peakRss,
    cpuSeconds,
    mibPerCpuSecond: cpuSeconds > 0 ? bytes / MiB / cpuSeconds : undefined,
    cacheHeader: header(check.headers['x-pullmirror-cache']),
  };
}

interface WrkResult {
  ok: boolean;
  error?: string;
  reference: string;
  rps?: number;
  requests?: number;
  non2xx?: number;
  socketErrors?: number;
  p50ms?: number;
  p99ms?: number;
  cpuSeconds?: number;
  upstreamManifestGets: number;
  upstreamManifestHeads: number;
}

/** wrk's end-of-run hook: one BENCH_JSON line with counts, errors and latency percentiles. */
const WRK_REPORT = `done = function(summary, latency, requests)
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

/** The figures of a BENCH_JSON line; any non-2xx answer or socket error makes the run not ok. */
function wrkFigures(line: string) {
  const s = JSON.parse(line) as Record<string, number>;
  const socketErrors = s.connect + s.read + s.write + s.timeout;
  return {
    ok: s.status === 0 && socketErrors === 0,
    error: s.status || socketErrors ? `${s.status} non-2xx/3xx, ${socketErrors} socket errors (connect ${s.connect}, read ${s.read}, write ${s.write}, timeout ${s.timeout})` : undefined,
    rps: s.requests / (s.duration_us / 1e6),
    requests: s.requests,
    non2xx: s.status,
    socketErrors,
    p50ms: s.p50_us / 1000,
    p99ms: s.p99_us / 1000,
  };
}

function wrkScript(dir: string): string {
  const file = path.join(dir, 'manifest.lua');
  writeFileSync(
    file,
    `-- pullmirror bench: GET a manifest with the Accept header a Docker client sends.
wrk.method = "GET"
wrk.headers["Accept"] = "${MANIFEST_ACCEPT}"
${WRK_REPORT}`,
  );
  return file;
}

/**
 * wrk script for the many-connections run: each request is the next of a fixed rotation of
 * warm content a pull asks for (manifest by tag, by digest, config blob, layer blob).
 */
function mixedScript(dir: string, paths: string[]): string {
  const file = path.join(dir, 'mixed.lua');
  writeFileSync(
    file,
    `-- pullmirror bench: rotate over the requests of a warm pull.
local paths = { ${paths.map((p) => JSON.stringify(p)).join(', ')} }
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], { ["Accept"] = "${MANIFEST_ACCEPT}" })
end
${WRK_REPORT}`,
  );
  return file;
}

interface ManyResult {
  ok: boolean;
  error?: string;
  rps?: number;
  requests?: number;
  non2xx?: number;
  socketErrors?: number;
  p99ms?: number;
  peakRss: number;
  cpuSeconds: number;
  upstreamRequests: number;
}

/** MANY_CONNECTIONS keep-alive connections on warm content for MANY_SECONDS (issue 3). */
async function manyConnections(server: Server, wrk: string, script: string, checkPaths: string[]): Promise<ManyResult> {
  for (const p of checkPaths) {
    const r = await safeGet(`${server.url}${p}`, { headers: { accept: MANIFEST_ACCEPT } });
    if (r.status !== 200) return { ok: false, error: `warm-up GET ${p}: HTTP ${r.status} ${r.error ?? r.errorBody ?? ''}`.trim(), peakRss: 0, cpuSeconds: 0, upstreamRequests: 0 };
  }
  server.upstream.reset();
  const { result: run, peakRss, cpuSeconds } = await withRssSampling(server.pid, () =>
    runAsync(wrk, ['-t', String(WRK_THREADS), '-c', String(MANY_CONNECTIONS), '-d', `${MANY_SECONDS}s`, '--timeout', '10s', '-s', script, server.url], (MANY_SECONDS + 60) * 1000),
  );
  const upstreamRequests = server.upstream.requests.length;
  const line = /^BENCH_JSON (.*)$/m.exec(run.stdout)?.[1];
  if (run.code !== 0 || !line) {
    return { ok: false, error: `wrk exited ${run.code}: ${(run.stderr || run.stdout).trim().slice(0, 500)}`, peakRss, cpuSeconds, upstreamRequests };
  }
  return {
    ...wrkFigures(line),
    peakRss,
    cpuSeconds,
    upstreamRequests,
  };
}

function runAsync(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    wrkChildren.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      wrkChildren.delete(child);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      wrkChildren.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

async function manifestRate(server: Server, wrk: string, script: string, reference: string, expectDigest: string): Promise<WrkResult> {
  const url = `${server.url}/v2/${REPO}/manifests/${reference}`;
  const base = { reference, upstreamManifestGets: 0, upstreamManifestHeads: 0 };
  // Warm-up: one GET so the manifest is cached, and it must be the right one.
  const first = await safeGet(url, { headers: { accept: MANIFEST_ACCEPT } });
  const got = header(first.headers['docker-content-digest']);
  if (first.status !== 200 || got !== expectDigest) {
    return { ...base, ok: false, error: `warm-up GET ${reference}: HTTP ${first.status} ${first.error ?? first.errorBody ?? ''} digest ${got}`.trim() };
  }
  server.upstream.reset();
  const cpuBefore = await readCpuSeconds(server.pid);
  const run = await runAsync(wrk, ['-t', String(WRK_THREADS), '-c', String(WRK_CONNECTIONS), '-d', `${WRK_SECONDS}s`, '--timeout', '5s', '-s', script, url], (WRK_SECONDS + 30) * 1000);
  const cpuSeconds = (await readCpuSeconds(server.pid)) - cpuBefore;
  const upstreamManifestGets = server.upstream.count('GET', /\/manifests\//);
  const upstreamManifestHeads = server.upstream.count('HEAD', /\/manifests\//);
  const line = /^BENCH_JSON (.*)$/m.exec(run.stdout)?.[1];
  if (run.code !== 0 || !line) {
    return { ...base, ok: false, error: `wrk exited ${run.code}: ${(run.stderr || run.stdout).trim().slice(0, 500)}`, upstreamManifestGets, upstreamManifestHeads };
  }
  return {
    ...base,
    ...wrkFigures(line),
    cpuSeconds,
    upstreamManifestGets,
    upstreamManifestHeads,
  };
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

// ---------------------------------------------------------------------------
// Report

const mib = (bytes: number | undefined): number | undefined => (bytes === undefined || !Number.isFinite(bytes) ? undefined : bytes / MiB);

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const benchStarted = performance.now();
  const loadBefore = os.loadavg();
  const wrk = findBinary('/usr/bin/wrk') ?? findBinary('wrk');
  const missing = ['docker-registry', 'openssl'].filter((b) => !findBinary(b));
  if (!wrk) {
    log('ERROR: wrk not found (looked for /usr/bin/wrk and wrk on PATH). Install the Debian package: apt-get install wrk');
    return 1;
  }
  if (missing.length) {
    log(`ERROR: missing binaries: ${missing.join(', ')} (Debian: apt-get install docker-registry openssl)`);
    return 1;
  }
  const keep = process.env.BENCH_KEEP === '1';
  const work: TempDir = tempDir('pullmirror-bench');
  onCleanup('bench temp dir', () => (keep ? undefined : work.cleanup()));
  const script = wrkScript(work.path);

  // --- upstream: token server + docker-registry, fixtures pushed with the pusher account
  log('starting token server and upstream docker-registry');
  const tokens: TokenServer = await startTokenServer({
    users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password },
  });
  onCleanup('token server', () => tokens.close());
  const registry: RegistryServer = await startUpstreamRegistry({ tokenServer: tokens });
  onCleanup(`upstream docker-registry pid ${registry.pid}`, () => (keep ? registry.process.stop() : registry.stop()));

  log(`pushing ${REPO}:${TAG} and two ${BLOB_MIB} MiB blobs`);
  const image = await pushImage(registry.url, PUSHER, { name: REPO, tag: TAG, layers: [randomLayer('bench-small', 64 * 1024)], format: 'docker' });
  const blobA = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-cold-single' });
  const blobB = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-cold-concurrent' });

  // --- the two servers, straight on the upstream, each with empty storage
  log('starting pullmirror and distribution (proxy mode)');
  const mirror: RunningMirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true });
  const mirrorDir = path.dirname(mirror.configFile);
  onCleanup(`pullmirror pid ${mirror.process.pid}`, async () => {
    await mirror.stop();
    if (!keep) rmSync(mirrorDir, { recursive: true, force: true });
  });
  const dist: RegistryServer = await startDistributionProxy({ remoteurl: registry.url, ...MIRROR_ACCOUNT });
  onCleanup(`distribution pid ${dist.pid}`, () => (keep ? dist.process.stop() : dist.stop()));
  if (keep) log(`BENCH_KEEP=1: pullmirror dir ${mirrorDir}, distribution ${path.dirname(dist.configPath)}, upstream ${path.dirname(registry.configPath)}`);

  const servers: Server[] = [
    {
      name: 'pullmirror',
      url: mirror.url,
      pid: mirror.process.pid,
      upstream: accessLogCounter(registry.logFile),
      // Today the mirror holds back a fill's last byte until the blob is stored; poll its store
      // anyway, so the figure stays right if it ever answers first.
      blobStored: async (digest, size) => {
        if (!(await waitForFile(blobPathInStore(mirror.root, digest), size, 60_000))) log(`pullmirror had not stored ${digest} after 60 s`);
      },
      logTail: () => mirror.process.readLog(3000),
      logFile: mirror.process.logFile,
    },
    {
      name: 'distribution',
      url: dist.url,
      pid: dist.pid,
      upstream: accessLogCounter(registry.logFile),
      // distribution stores a proxied blob in a background goroutine: wait for it (max 60 s).
      blobStored: async (digest, size) => {
        if (!(await waitForFile(blobDataPath(dist.rootDir, digest), size, 60_000))) log(`distribution had not stored ${digest} after 60 s`);
      },
      logTail: () => dist.readLog(3000),
      logFile: dist.logFile,
    },
  ];
  const [pm, ds] = servers;
  for (const s of servers) {
    const r = await safeGet(`${s.url}/v2/`);
    if (r.status !== 200) throw new Error(`${s.name} GET /v2/ → ${r.status} ${r.errorBody ?? r.error ?? ''}`);
  }
  await sleep(500);
  const idleMem: Record<string, ProcMem | undefined> = {};
  for (const s of servers) idleMem[s.name] = await readProcMem(s.pid);

  // --- the limit: the same GET straight from the upstream registry, no cache in between
  log(`0. limit: GET ${BLOB_MIB} MiB straight from the upstream registry (no mirror)`);
  const reference = await (async () => {
    const challenge = await safeGet(`${registry.url}/v2/`);
    const token = await fetchToken(header(challenge.headers['www-authenticate']) ?? '', MIRROR_ACCOUNT, `repository:${REPO}:pull`);
    const cpuBefore = await readCpuSeconds(registry.pid);
    const r = await get(`${registry.url}/v2/${REPO}/blobs/${blobA.digest}`, { hash: true, headers: { authorization: `Bearer ${token}` } });
    const upstreamCpuSeconds = (await readCpuSeconds(registry.pid)) - cpuBefore;
    if (r.status !== 200 || r.sha256 !== blobA.digest) throw new Error(`reference GET from upstream: HTTP ${r.status} ${r.errorBody ?? ''}`);
    return { mibps: blobA.size / MiB / (r.ms / 1000), upstreamCpuSeconds };
  })();

  // --- 1. one cold GET of a 256 MiB blob
  const cold1: Record<string, ColdOne> = {};
  for (const s of servers) {
    log(`1. cold GET ${BLOB_MIB} MiB: ${s.name}`);
    cold1[s.name] = await coldSingle(s, blobA.digest, blobA.size);
    if (cold1[s.name].error) log(`   ${s.name} cold GET failed: ${cold1[s.name].error}`);
  }

  // --- 2. 16 concurrent cold GETs of another blob
  const cold16: Record<string, ColdMany> = {};
  for (const s of servers) {
    log(`2. ${CONCURRENCY} concurrent cold GETs of ${BLOB_MIB} MiB: ${s.name}`);
    cold16[s.name] = await coldConcurrent(s, blobB.digest, blobB.size);
    if (cold16[s.name].error) log(`   ${s.name}: ${cold16[s.name].error}`);
  }

  // --- 3. warm GETs of the now-cached blob B
  const warm1: Record<string, Warm> = {};
  const warm16: Record<string, Warm> = {};
  for (const s of servers) {
    log(`3. warm GETs, 1 client then ${CONCURRENCY}: ${s.name}`);
    warm1[s.name] = await warm(s, blobB.digest, blobB.size, 1, WARM_1_SECONDS);
    warm16[s.name] = await warm(s, blobB.digest, blobB.size, CONCURRENCY, WARM_16_SECONDS);
    for (const w of [warm1[s.name], warm16[s.name]]) if (w.error) log(`   ${s.name} warm (${w.clients} clients): ${w.error}`);
  }

  // --- 4. manifests with wrk
  const byDigest: Record<string, WrkResult> = {};
  const byTag: Record<string, WrkResult> = {};
  for (const s of servers) {
    log(`4. manifest req/s by digest and by tag (wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS} -d${WRK_SECONDS}s): ${s.name}`);
    byDigest[s.name] = await manifestRate(s, wrk, script, image.manifestDigest, image.manifestDigest);
    byTag[s.name] = await manifestRate(s, wrk, script, TAG, image.manifestDigest);
    for (const w of [byDigest[s.name], byTag[s.name]]) if (w.error) log(`   ${s.name} manifests/${w.reference}: ${w.error}`);
  }

  // --- 5. many connections on warm content
  const warmPaths = [
    `/v2/${REPO}/manifests/${TAG}`,
    `/v2/${REPO}/manifests/${image.manifestDigest}`,
    `/v2/${REPO}/blobs/${image.configDigest}`,
    `/v2/${REPO}/blobs/${image.layerDigests[0]}`,
  ];
  const mixed = mixedScript(work.path, warmPaths);
  const many: Record<string, ManyResult> = {};
  for (const s of servers) {
    log(`5. ${MANY_CONNECTIONS} connections for ${MANY_SECONDS} s on warm content (wrk -t${WRK_THREADS} -c${MANY_CONNECTIONS}): ${s.name}`);
    many[s.name] = await manyConnections(s, wrk, mixed, warmPaths);
    if (many[s.name].error) log(`   ${s.name}: ${many[s.name].error}`);
  }

  // --- 6. memory at the end
  const endMem: Record<string, ProcMem | undefined> = {};
  for (const s of servers) endMem[s.name] = await readProcMem(s.pid);
  const logSizes: Record<string, number> = {};
  for (const s of servers) logSizes[s.name] = existsSync(s.logFile) ? statSync(s.logFile).size : 0;

  // --- report
  const both = <T>(rec: Record<string, T>, f: (v: T) => number | string | undefined): [number | string | undefined, number | string | undefined] => [f(rec[pm.name]), f(rec[ds.name])];
  const row = (metric: string, better: Row['better'], [a, b]: [number | string | undefined, number | string | undefined], digits = 1): Row => ({ metric, better, pm: a, dist: b, digits });
  const coldMibps = (c: ColdOne): number | string | undefined => (c.error ? 'ERROR' : c.mibps);
  const rows: Row[] = [
    row(`0. limit: the same GET straight from the upstream registry: MiB/s`, '', [reference.mibps, reference.mibps]),
    row(`1. cold GET ${BLOB_MIB} MiB, 1 client: MiB/s`, 'higher', both(cold1, coldMibps)),
    row('1. cold GET: server CPU s (all threads, until stored)', 'lower', both(cold1, (c) => c.cpuSeconds), 2),
    row('1. cold GET: server CPU s per GiB', 'lower', both(cold1, (c) => c.cpuSecondsPerGiB), 2),
    row('1. cold GET: upstream blob GETs with 2xx (carrying the blob)', 'lower', both(cold1, (c) => ok2xx(c.upstreamStatuses)), 0),
    row('1. cold GET: all upstream blob GETs by status', '', both(cold1, (c) => statusText(c.upstreamStatuses))),
    row(`2. cold GET ${BLOB_MIB} MiB, ${CONCURRENCY} clients: wall s`, 'lower', both(cold16, (c) => (c.verified === 0 ? 'ERROR' : c.wallSeconds)), 2),
    row(`2. cold ${CONCURRENCY} clients: aggregate MiB/s`, 'higher', both(cold16, (c) => (c.error ? 'ERROR' : c.aggregateMibps))),
    row(`2. cold ${CONCURRENCY} clients: server CPU s`, 'lower', both(cold16, (c) => c.cpuSeconds), 1),
    row(`2. cold ${CONCURRENCY} clients: sha256 verified`, '', both(cold16, (c) => `${c.verified}/${CONCURRENCY}`)),
    row(`2. cold ${CONCURRENCY} clients: upstream blob GETs with 2xx`, 'lower', both(cold16, (c) => ok2xx(c.upstreamStatuses)), 0),
    row(`2. cold ${CONCURRENCY} clients: all upstream blob GETs by status`, '', both(cold16, (c) => statusText(c.upstreamStatuses))),
    row('3. warm GET, 1 client: MiB/s', 'higher', both(warm1, (w) => (w.error ? 'ERROR' : w.mibps))),
    row(`3. warm GET, ${CONCURRENCY} clients: aggregate MiB/s`, 'higher', both(warm16, (w) => (w.error ? 'ERROR' : w.mibps))),
    row(`3. warm GET, ${CONCURRENCY} clients: MiB served per server CPU s`, 'higher', both(warm16, (w) => w.mibPerCpuSecond)),
    row('3. warm GETs: upstream blob GETs', 'lower', [warm1[pm.name].upstreamGets + warm16[pm.name].upstreamGets, warm1[ds.name].upstreamGets + warm16[ds.name].upstreamGets], 0),
    row(`4. manifest by digest: req/s (${WRK_CONNECTIONS} conns)`, 'higher', both(byDigest, (w) => w.rps ?? 'ERROR'), 0),
    row('4. manifest by digest: non-2xx / socket errors', 'lower', both(byDigest, (w) => (w.requests === undefined ? 'n/a' : `${w.non2xx} / ${w.socketErrors}`))),
    row('4. manifest by digest: p99 ms', 'lower', both(byDigest, (w) => w.p99ms), 2),
    row('4. manifest by digest: server CPU s over the run', '', both(byDigest, (w) => w.cpuSeconds), 1),
    row(`4. manifest by tag: req/s (${WRK_CONNECTIONS} conns)`, 'higher', both(byTag, (w) => w.rps ?? 'ERROR'), 0),
    row('4. manifest by tag: non-2xx / socket errors', 'lower', both(byTag, (w) => (w.requests === undefined ? 'n/a' : `${w.non2xx} / ${w.socketErrors}`))),
    row('4. manifest by tag: p99 ms', 'lower', both(byTag, (w) => w.p99ms), 2),
    row('4. manifest by tag: server CPU s over the run', '', both(byTag, (w) => w.cpuSeconds), 1),
    row('4. manifest by tag: upstream HEAD / GET', 'lower', both(byTag, (w) => `${w.upstreamManifestHeads} / ${w.upstreamManifestGets}`)),
    row(`5. ${MANY_CONNECTIONS} connections, warm pull requests: req/s`, 'higher', both(many, (m) => m.rps ?? 'ERROR'), 0),
    row(`5. ${MANY_CONNECTIONS} connections: non-2xx / socket errors`, 'lower', both(many, (m) => (m.requests === undefined ? 'n/a' : `${m.non2xx} / ${m.socketErrors}`))),
    row(`5. ${MANY_CONNECTIONS} connections: p99 ms`, 'lower', both(many, (m) => m.p99ms), 1),
    row(`5. ${MANY_CONNECTIONS} connections: peak RSS (MiB)`, 'lower', both(many, (m) => mib(m.peakRss))),
    row(`5. ${MANY_CONNECTIONS} connections: upstream requests`, 'lower', both(many, (m) => m.upstreamRequests), 0),
    row('6. RSS idle after start (MiB)', 'lower', both(idleMem, (m) => mib(m?.rss))),
    row(`6. peak RSS, ${CONCURRENCY} cold clients (MiB)`, 'lower', both(cold16, (c) => mib(c.peakRss))),
    row(`6. peak RSS, ${CONCURRENCY} warm clients (MiB)`, 'lower', both(warm16, (w) => mib(w.peakRss))),
    row('6. VmHWM at end (MiB)', 'lower', both(endMem, (m) => mib(m?.hwm))),
  ];

  // --- targets (informational)
  const targets: Array<{ name: string; verdict: 'PASS' | 'FAIL' | 'N/A'; detail: string }> = [];
  const target = (name: string, verdict: boolean | undefined, detail: string): void => {
    targets.push({ name, verdict: verdict === undefined ? 'N/A' : verdict ? 'PASS' : 'FAIL', detail });
  };
  const pmCold1 = cold1[pm.name];
  const dsCold1 = cold1[ds.name];
  const pm1 = pmCold1.upstreamStatuses;
  const pm16 = cold16[pm.name].upstreamStatuses;
  target(
    'pullmirror: exactly 1 upstream GET per cold blob, whatever the concurrency (counting GETs that carry the blob, i.e. 2xx)',
    ok2xx(pm1) === 1 && ok2xx(pm16) === 1,
    `1 client → ${statusText(pm1)}, ${CONCURRENCY} clients → ${statusText(pm16)}${pmCold1.upstreamGets + cold16[pm.name].upstreamGets > 2 ? ' (the 401s are bodiless unauthenticated tries answered with the token challenge; counting every GET, the target is missed)' : ''}`,
  );
  const ratioTarget = (name: string, a: number | undefined, b: number | undefined, factor: number, unit: string, why?: string): void => {
    if (a === undefined || b === undefined) {
      target(name, undefined, why ?? 'a server had errors');
      return;
    }
    const r = a / b;
    target(name, r >= factor, `${a.toFixed(1)} vs ${b.toFixed(1)} ${unit} = ${r.toFixed(2)}× (need ≥ ${factor}×${r < factor ? `; short by ${((factor * b - a) / (factor * b) * 100).toFixed(0)}%, i.e. ${(factor * b - a).toFixed(1)} ${unit}` : ''})`);
  };
  ratioTarget('cold MiB/s ≥ distribution (1 client; issue 12)', pmCold1.mibps, dsCold1.mibps, 1, 'MiB/s', `pullmirror: ${pmCold1.error ?? 'ok'}; distribution: ${dsCold1.error ?? 'ok'}`);
  ratioTarget('cold MiB/s ≥ 2× distribution (1 client)', pmCold1.mibps, dsCold1.mibps, 2, 'MiB/s', `pullmirror: ${pmCold1.error ?? 'ok'}; distribution: ${dsCold1.error ?? 'ok'}`);
  ratioTarget(`cold MiB/s ≥ 2× distribution (${CONCURRENCY} clients, aggregate)`, cold16[pm.name].aggregateMibps, cold16[ds.name].aggregateMibps, 2, 'MiB/s');
  ratioTarget('warm MiB/s ≥ distribution (1 client)', warm1[pm.name].mibps, warm1[ds.name].mibps, 1, 'MiB/s');
  ratioTarget(`warm MiB/s ≥ distribution (${CONCURRENCY} clients)`, warm16[pm.name].mibps, warm16[ds.name].mibps, 1, 'MiB/s');
  ratioTarget('manifest req/s ≥ 3× distribution (by digest)', byDigest[pm.name].rps, byDigest[ds.name].rps, 3, 'req/s');
  ratioTarget('manifest req/s ≥ 3× distribution (by tag)', byTag[pm.name].rps, byTag[ds.name].rps, 3, 'req/s');
  const pmPeak = Math.max(cold16[pm.name].peakRss, warm16[pm.name].peakRss);
  target(
    `pullmirror peak RSS < 150 MB while ${CONCURRENCY} clients stream a ${BLOB_MIB} MiB blob`,
    pmPeak > 0 ? pmPeak < RSS_TARGET_BYTES : undefined,
    `${(pmPeak / 1e6).toFixed(1)} MB (${(pmPeak / MiB).toFixed(1)} MiB), max of cold and warm ${CONCURRENCY}-client runs${pmPeak >= RSS_TARGET_BYTES ? `; over by ${((pmPeak - RSS_TARGET_BYTES) / 1e6).toFixed(1)} MB` : ''}`,
  );

  const pmMany = many[pm.name];
  target(
    `pullmirror: ${MANY_CONNECTIONS} connections on warm content for ${MANY_SECONDS} s with 0 errors`,
    pmMany.requests === undefined ? undefined : pmMany.ok,
    pmMany.requests === undefined
      ? pmMany.error ?? 'did not run'
      : `${pmMany.requests} requests, ${pmMany.rps?.toFixed(0)} req/s, ${pmMany.non2xx} non-2xx, ${pmMany.socketErrors} socket errors, peak RSS ${(pmMany.peakRss / MiB).toFixed(1)} MiB`,
  );

  // --- notes: errors and oddities worth reading
  const notes: string[] = [];
  const cores = os.cpus().length;
  notes.push(
    `Host: ${cores} CPU core(s), ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}. The bench process runs the HTTP clients and the token server (nothing sits between the servers and the upstream); wrk (${WRK_THREADS} threads) runs beside the servers. They all compete for CPU with the server under test${cores <= 2 ? ' (only 2 cores here: absolute numbers are pessimistic, compare the ratios)' : ''}.`,
  );
  const loadAfter = os.loadavg();
  notes.push(
    `Load average (1/5/15 min) before: ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}. The bench alone keeps ~2 cores busy; a 1-min load well above that before the run means other work was competing and the numbers are noisy.`,
  );
  notes.push(
    `Limit: the same ${BLOB_MIB} MiB GET straight from the upstream docker-registry, no mirror, hashed by the client: ${reference.mibps.toFixed(1)} MiB/s (the upstream used ${reference.upstreamCpuSeconds.toFixed(2)} CPU s). A cold GET through a mirror cannot beat it. The servers talk to the upstream directly; upstream requests are counted from its access log.`,
    `Server CPU of a cold GET is utime+stime of the whole process (all threads) from the request until the blob was in the server's store, so distribution's second, background GET is included.`,
  );
  notes.push('Scenarios run one server at a time (pullmirror first, then distribution). Cold/warm blob clients use node:http with a keep-alive agent; cold bodies and the first warm GET are sha256-hashed as they stream, warm-throughput bodies are only counted (length checked).');
  notes.push(`Blob A (${blobA.digest}) is used for scenario 1, blob B (${blobB.digest}) for 2 and 3; both ${BLOB_MIB} MiB, in ${REPO}. Manifests: ${REPO}@${image.manifestDigest} and ${REPO}:${TAG}, Accept: ${MANIFEST_ACCEPT}.`);
  notes.push('"non-2xx" is wrk\'s status error count (responses with status ≥ 400); each wrk run is preceded by one checked GET (200 + Docker-Content-Digest).');
  for (const s of servers) {
    const n = s.name;
    if (cold1[n].error) notes.push(`${n}: scenario 1 cold GET failed: ${cold1[n].error}`);
    if (cold16[n].error) notes.push(`${n}: scenario 2: ${cold16[n].error}`);
    for (const w of [warm1[n], warm16[n]]) if (w.error) notes.push(`${n}: scenario 3 (${w.clients} clients): ${w.error}`);
    for (const w of [byDigest[n], byTag[n]]) if (w.error) notes.push(`${n}: scenario 4 manifests/${w.reference}: ${w.error}`);
    notes.push(
      `${n}: cold 16 clients: fastest ${cold16[n].fastestSeconds.toFixed(2)} s, slowest ${cold16[n].slowestSeconds.toFixed(2)} s; upstream manifest requests during wrk by digest: ${byDigest[n].upstreamManifestHeads} HEAD / ${byDigest[n].upstreamManifestGets} GET, by tag: ${byTag[n].upstreamManifestHeads} HEAD / ${byTag[n].upstreamManifestGets} GET (of ${byTag[n].requests ?? '?'} requests); log file grew to ${(logSizes[n] / MiB).toFixed(1)} MiB.`,
    );
  }
  if (cold1[pm.name].cacheHeader !== undefined || warm1[pm.name].cacheHeader !== undefined) {
    notes.push(`pullmirror X-Pullmirror-Cache: cold GET "${cold1[pm.name].cacheHeader}", warm check GET "${warm1[pm.name].cacheHeader}".`);
  }
  const dsGets = [cold1[ds.name].upstreamGets, cold16[ds.name].upstreamGets];
  if (dsGets.some((g) => g > 1)) {
    notes.push(`distribution fetched the cold blob from upstream ${dsGets[0]}× for 1 client and ${dsGets[1]}× for ${CONCURRENCY} clients: its proxy blob store streams each cold client from its own upstream GET and stores the blob with yet another GET in the background.`);
  }

  const { text, markdown } = table(rows);
  const targetLines = targets.map((t) => `${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`);
  const elapsed = (performance.now() - benchStarted) / 1000;
  const out = [
    '',
    `pullmirror vs distribution ${'(docker-registry proxy mode)'} — same local upstream, ${new Date().toISOString()}, ${elapsed.toFixed(0)} s`,
    '',
    text,
    '',
    'Targets (informational):',
    ...targetLines.map((l) => `  ${l}`),
    '',
    'Notes:',
    ...notes.map((n) => `  - ${n}`),
    '',
  ].join('\n');
  process.stdout.write(out);

  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const base = path.join(RESULTS_DIR, `bench-${stamp}`);
  const json = {
    date: new Date().toISOString(),
    elapsedSeconds: elapsed,
    host: { loadBefore, loadAfter, cores, cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.type()} ${os.release()}` },
    parameters: { blobMiB: BLOB_MIB, concurrency: CONCURRENCY, warm1Seconds: WARM_1_SECONDS, warm16Seconds: WARM_16_SECONDS, wrk: { threads: WRK_THREADS, connections: WRK_CONNECTIONS, seconds: WRK_SECONDS }, rssSampleMs: RSS_SAMPLE_MS },
    fixtures: { repo: REPO, tag: TAG, manifestDigest: image.manifestDigest, blobA, blobB },
    results: { referenceUpstreamMibps: reference.mibps, referenceUpstreamCpuSeconds: reference.upstreamCpuSeconds, idleMemory: idleMem, cold1, cold16, warm1, warm16, manifestsByDigest: byDigest, manifestsByTag: byTag, manyConnections: many, endMemory: endMem },
    table: rows.map((r) => ({ ...r, ratio: ratio(r) })),
    targets,
    notes,
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(
    `${base}.md`,
    [
      `# pullmirror vs distribution (proxy mode), ${json.date}`,
      '',
      markdown,
      '',
      '## Targets (informational)',
      '',
      ...targets.map((t) => `- **${t.verdict}** ${t.name}: ${t.detail}`),
      '',
      '## Notes',
      '',
      ...notes.map((n) => `- ${n}`),
      '',
    ].join('\n'),
  );
  process.stdout.write(`Results: ${base}.json and ${base}.md\n`);

  // Exit status: pullmirror must have answered correctly everywhere; distribution's errors are reported only.
  const pmFailures = [cold1[pm.name].error, cold16[pm.name].error, warm1[pm.name].error, warm16[pm.name].error, byDigest[pm.name].error, byTag[pm.name].error, many[pm.name].error].filter(Boolean);
  if (pmFailures.length) {
    log(`pullmirror answered wrongly (${pmFailures.length} scenario(s)); its log tail:\n${pm.logTail()}`);
    return 1;
  }
  return 0;
}

const watchdog = setTimeout(() => {
  log(`ERROR: the bench did not finish within ${WHOLE_BENCH_TIMEOUT_MS / 60_000} minutes; stopping everything`);
  void cleanup().finally(() => process.exit(1));
}, WHOLE_BENCH_TIMEOUT_MS);

let exitCode: number;
try {
  // `npm run bench` runs every case; `npm run bench -- gc` one of them.
  const cases: Record<string, () => Promise<number>> = {
    // pullmirror next to distribution: cold, warm, manifests, 500 connections, memory.
    main,
    // One eviction pass over 100 000 blobs (spec/bench/gc.ts).
    gc: () => benchGc(log),
    // A fleet-sized store (150 000 blobs): ops endpoints, an eviction pass inside the server, gc (spec/bench/scale.ts).
    scale: () => benchScale(log),
    // Two instances on one store and one Redis, 16 clients, a cold 256 MiB blob (spec/bench/fleet.ts).
    'fleet-store': () => benchFleetCase(log, BLOB_MIB),
    // A fleet simulation: 4 instances, Redis behind Sentinel, 1,000 clients through the uplink, an instance and the Redis master killed (spec/bench/fleet-sim.ts).
    fleet: () => benchFleetSimCase(log, onCleanup),
    // Through a link-shaped upstream (100 MiB/s shared, 20 ms rtt): 1 and 8 skopeo clients, and the limit (spec/bench/link.ts).
    link: () => benchLinkCase(log, onCleanup),
    // 400 clients that stop reading a cached 256 MiB blob: memory, descriptors, http.sendtimeout (spec/bench/stall.ts).
    stall: () => benchStallCase(log, onCleanup),
    // The blob path (issue 21): cold and warm next to distribution and nginx, auth on and off, BENCH_RUNS runs (spec/bench/hit.ts).
    hit: () => benchHitCase(log, onCleanup),
    // The store on S3 (issue 25): next to distribution's s3 driver on one RADOS Gateway, S3 requests per warm pull, BENCH_RUNS runs (spec/bench/s3.ts).
    s3: () => benchS3Case(log, onCleanup),
  };
  const chosen = process.argv.slice(2);
  const unknown = chosen.filter((name) => !Object.hasOwn(cases, name));
  if (unknown.length) throw new Error(`unknown bench case ${unknown.join(', ')} (cases: ${Object.keys(cases).join(', ')})`);
  exitCode = 0;
  for (const name of chosen.length ? chosen : Object.keys(cases)) {
    log(`=== bench case: ${name}`);
    exitCode = Math.max(exitCode, await cases[name]());
  }
} catch (e) {
  log(`ERROR: ${(e as Error).stack ?? String(e)}`);
  exitCode = 1;
} finally {
  clearTimeout(watchdog);
  log('stopping servers and proxies');
  await cleanup();
  agent.destroy();
}
process.exit(exitCode);
