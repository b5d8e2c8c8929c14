/**
 * Bench case `hit` (issue 21): the blob path's figures, pullmirror next to distribution (proxy
 * mode, Debian's docker-registry) and nginx (Debian's nginx-light, `sendfile on`, serving the
 * very file pullmirror stored: the disk's own limit), BENCH_RUNS runs (default 3) in a row,
 * medians and ranges in one table.
 *
 * Each run starts pullmirror and distribution on fresh, empty stores, on the same local
 * upstream (token server + docker-registry), one server at a time:
 * - cold, 1 client (blob A): MiB/s, server CPU s per GiB (all threads, until stored);
 * - cold, 16 clients (blob B): wall s, upstream GETs carrying the blob, CPU s per GiB served;
 * - warm, 1 and 16 clients (blob B): MiB/s and CPU s per GiB, nginx too;
 * - warm, 1 client, pullmirror with auth.htpasswd and with auth.token, as a ratio to no auth
 *   (three fresh processes on the same store, one after the other);
 * - pullmirror's peak RSS over the whole run (sampled every 100 ms).
 *
 * Server CPU is utime + stime of the server process from /proc/<pid>/stat (every thread).
 * Warm clients are wrk's (a C process; see `warm`), else node:http clients in this process;
 * cold clients are node:http in this process (bodies hashed). All share the machine's cores.
 *
 * `npm run bench -- hit`; BENCH_RUNS=N, BENCH_BLOB_MIB=N for short runs while developing.
 * Needs docker-registry and nginx (Debian: apt-get install docker-registry nginx-light).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { findBinary, freePort, tempDir, waitForHttp } from '../support/processes.ts';
import { accessLogCounter, type UpstreamRequests } from '../support/access-log.ts';
import { blobDataPath, startDistributionProxy, startUpstreamRegistry, type RegistryServer } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { BLOB_MIB, blobPathInStore, GiB, MiB, readCpuSeconds, readProcMem, target, waitForFile, writeResults, type Target } from './measure.ts';

const REPO = 'library/bench';
const RUNS = (() => {
  const n = Number(process.env.BENCH_RUNS ?? 3);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_RUNS must be a positive integer, got ${process.env.BENCH_RUNS}`);
  return n;
})();
const CONCURRENCY = 16;
const WARM_1_SECONDS = 3;
const WARM_16_SECONDS = 4;
const RSS_TARGET_BYTES = 150e6;
const AUTH_USER = { username: 'bench-user', password: 'bench-pass-7f3a' };
const TOKEN_SERVICE = 'pullmirror.bench';
const TOKEN_ISSUER = 'pullmirror-bench-issuer';

type Log = (message: string) => void;
type OnCleanup = (what: string, run: () => Promise<void> | void) => void;
type ServerName = 'pullmirror' | 'distribution' | 'nginx';

const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 64 });

interface Got {
  status: number;
  bytes: number;
  ms: number;
  sha256?: string;
  error?: string;
}

/** A GET whose body is counted (and hashed when asked); never rejects. */
export function get(url: string, options: { hash?: boolean; headers?: Record<string, string> } = {}): Promise<Got> {
  return new Promise((resolve) => {
    const started = performance.now();
    const fail = (error: Error, status = 0, bytes = 0) => resolve({ status, bytes, ms: performance.now() - started, error: error.message });
    const req = httpRequest(url, { agent, headers: options.headers }, (res) => {
      const hash = options.hash && res.statusCode === 200 ? createHash('sha256') : undefined;
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash?.update(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - started, sha256: hash && `sha256:${hash.digest('hex')}` }));
      res.on('error', (error) => fail(error, res.statusCode, bytes));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('no data for 60 s')));
    req.on('error', (error) => fail(error));
    req.end();
  });
}

/** Samples a process's RSS every 100 ms until stopped; answers the peak. */
export function rssWatch(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, (await readProcMem(pid))?.rss ?? 0);
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

export interface Served {
  url: string;
  pid: number;
  headers?: Record<string, string>;
}

export interface Flow {
  mibps?: number;
  cpuPerGiB: number;
  error?: string;
}

