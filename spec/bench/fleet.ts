/**
 * Bench case: a fleet. Two pullmirror instances on one store directory and one redis-server,
 * straight on the upstream (its access log counts their requests); 16 clients (8 per instance)
 * GET one cold 256 MiB blob at once. Measured: upstream GETs of the blob (the target is 1) and
 * the wall time until every client has the whole blob, sha256-verified.
 *
 * `npm run bench -- fleet-store` runs this case alone (`npm run bench` runs it with the others);
 * `node spec/bench/fleet.ts [MiB] [instances]` too, for other sizes or one instance to compare.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest, Agent } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { startRedis } from '../support/redis.ts';
import { startUpstreamRegistry } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { accessLogCounter } from '../support/access-log.ts';

const MiB = 1024 * 1024;
const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const REPO = 'library/bench';

export interface FleetBenchResult {
  instances: number;
  clients: number;
  blobMiB: number;
  /** Upstream GETs of the blob that carried it (2xx), between all instances. */
  upstreamGets: number;
  /** Every upstream GET of the blob by status (a 401 would be a bodiless auth challenge). */
  upstreamStatuses: Record<string, number>;
  wallSeconds: number;
  fastestSeconds: number;
  slowestSeconds: number;
  verified: number;
  aggregateMibps?: number;
  error?: string;
}

export interface FleetBenchOptions {
  /** The upstream registry (token-authenticated), as run.ts starts it. */
  registryUrl: string;
  /** Its log file: upstream requests are counted from its access log (no proxy slows the fill). */
  registryLogFile: string;
  blobMiB?: number;
  clients?: number;
  /** 2 by default; 1 gives the single-instance figure under the same conditions, for comparison. */
  instances?: number;
  log?: (message: string) => void;
  /** Registers a cleanup with the caller (run.ts stops everything on a signal too). */
  onCleanup?: (what: string, run: () => Promise<void> | void) => void;
}