/**
 * `clients` loops of whole GETs for `seconds`; MiB/s and server CPU s per GiB served. With wrk
 * on the machine (Debian: apt-get install wrk) the clients are wrk's, in a process of their
 * own written in C: the in-process node:http clients cost about as much CPU as the server they
 * measure (nginx with sendfile reached only 600–700 MiB/s through them), so on 2 cores they,
 * not the server, set the ceiling. Without wrk, the in-process clients (said in the note).
 */
export async function warm(server: Served, size: number, clients: number, seconds: number): Promise<Flow> {
  const check = await get(server.url, { headers: server.headers });
  if (check.status !== 200 || check.bytes !== size) return { cpuPerGiB: NaN, error: `warm-up GET: HTTP ${check.status} ${check.error ?? ''} (${check.bytes} bytes)` };
  return WRK ? warmWithWrk(WRK, server, size, clients, seconds) : warmInProcess(server, size, clients, seconds);
}

const WRK = findBinary('wrk');

/** wrk's own summary, exact (its usual output rounds bytes to 3 digits). */
const WRK_SUMMARY_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("pullmirror-bench %d %d %d %d %d %d %d %d\\n", summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
end
`;

async function warmWithWrk(wrk: string, server: Served, size: number, clients: number, seconds: number): Promise<Flow> {
  const dir = tempDir('pullmirror-bench-wrk');
  try {
    const script = path.join(dir.path, 'summary.lua');
    writeFileSync(script, WRK_SUMMARY_SCRIPT);
    const headers = Object.entries(server.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
    // One thread per core at most: wrk's threads share the 2 cores with the server.
    const threads = Math.min(clients, Math.max(1, os.cpus().length));
    const cpuBefore = await readCpuSeconds(server.pid);
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(wrk, ['-t', String(threads), '-c', String(clients), '-d', `${seconds}s`, '--timeout', '60s', '-s', script, ...headers, server.url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.once('error', reject);
      child.once('exit', () => resolve(text));
    });
    const cpu = (await readCpuSeconds(server.pid)) - cpuBefore;
    const line = /pullmirror-bench (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(output);
    if (!line) return { cpuPerGiB: NaN, error: `wrk printed no summary: ${output.trim().slice(0, 300)}` };
    const [durationUs, requests, bytes, ...errors] = line.slice(1).map(Number);
    const failed = errors.reduce((a, b) => a + b, 0);
    // Every byte read in the time, whole bodies and the ones still in flight at the end (a few
    // hundred bytes of headers per answer aside): counting whole bodies only would quantize the
    // figure by a whole blob (16 clients of 256 MiB in 4 s complete a dozen answers or so).
    const served = bytes;
    if (failed > 0) return { cpuPerGiB: NaN, error: `wrk: ${failed} errors (connect/read/write/status/timeout ${errors.join('/')})` };
    if (bytes < requests * size) return { cpuPerGiB: NaN, error: `wrk read ${bytes} bytes for ${requests} answers of ${size}` };
    return { mibps: served / MiB / (durationUs / 1e6), cpuPerGiB: cpu / (served / GiB) };
  } finally {
    await dir.cleanup();
  }
}

async function warmInProcess(server: Served, size: number, clients: number, seconds: number): Promise<Flow> {
  let bytes = 0;
  let error: string | undefined;
  const cpuBefore = await readCpuSeconds(server.pid);
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until && !error) {
        const got = await get(server.url, { headers: server.headers });
        if (got.status !== 200 || got.bytes !== size) error = `HTTP ${got.status} ${got.error ?? ''} (${got.bytes} bytes)`;
        else bytes += got.bytes;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = (await readCpuSeconds(server.pid)) - cpuBefore;
  return { mibps: error ? undefined : bytes / MiB / elapsed, cpuPerGiB: cpu / (bytes / GiB), error };
}

export interface Cold extends Flow {
  wallSeconds: number;
  /** Upstream GETs of the blob answered 2xx (each carries the blob). */
  upstreamGets: number;
}

/** `clients` GETs at once of a blob the server lacks, hashed; CPU counted until it is stored. */
export async function cold(server: Served, upstream: UpstreamRequests, stored: () => Promise<void>, digest: string, size: number, clients: number): Promise<Cold> {
  upstream.reset();
  const cpuBefore = await readCpuSeconds(server.pid);
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: clients }, () => get(server.url, { hash: true })));
  const wallSeconds = (performance.now() - started) / 1000;
  const bad = results.find((r) => r.status !== 200 || r.bytes !== size || r.sha256 !== digest);
  if (!bad) await stored();
  const cpu = (await readCpuSeconds(server.pid)) - cpuBefore;
  await sleep(1000); // the upstream's access log is written as requests end
  const upstreamGets = upstream.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`) && r.status >= 200 && r.status < 300).length;
  return {
    mibps: bad ? undefined : (clients * size) / MiB / wallSeconds,
    cpuPerGiB: cpu / ((clients * size) / GiB),
    wallSeconds,
    upstreamGets,
    error: bad && `HTTP ${bad.status} ${bad.error ?? ''} (${bad.bytes} bytes, ${bad.sha256})`,
  };
}

/** nginx serving a directory with sendfile, one worker, in the foreground; stopped by pid. */
async function startNginx(root: string, onCleanup: OnCleanup): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const binary = findBinary('/usr/sbin/nginx') ?? findBinary('nginx');
  if (!binary) throw new Error('nginx not found (Debian: apt-get install nginx-light)');
  const dir = tempDir('pullmirror-bench-nginx');
  const port = await freePort();
  const conf = path.join(dir.path, 'nginx.conf');
  // One process (no master): pullmirror and distribution serve from one process too, and its
  // CPU is then the whole of nginx's. `user root` only matters when run as root, where the
  // store (a 0700 temp dir) is root's.
  writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}daemon off;
master_process off;
worker_processes 1;
pid ${dir.path}/nginx.pid;
error_log ${dir.path}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${dir.path}/body;
  proxy_temp_path ${dir.path}/proxy;
  fastcgi_temp_path ${dir.path}/fastcgi;
  uwsgi_temp_path ${dir.path}/uwsgi;
  scgi_temp_path ${dir.path}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    default_type application/octet-stream;
  }
}
`,
  );
  const child: ChildProcess = spawn(binary, ['-p', dir.path, '-c', conf], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode === null && child.pid !== undefined) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await dir.cleanup();
  };
  onCleanup(`nginx pid ${child.pid}`, stop);
  await waitForHttp(`http://127.0.0.1:${port}/`, { okStatuses: [200, 403, 404], timeoutMs: 10_000 });
  return { url: `http://127.0.0.1:${port}`, pid: child.pid!, stop };
}

interface RunFigures {
  cold1: Record<'pullmirror' | 'distribution', Cold>;
  cold16: Record<'pullmirror' | 'distribution', Cold>;
  warm1: Record<ServerName, Flow>;
  warm16: Record<ServerName, Flow>;
  auth: { none: Flow; htpasswd: Flow; token: Flow };
  peakRss: number;
}

/** median and range of the numbers among `values` */
export function spread(values: Array<number | undefined>): { median?: number; min?: number; max?: number } {
  const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (numbers.length === 0) return {};
  const mid = Math.floor(numbers.length / 2);
  const median = numbers.length % 2 ? numbers[mid] : (numbers[mid - 1] + numbers[mid]) / 2;
  return { median, min: numbers[0], max: numbers[numbers.length - 1] };
}

export function cell(values: Array<number | undefined>, digits: number): string {
  const { median, min, max } = spread(values);
  if (median === undefined) return 'n/a';
  return values.length === 1 ? median.toFixed(digits) : `${median.toFixed(digits)} (${min!.toFixed(digits)}–${max!.toFixed(digits)})`;
}