/** Runs the case; every server it starts is stopped before it returns (or by onCleanup). */
export async function benchFleet(options: FleetBenchOptions): Promise<FleetBenchResult> {
  const blobMiB = options.blobMiB ?? 256;
  const clients = options.clients ?? 16;
  const log = options.log ?? (() => {});
  const stops: Array<() => Promise<void> | void> = [];
  const later = (what: string, run: () => Promise<void> | void) => {
    stops.push(run);
    options.onCleanup?.(what, run);
  };
  try {
    log(`fleet: pushing a ${blobMiB} MiB blob; starting redis-server and ${options.instances ?? 2} pullmirror instance(s) on one store`);
    const blob = await pushRandomBlob(options.registryUrl, PUSHER, REPO, { sizeMiB: blobMiB, label: 'bench-fleet' });
    const upstream = accessLogCounter(options.registryLogFile);
    const redis = await startRedis();
    later('fleet redis-server', () => redis.close());
    const store = tempDir('pullmirror-bench-fleet');
    later('fleet store', () => store.cleanup());
    const config = { storage: { cache: { blobdescriptor: 'redis' } }, redis: { addr: redis.addr }, log: { accesslog: { disabled: true } } };
    const mirrors: RunningMirror[] = [];
    for (let i = 0; i < (options.instances ?? 2); i++) {
      const mirror = await startMirror({ remoteurl: options.registryUrl, ...MIRROR_ACCOUNT, root: path.join(store.path, 'store'), config, bundle: true });
      later(`fleet pullmirror pid ${mirror.process.pid}`, () => mirror.stop());
      mirrors.push(mirror);
    }
    // Learn the upstream's auth challenge first, as a running mirror has long done.
    for (const mirror of mirrors) await fetch(`${mirror.url}/v2/`).then((r) => r.arrayBuffer());
    upstream.reset();

    log(`fleet: ${clients} concurrent cold GETs of ${blobMiB} MiB, spread over ${mirrors.length} instances`);
    const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: clients }, (_, i) => getHashed(`${mirrors[i % mirrors.length].url}/v2/${REPO}/blobs/${blob.digest}`, agent)),
    );
    const wallSeconds = (performance.now() - started) / 1000;
    agent.destroy();
    // The registry logs a request once its response is done: the last lines may trail the clients a little.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const statuses: Record<string, number> = {};
    for (const r of upstream.requests) {
      if (r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`)) statuses[String(r.status)] = (statuses[String(r.status)] ?? 0) + 1;
    }
    const verified = results.filter((r) => r.status === 200 && r.sha256 === blob.digest && r.bytes === blob.size).length;
    const errors = [...new Set(results.filter((r) => r.status !== 200 || r.sha256 !== blob.digest).map((r) => r.error ?? `HTTP ${r.status}, ${r.bytes} bytes`))];
    return {
      instances: mirrors.length,
      clients,
      blobMiB,
      upstreamGets: Object.entries(statuses).reduce((n, [status, count]) => n + (status.startsWith('2') ? count : 0), 0),
      upstreamStatuses: statuses,
      wallSeconds,
      fastestSeconds: Math.min(...results.map((r) => r.ms)) / 1000,
      slowestSeconds: Math.max(...results.map((r) => r.ms)) / 1000,
      verified,
      aggregateMibps: verified === clients ? (clients * blob.size) / MiB / wallSeconds : undefined,
      error: errors.length ? `${clients - verified}/${clients} clients failed: ${errors.join('; ')}` : undefined,
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

/** One line for run.ts' notes. */
export function describeFleet(r: FleetBenchResult): string {
  const gets = Object.entries(r.upstreamStatuses).map(([status, count]) => `${count}×${status}`).join(' + ') || 'none';
  return (
    `fleet (spec/bench/fleet.ts): ${r.instances} pullmirror instances on one store and one Redis, ${r.clients} clients spread over them, ` +
    `cold ${r.blobMiB} MiB blob: ${r.upstreamGets} upstream GET(s) carrying the blob (all: ${gets}), wall ${r.wallSeconds.toFixed(2)} s ` +
    `(fastest ${r.fastestSeconds.toFixed(2)} s, slowest ${r.slowestSeconds.toFixed(2)} s), ${r.verified}/${r.clients} sha256-verified` +
    `${r.aggregateMibps ? `, aggregate ${r.aggregateMibps.toFixed(1)} MiB/s` : ''}${r.error ? `; ${r.error}` : ''}.`
  );
}

function getHashed(url: string, agent: Agent): Promise<{ status: number; bytes: number; sha256?: string; ms: number; error?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const request = httpRequest(url, { agent }, (response) => {
      const hash = createHash('sha256');
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes, sha256: `sha256:${hash.digest('hex')}`, ms: performance.now() - started }));
      response.on('error', (error) => resolve({ status: response.statusCode ?? 0, bytes, ms: performance.now() - started, error: error.message }));
    });
    request.on('error', (error) => resolve({ status: 0, bytes: 0, ms: performance.now() - started, error: error.message }));
    request.end();
  });
}

/**
 * The bench case (`npm run bench -- fleet-store`): its own upstream, the figures printed and written
 * to spec/bench/results/fleet-<timestamp>.json. Exit status 1 when a client got wrong bytes.
 */
export async function benchFleetCase(log: (message: string) => void, blobMiB = 256, instances = 2): Promise<number> {
  const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
  try {
    const registry = await startUpstreamRegistry({ tokenServer: tokens });
    try {
      const result = await benchFleet({ registryUrl: registry.url, registryLogFile: registry.logFile, blobMiB, instances, log });
      const line = describeFleet(result);
      process.stdout.write(`\n${line}\n`);
      mkdirSync(RESULTS_DIR, { recursive: true });
      const file = path.join(RESULTS_DIR, `fleet-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
      writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), loadavg: os.loadavg(), result, summary: line }, null, 2)}\n`);
      process.stdout.write(`Results: ${file}\n`);
      return result.error ? 1 : 0;
    } finally {
      await registry.stop();
    }
  } finally {
    await tokens.close();
  }
}

// Alone: `node spec/bench/fleet.ts [blobMiB] [instances]` (needs `npm run build` first).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
  process.exit(await benchFleetCase(log, Number(process.argv[2] ?? 256), Number(process.argv[3] ?? 2)));
}