export async function benchHitCase(log: Log, onCleanup: OnCleanup): Promise<number> {
  const missing = ['docker-registry'].filter((b) => !findBinary(b));
  if (missing.length || !(findBinary('/usr/sbin/nginx') ?? findBinary('nginx'))) {
    log(`ERROR: hit needs docker-registry and nginx (Debian: apt-get install docker-registry nginx-light)`);
    return 1;
  }
  const started = performance.now();
  const loadBefore = os.loadavg();
  const work = tempDir('pullmirror-bench-hit');
  onCleanup('hit temp dir', () => work.cleanup());
  const upstreamTokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
  onCleanup('token server', () => upstreamTokens.close());
  const registry: RegistryServer = await startUpstreamRegistry({ tokenServer: upstreamTokens });
  onCleanup(`upstream docker-registry pid ${registry.pid}`, () => registry.stop());
  // The mirror's own client tokens (auth.token): another issuer, as a site's token server is.
  const clientTokens = await startTokenServer({ service: TOKEN_SERVICE, issuer: TOKEN_ISSUER });
  onCleanup('client token server', () => clientTokens.close());
  const htpasswdFile = path.join(work.path, 'htpasswd');
  writeFileSync(htpasswdFile, `${AUTH_USER.username}:${bcrypt.hashSync(AUTH_USER.password, 10)}\n`);

  log(`pushing two ${BLOB_MIB} MiB blobs`);
  const blobA = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-hit-a' });
  const blobB = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-hit-b' });
  const blobUrl = (base: string, digest: string) => `${base}/v2/${REPO}/blobs/${digest}`;
  const upstream = accessLogCounter(registry.logFile);

  const runs: RunFigures[] = [];
  for (let run = 1; run <= RUNS; run++) {
    log(`run ${run}/${RUNS}: starting pullmirror and distribution on empty stores`);
    const mirror: RunningMirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true });
    onCleanup(`pullmirror pid ${mirror.process.pid}`, () => mirror.stop());
    const dist = await startDistributionProxy({ remoteurl: registry.url, ...MIRROR_ACCOUNT });
    onCleanup(`distribution pid ${dist.pid}`, () => dist.stop());
    const rss = rssWatch(mirror.process.pid);
    const pm = (digest: string): Served => ({ url: blobUrl(mirror.url, digest), pid: mirror.process.pid });
    const ds = (digest: string): Served => ({ url: blobUrl(dist.url, digest), pid: dist.pid });
    const pmStored = (digest: string, size: number) => async () => void (await waitForFile(blobPathInStore(mirror.root, digest), size, 60_000));
    const dsStored = (digest: string, size: number) => async () => void (await waitForFile(blobDataPath(dist.rootDir, digest), size, 60_000));

    log(`run ${run}: cold, 1 client`);
    const cold1 = {
      pullmirror: await cold(pm(blobA.digest), upstream, pmStored(blobA.digest, blobA.size), blobA.digest, blobA.size, 1),
      distribution: await cold(ds(blobA.digest), upstream, dsStored(blobA.digest, blobA.size), blobA.digest, blobA.size, 1),
    };
    log(`run ${run}: cold, ${CONCURRENCY} clients`);
    const cold16 = {
      pullmirror: await cold(pm(blobB.digest), upstream, pmStored(blobB.digest, blobB.size), blobB.digest, blobB.size, CONCURRENCY),
      distribution: await cold(ds(blobB.digest), upstream, dsStored(blobB.digest, blobB.size), blobB.digest, blobB.size, CONCURRENCY),
    };

    const nginx = await startNginx(mirror.root, onCleanup);
    const ng: Served = { url: `${nginx.url}/${blobPathInStore('', blobB.digest)}`, pid: nginx.pid };
    const warm1 = {} as Record<ServerName, Flow>;
    const warm16 = {} as Record<ServerName, Flow>;
    for (const [name, served] of [['pullmirror', pm(blobB.digest)], ['distribution', ds(blobB.digest)], ['nginx', ng]] as const) {
      log(`run ${run}: warm, 1 and ${CONCURRENCY} clients: ${name}`);
      warm1[name] = await warm(served, blobB.size, 1, WARM_1_SECONDS);
      warm16[name] = await warm(served, blobB.size, CONCURRENCY, WARM_16_SECONDS);
    }
    await nginx.stop();

    log(`run ${run}: warm, 1 client, with auth.htpasswd and auth.token`);
    // Each variant is a fresh process on the same store, none included: the mirror measured
    // above has a warmed JIT and buffer pool, which a fresh one has not.
    const withoutAuth = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true, root: mirror.root });
    onCleanup(`pullmirror (no auth) pid ${withoutAuth.process.pid}`, () => withoutAuth.stop());
    const withHtpasswd = await startMirror({
      remoteurl: registry.url,
      ...MIRROR_ACCOUNT,
      bundle: true,
      root: mirror.root,
      config: { auth: { htpasswd: { realm: 'bench', path: htpasswdFile } } },
    });
    onCleanup(`pullmirror (htpasswd) pid ${withHtpasswd.process.pid}`, () => withHtpasswd.stop());
    const withToken = await startMirror({
      remoteurl: registry.url,
      ...MIRROR_ACCOUNT,
      bundle: true,
      root: mirror.root,
      config: { auth: { token: { realm: clientTokens.realm, service: TOKEN_SERVICE, issuer: TOKEN_ISSUER, rootcertbundle: clientTokens.certPath } } },
    });
    onCleanup(`pullmirror (token) pid ${withToken.process.pid}`, () => withToken.stop());
    const basic = `Basic ${Buffer.from(`${AUTH_USER.username}:${AUTH_USER.password}`).toString('base64')}`;
    const bearer = `Bearer ${clientTokens.issueToken(AUTH_USER.username, [{ type: 'repository', name: REPO, actions: ['pull'] }], { expiresIn: 3600 })}`;
    const auth = {
      none: await warm({ url: blobUrl(withoutAuth.url, blobB.digest), pid: withoutAuth.process.pid }, blobB.size, 1, WARM_1_SECONDS),
      htpasswd: await warm({ url: blobUrl(withHtpasswd.url, blobB.digest), pid: withHtpasswd.process.pid, headers: { authorization: basic } }, blobB.size, 1, WARM_1_SECONDS),
      token: await warm({ url: blobUrl(withToken.url, blobB.digest), pid: withToken.process.pid, headers: { authorization: bearer } }, blobB.size, 1, WARM_1_SECONDS),
    };
    await withoutAuth.stop();
    await withHtpasswd.stop();
    await withToken.stop();
    const peakRss = await rss.stop();
    await mirror.stop();
    await dist.stop();
    const figures: RunFigures = { cold1, cold16, warm1, warm16, auth, peakRss };
    for (const [what, flow] of Object.entries({ ...figures.cold1, ...figures.warm1 })) if (flow.error) log(`run ${run}: ${what}: ${flow.error}`);
    runs.push(figures);
    log(
      `run ${run}: warm 1 MiB/s pm ${warm1.pullmirror.mibps?.toFixed(0)} ds ${warm1.distribution.mibps?.toFixed(0)} nginx ${warm1.nginx.mibps?.toFixed(0)}; ` +
        `cold 1 pm ${cold1.pullmirror.mibps?.toFixed(0)} ds ${cold1.distribution.mibps?.toFixed(0)}; peak RSS ${(peakRss / 1e6).toFixed(0)} MB`,
    );
  }

  // --- the table: median (min–max) over the runs
  const of = <T>(pick: (r: RunFigures) => T) => runs.map(pick);
  const ratios = (a: (r: RunFigures) => number | undefined, b: (r: RunFigures) => number | undefined) => runs.map((r) => ((a(r) ?? NaN) / (b(r) ?? NaN)));
  const lines: Array<[string, string, string, string, string]> = [
    ['figure', 'distribution', 'nginx', 'pullmirror', 'pullmirror / distribution (nginx)'],
    ['warm, 1 client, MiB/s', cell(of((r) => r.warm1.distribution.mibps), 0), cell(of((r) => r.warm1.nginx.mibps), 0), cell(of((r) => r.warm1.pullmirror.mibps), 0), `${cell(ratios((r) => r.warm1.pullmirror.mibps, (r) => r.warm1.distribution.mibps), 2)} (${cell(ratios((r) => r.warm1.pullmirror.mibps, (r) => r.warm1.nginx.mibps), 2)})`],
    [`warm, ${CONCURRENCY} clients, MiB/s`, cell(of((r) => r.warm16.distribution.mibps), 0), cell(of((r) => r.warm16.nginx.mibps), 0), cell(of((r) => r.warm16.pullmirror.mibps), 0), `${cell(ratios((r) => r.warm16.pullmirror.mibps, (r) => r.warm16.distribution.mibps), 2)} (${cell(ratios((r) => r.warm16.pullmirror.mibps, (r) => r.warm16.nginx.mibps), 2)})`],
    ['warm, 1 client, CPU s/GiB', cell(of((r) => r.warm1.distribution.cpuPerGiB), 2), cell(of((r) => r.warm1.nginx.cpuPerGiB), 2), cell(of((r) => r.warm1.pullmirror.cpuPerGiB), 2), cell(ratios((r) => r.warm1.pullmirror.cpuPerGiB, (r) => r.warm1.distribution.cpuPerGiB), 2)],
    [`warm, ${CONCURRENCY} clients, CPU s/GiB`, cell(of((r) => r.warm16.distribution.cpuPerGiB), 2), cell(of((r) => r.warm16.nginx.cpuPerGiB), 2), cell(of((r) => r.warm16.pullmirror.cpuPerGiB), 2), cell(ratios((r) => r.warm16.pullmirror.cpuPerGiB, (r) => r.warm16.distribution.cpuPerGiB), 2)],
    ['cold, 1 client, MiB/s', cell(of((r) => r.cold1.distribution.mibps), 0), '', cell(of((r) => r.cold1.pullmirror.mibps), 0), cell(ratios((r) => r.cold1.pullmirror.mibps, (r) => r.cold1.distribution.mibps), 2)],
    ['cold, 1 client, CPU s/GiB (until stored)', cell(of((r) => r.cold1.distribution.cpuPerGiB), 2), '', cell(of((r) => r.cold1.pullmirror.cpuPerGiB), 2), cell(ratios((r) => r.cold1.pullmirror.cpuPerGiB, (r) => r.cold1.distribution.cpuPerGiB), 2)],
    [`cold, ${CONCURRENCY} clients: wall s`, cell(of((r) => r.cold16.distribution.wallSeconds), 2), '', cell(of((r) => r.cold16.pullmirror.wallSeconds), 2), cell(ratios((r) => r.cold16.pullmirror.wallSeconds, (r) => r.cold16.distribution.wallSeconds), 2)],
    [`cold, ${CONCURRENCY} clients: upstream GETs`, cell(of((r) => r.cold16.distribution.upstreamGets), 0), '', cell(of((r) => r.cold16.pullmirror.upstreamGets), 0), ''],
    [`cold, ${CONCURRENCY} clients: CPU s/GiB served`, cell(of((r) => r.cold16.distribution.cpuPerGiB), 2), '', cell(of((r) => r.cold16.pullmirror.cpuPerGiB), 2), cell(ratios((r) => r.cold16.pullmirror.cpuPerGiB, (r) => r.cold16.distribution.cpuPerGiB), 2)],
    ['warm, 1 client, auth.htpasswd / no auth', '', '', cell(ratios((r) => r.auth.htpasswd.mibps, (r) => r.auth.none.mibps), 2), ''],
    ['warm, 1 client, auth.token / no auth', '', '', cell(ratios((r) => r.auth.token.mibps, (r) => r.auth.none.mibps), 2), ''],
    ['peak RSS, MB', '', '', cell(of((r) => r.peakRss / 1e6), 0), ''],
  ];
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const text = lines.map((l, n) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + (n === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : '')).join('\n');
  const markdown = [`| ${lines[0].join(' | ')} |`, `|---|${lines[0].slice(1).map(() => '---:').join('|')}|`, ...lines.slice(1).map((l) => `| ${l.join(' | ')} |`)].join('\n');

  const median = (values: Array<number | undefined>) => spread(values).median;
  const targets: Target[] = [];
  const atLeast = (name: string, values: number[], factor: number) => {
    const m = median(values);
    targets.push(target(name, m === undefined ? undefined : m >= factor, `median ${m?.toFixed(2)}× (need ≥ ${factor}×), runs ${values.map((v) => v.toFixed(2)).join(', ')}`));
  };
  atLeast('warm 1 client ≥ 1.0× distribution', ratios((r) => r.warm1.pullmirror.mibps, (r) => r.warm1.distribution.mibps), 1);
  atLeast(`warm ${CONCURRENCY} clients ≥ 1.0× distribution`, ratios((r) => r.warm16.pullmirror.mibps, (r) => r.warm16.distribution.mibps), 1);
  atLeast('warm 1 client ≥ 0.9× nginx', ratios((r) => r.warm1.pullmirror.mibps, (r) => r.warm1.nginx.mibps), 0.9);
  atLeast(`warm ${CONCURRENCY} clients ≥ 0.9× nginx`, ratios((r) => r.warm16.pullmirror.mibps, (r) => r.warm16.nginx.mibps), 0.9);
  atLeast('cold 1 client ≥ 1.0× distribution', ratios((r) => r.cold1.pullmirror.mibps, (r) => r.cold1.distribution.mibps), 1);
  atLeast('warm 1 client CPU s/GiB ≤ distribution (distribution / pullmirror ≥ 1)', ratios((r) => r.warm1.distribution.cpuPerGiB, (r) => r.warm1.pullmirror.cpuPerGiB), 1);
  atLeast(`warm ${CONCURRENCY} clients CPU s/GiB ≤ distribution (distribution / pullmirror ≥ 1)`, ratios((r) => r.warm16.distribution.cpuPerGiB, (r) => r.warm16.pullmirror.cpuPerGiB), 1);
  atLeast('cold 1 client CPU s/GiB ≤ distribution (distribution / pullmirror ≥ 1)', ratios((r) => r.cold1.distribution.cpuPerGiB, (r) => r.cold1.pullmirror.cpuPerGiB), 1);
  atLeast('warm 1 client with auth.htpasswd ≥ 0.95× no auth', ratios((r) => r.auth.htpasswd.mibps, (r) => r.auth.none.mibps), 0.95);
  atLeast('warm 1 client with auth.token ≥ 0.95× no auth', ratios((r) => r.auth.token.mibps, (r) => r.auth.none.mibps), 0.95);
  const gets = runs.map((r) => r.cold16.pullmirror.upstreamGets);
  targets.push(target(`cold ${CONCURRENCY} clients: one upstream GET`, gets.every((g) => g === 1), `runs ${gets.join(', ')}`));
  const peak = Math.max(...runs.map((r) => r.peakRss));
  targets.push(target('peak RSS < 150 MB', peak < RSS_TARGET_BYTES, `${(peak / 1e6).toFixed(1)} MB (the highest of ${RUNS} runs)`));

  const loadAfter = os.loadavg();
  const note = `${RUNS} run(s), ${BLOB_MIB} MiB blobs, ${os.cpus().length} cores, load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}, ${((performance.now() - started) / 1000).toFixed(0)} s. Cells: median (min–max) over the runs; ratios are per run. nginx: one process, sendfile on, serving pullmirror's stored file. Warm clients: ${WRK ? 'wrk (out of process)' : 'node:http in the bench process (wrk not found)'}.`;
  const errors = runs.flatMap((r, i) =>
    Object.entries({ ...prefixed('cold1', r.cold1), ...prefixed('cold16', r.cold16), ...prefixed('warm1', r.warm1), ...prefixed('warm16', r.warm16), ...prefixed('auth', r.auth) })
      .filter(([, flow]) => flow.error)
      .map(([what, flow]) => `run ${i + 1} ${what}: ${flow.error}`),
  );
  process.stdout.write(['', `hit path: pullmirror, distribution, nginx — ${new Date().toISOString()}`, '', text, '', 'Targets (informational):', ...targets.map((t) => `  ${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`), '', note, ...errors.map((e) => `ERROR ${e}`), ''].join('\n'));
  const base = writeResults('hit', { runs, targets, note, errors }, [`# hit path, ${new Date().toISOString()}`, '', markdown, '', ...targets.map((t) => `- **${t.verdict}** ${t.name}: ${t.detail}`), '', note, ''].join('\n'));
  process.stdout.write(`Results: ${base}.json and ${base}.md\n`);
  agent.destroy();
  return errors.some((e) => /pullmirror/.test(e)) ? 1 : 0;
}

function prefixed<T>(prefix: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [`${prefix} ${key}`, value]));
}
