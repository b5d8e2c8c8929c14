/**
 * Bench case `link`: pullmirror and distribution's proxy side by side behind an upstream that
 * behaves like Docker Hub across a site's internet link (spec/support/link-proxy.ts: 100 MiB/s
 * shared by all connections, 20 ms round trip), pulled by real clients (skopeo, into `dir:`).
 *
 * Measured, each on a fresh empty store: cold with 1 client, cold with 8 clients pulling the
 * same image at once; wall seconds until every client has the image (verified by digest) and
 * the bytes that crossed the link (counted until the server stored the image, so
 * distribution's background fill is in). The limit: the same pull straight from the link, no
 * mirror. Before that, the link with cap and delay off is measured against a fast source, to
 * show the relay itself does not limit (≥ 1.5 GiB/s).
 *
 * `npm run bench -- link`; BENCH_BLOB_MIB=N for a smaller layer while developing.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { startByteSource } from '../support/byte-source.ts';
import { fetchToken, makeImageConfig, MT, pushBlob, pushRandomBlob, registryFetch, sha256Digest, type Layer } from '../support/images.ts';
import { linkStatuses, startLinkProxy, type LinkProxy, type LinkStats } from '../support/link-proxy.ts';
import { startMirror } from '../support/mirror.ts';
import { findBinary, tempDir } from '../support/processes.ts';
import { blobDataPath, startDistributionProxy, startUpstreamRegistry } from '../support/registry.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { startTokenServer } from '../support/token-server.ts';
import { BLOB_MIB, blobPathInStore, GiB, MiB, readCpuSeconds, table, target, waitForFile, writeResults, type Row, type Target } from './measure.ts';

const REPO = 'library/bench';
const TAG = 'link';
/** The link: what the issue asks for (a site's uplink to Docker Hub). */
const LINK_MIBPS = 100;
const LINK_RTT_MS = 20;
const MANY_CLIENTS = 8;
/** Issue 21: 1 client within this of the link's own time, 8 clients within this of distribution's. */
const ONE_CLIENT_TARGET = 1.05;
const MANY_CLIENTS_TARGET = 0.3;
/** Runs in a row (BENCH_RUNS, default 1); with more, a summary of the targets' medians follows. */
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
/** Bytes per run of the relay throughput check, and runs (the best is reported). */
const RELAY_CHECK_BYTES = 2 * GiB;
const RELAY_CHECK_RUNS = 3;
const RELAY_TARGET_GIBPS = 1.5;
const SKOPEO_TIMEOUT_MS = 10 * 60_000;
/** How long a server may take to have the image in its store after the clients are done. */
const STORED_TIMEOUT_MS = 5 * 60_000;

type Log = (message: string) => void;
type OnCleanup = (what: string, run: () => Promise<void> | void) => void;

interface PushedLinkImage {
  manifestDigest: string;
  layerDigest: string;
  layerSize: number;
  configDigest: string;
  /** Manifest + config + layer: one copy of the image. */
  bytes: number;
}

/** A docker schema2 image with one BLOB_MIB layer of seeded random bytes (skopeo copies layers as they are; it never unpacks into dir:). */
async function pushLinkImage(registryUrl: string): Promise<PushedLinkImage> {
  const layer = await pushRandomBlob(registryUrl, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-link-layer' });
  const asLayer: Layer = { bytes: Buffer.alloc(0), digest: layer.digest, size: layer.size, diffId: layer.digest };
  const config = await pushBlob(registryUrl, PUSHER, REPO, makeImageConfig([asLayer], { os: 'linux', architecture: 'amd64' }, { bench: 'link' }));
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
  return { manifestDigest: sha256Digest(manifest), layerDigest: layer.digest, layerSize: layer.size, configDigest: config.digest, bytes: manifest.length + config.size + layer.size };
}

// ---------------------------------------------------------------------------
// The relay's own throughput

function curlSpeed(url: string, headers: Record<string, string> = {}): Promise<number> {
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code} %{speed_download}', ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
  return new Promise((resolve, reject) => {
    execFile('curl', args, { timeout: 120_000 }, (err, stdout) => {
      const [code, speed] = stdout.trim().split(' ');
      if (err || code !== '200') reject(new Error(`curl ${url}: ${err?.message ?? `HTTP ${code}`}`));
      else resolve(Number(speed));
    });
  });
}

interface RelayCheck {
  client: string;
  directGiBps: number;
  viaLinkGiBps: number;
  /** The upstream registry's own GET of the layer, direct and through the unshaped link (curl, MiB/s). */
  upstreamDirectMiBps?: number;
  upstreamViaLinkMiBps?: number;
}

/** The link with cap and delay off, between a fast source and curl: best of RELAY_CHECK_RUNS runs. */
async function relayCheck(log: Log, onCleanup: OnCleanup, registryHostPort: string, blobUrlPath: string, token: string): Promise<RelayCheck | string> {
  if (!findBinary('curl')) return 'curl not found: relay throughput not measured (apt-get install curl)';
  const source = await startByteSource();
  onCleanup(`byte source pid ${source.pid}`, () => source.stop());
  const open = await startLinkProxy({ target: `127.0.0.1:${source.port}`, rateMiBps: 0, rttMs: 0 });
  onCleanup(`unshaped link pid ${open.pid}`, () => open.stop());
  try {
    let direct = 0;
    let via = 0;
    for (let i = 0; i < RELAY_CHECK_RUNS; i++) {
      direct = Math.max(direct, await curlSpeed(`${source.url}/${RELAY_CHECK_BYTES}`));
      via = Math.max(via, await curlSpeed(`${open.url}/${RELAY_CHECK_BYTES}`));
    }
    log(`link: relay check ${(direct / GiB).toFixed(2)} GiB/s direct, ${(via / GiB).toFixed(2)} GiB/s through the unshaped link`);
    // The same relay in front of the upstream registry: it must not slow the registry's GET.
    const toUpstream = await startLinkProxy({ target: registryHostPort, rateMiBps: 0, rttMs: 0 });
    onCleanup(`unshaped upstream link pid ${toUpstream.pid}`, () => toUpstream.stop());
    let upDirect = 0;
    let upVia = 0;
    try {
      const auth = { authorization: `Bearer ${token}` };
      for (let i = 0; i < 2; i++) {
        upDirect = Math.max(upDirect, await curlSpeed(`http://${registryHostPort}${blobUrlPath}`, auth));
        upVia = Math.max(upVia, await curlSpeed(`${toUpstream.url}${blobUrlPath}`, auth));
      }
    } finally {
      await toUpstream.stop();
    }
    return { client: 'curl -o /dev/null', directGiBps: direct / GiB, viaLinkGiBps: via / GiB, upstreamDirectMiBps: upDirect / MiB, upstreamViaLinkMiBps: upVia / MiB };
  } finally {
    await open.stop();
    await source.stop();
  }
}

// ---------------------------------------------------------------------------
// Pulls through the link

interface Pull {
  ok: boolean;
  error?: string;
  clients: number;
  /** Until every client had the whole image (skopeo exited). */
  wallSeconds: number;
  fastestSeconds: number;
  slowestSeconds: number;
  /** Until the server had stored the image too (distribution fills in the background). */
  storedSeconds?: number;
  bytesDown: number;
  bytesUp: number;
  /** bytesDown / one copy of the image. */
  copies: number;
  linkConnections: number;
  layerGets: Record<string, number>;
  /** The first 2xx layer GET over the link: request line seen → last body byte crossed, s. */
  layerGetSeconds?: number;
  manifestRequests: number;
  serverCpuSeconds?: number;
}

async function settledLink(link: LinkProxy): Promise<LinkStats> {
  const deadline = performance.now() + 30_000;
  let last = await link.stats();
  let stableSince = performance.now();
  while (performance.now() < deadline) {
    await sleep(250);
    const now = await link.stats();
    if (now.bytesDown !== last.bytesDown || now.requests.length !== last.requests.length) stableSince = performance.now();
    else if (performance.now() - stableSince >= 1000) return now;
    last = now;
  }
  return last;
}

/** `clients` skopeo copies of `src` at once into dir: destinations; each checked against the image. */
async function pull(link: LinkProxy, image: PushedLinkImage, src: string, clients: number, opts: { srcCreds?: string; pid?: number; stored?: () => Promise<boolean> }): Promise<Pull> {
  const dirs = tempDir('pullmirror-bench-link');
  try {
    await link.reset();
    const cpuBefore = opts.pid ? await readCpuSeconds(opts.pid) : NaN;
    const started = performance.now();
    // Watched from the start, so "stored" is when the server had the layer, not when we looked.
    const stored = (opts.stored ?? (async () => true))().then((ok) => ({ ok, seconds: (performance.now() - started) / 1000 }));
    const runs = await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const dest = path.join(dirs.path, `client-${i}`);
        try {
          await skopeoCopy(src, `dir:${dest}`, { srcCreds: opts.srcCreds, timeoutMs: SKOPEO_TIMEOUT_MS });
          return { i, dest, seconds: (performance.now() - started) / 1000 };
        } catch (err) {
          return { i, dest, seconds: (performance.now() - started) / 1000, error: `client ${i}: ${(err as Error).message.slice(0, 600)}` };
        }
      }),
    );
    const wallSeconds = Math.max(...runs.map((r) => r.seconds));
    const { ok: isStored, seconds: storedSeconds } = await stored;
    const serverCpuSeconds = opts.pid ? (await readCpuSeconds(opts.pid)) - cpuBefore : undefined;
    // Checked once every client is done, so hashing here does not slow the ones still pulling.
    for (const run of runs.filter((r) => !r.error)) {
      const got = await readDirImage(run.dest);
      const size = got.blobs.get(image.layerDigest);
      if (got.manifest.digest !== image.manifestDigest || size !== image.layerSize) Object.assign(run, { error: `client ${run.i}: manifest ${got.manifest.digest}, layer ${size ?? 'missing'} bytes` });
      rmSync(run.dest, { recursive: true, force: true });
    }
    const stats = await settledLink(link);
    const errors = runs.filter((r) => r.error).map((r) => r.error!);
    if (!isStored) errors.push(`the server had not stored the layer ${STORED_TIMEOUT_MS / 1000} s after the clients finished`);
    return {
      ok: errors.length === 0,
      error: errors.length ? errors.join('; ') : undefined,
      clients,
      wallSeconds,
      fastestSeconds: Math.min(...runs.map((r) => r.seconds)),
      slowestSeconds: Math.max(...runs.map((r) => r.seconds)),
      storedSeconds: opts.stored ? storedSeconds : undefined,
      bytesDown: stats.bytesDown,
      bytesUp: stats.bytesUp,
      copies: stats.bytesDown / image.bytes,
      linkConnections: stats.connections,
      layerGets: linkStatuses(stats, 'GET', new RegExp(`/blobs/${image.layerDigest}$`)),
      layerGetSeconds: (() => {
        const get = stats.requests.find((r) => r.method === 'GET' && r.status >= 200 && r.status < 300 && r.path.endsWith(`/blobs/${image.layerDigest}`));
        return get?.doneMs !== undefined ? (get.doneMs - get.startedMs) / 1000 : undefined;
      })(),
      manifestRequests: stats.requests.filter((r) => r.path.includes('/manifests/')).length,
      serverCpuSeconds,
    };
  } finally {
    await dirs.cleanup();
  }
}

type ServerName = 'pullmirror' | 'distribution';

/** A fresh server with an empty store, pulling through `link`; stopped (and its store removed) by the returned stop(). */
async function startServer(name: ServerName, link: LinkProxy, image: PushedLinkImage): Promise<{ url: string; pid: number; stored: () => Promise<boolean>; stop: () => Promise<void> }> {
  if (name === 'pullmirror') {
    // Both servers keep their access logs on (distribution writes its own, as in the main case).
    const mirror = await startMirror({ remoteurl: link.url, ...MIRROR_ACCOUNT, bundle: true });
    return {
      url: mirror.url,
      pid: mirror.process.pid,
      stored: () => waitForFile(blobPathInStore(mirror.root, image.layerDigest), image.layerSize, STORED_TIMEOUT_MS),
      stop: async () => {
        await mirror.stop();
        rmSync(path.dirname(mirror.configFile), { recursive: true, force: true });
      },
    };
  }
  const dist = await startDistributionProxy({ remoteurl: link.url, ...MIRROR_ACCOUNT });
  return { url: dist.url, pid: dist.pid, stored: () => waitForFile(blobDataPath(dist.rootDir, image.layerDigest), image.layerSize, STORED_TIMEOUT_MS), stop: () => dist.stop() };
}

export interface LinkBenchResult {
  link: { mibps: number; rttMs: number };
  blobMiB: number;
  imageBytes: number;
  relay?: RelayCheck;
  relayNote?: string;
  limit: Pull;
  servers: Record<ServerName, { one: Pull; many: Pull }>;
}

export async function benchLink(log: Log, onCleanup: OnCleanup): Promise<LinkBenchResult> {
  const stops: Array<() => Promise<void> | void> = [];
  const later = (what: string, run: () => Promise<void> | void) => {
    stops.push(run);
    onCleanup(what, run);
  };
  try {
    log('link: starting token server and upstream docker-registry');
    const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
    later('link token server', () => tokens.close());
    const registry = await startUpstreamRegistry({ tokenServer: tokens });
    later(`link upstream docker-registry pid ${registry.pid}`, () => registry.stop());
    log(`link: pushing ${REPO}:${TAG} with one ${BLOB_MIB} MiB layer`);
    const image = await pushLinkImage(registry.url);
    const hostPort = new URL(registry.url).host;

    const challenge = await fetch(`${registry.url}/v2/`);
    await challenge.arrayBuffer();
    const token = await fetchToken(challenge.headers.get('www-authenticate') ?? '', MIRROR_ACCOUNT, `repository:${REPO}:pull`);
    log(`link: relay throughput with cap and delay off (${RELAY_CHECK_RUNS} × ${RELAY_CHECK_BYTES / GiB} GiB from a fast source, curl as the client)`);
    const relay = await relayCheck(log, later, hostPort, `/v2/${REPO}/blobs/${image.layerDigest}`, token);

    const link = await startLinkProxy({ target: hostPort, rateMiBps: LINK_MIBPS, rttMs: LINK_RTT_MS });
    later(`shaped link pid ${link.pid}`, () => link.stop());
    const creds = `${MIRROR_ACCOUNT.username}:${MIRROR_ACCOUNT.password}`;
    const linkRef = `docker://127.0.0.1:${link.port}/${REPO}:${TAG}`;

    log(`link: the limit, skopeo straight from the link (${LINK_MIBPS} MiB/s, ${LINK_RTT_MS} ms)`);
    const limit = await pull(link, image, linkRef, 1, { srcCreds: creds });
    if (limit.error) log(`   limit: ${limit.error}`);

    const servers = {} as LinkBenchResult['servers'];
    for (const name of ['pullmirror', 'distribution'] as const) {
      const runs: Partial<{ one: Pull; many: Pull }> = {};
      for (const clients of [1, MANY_CLIENTS]) {
        log(`link: ${name}, cold, ${clients} skopeo client(s)`);
        const server = await startServer(name, link, image);
        try {
          const result = await pull(link, image, `docker://${new URL(server.url).host}/${REPO}:${TAG}`, clients, { pid: server.pid, stored: server.stored });
          if (result.error) log(`   ${name} ${clients} client(s): ${result.error}`);
          runs[clients === 1 ? 'one' : 'many'] = result;
        } finally {
          await server.stop();
        }
      }
      servers[name] = runs as { one: Pull; many: Pull };
    }
    return {
      link: { mibps: LINK_MIBPS, rttMs: LINK_RTT_MS },
      blobMiB: BLOB_MIB,
      imageBytes: image.bytes,
      relay: typeof relay === 'string' ? undefined : relay,
      relayNote: typeof relay === 'string' ? relay : undefined,
      limit,
      servers,
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

const statusText = (statuses: Record<string, number>): string =>
  Object.entries(statuses)
    .map(([status, count]) => `${count}×${status}`)
    .join(' + ') || 'none';

/** The table, targets and notes of a run. */
export function reportLink(r: LinkBenchResult): { text: string; markdown: string; targets: Target[]; notes: string[] } {
  const pm = r.servers.pullmirror;
  const ds = r.servers.distribution;
  const val = (p: Pull, f: (p: Pull) => number | string | undefined) => (p.ok ? f(p) : 'ERROR');
  const rows: Row[] = [
    { metric: `limit: 1 skopeo straight from the link: wall s`, better: '', pm: val(r.limit, (p) => p.wallSeconds), dist: val(r.limit, (p) => p.wallSeconds), digits: 2 },
    { metric: 'cold, 1 client: wall s', better: 'lower', pm: val(pm.one, (p) => p.wallSeconds), dist: val(ds.one, (p) => p.wallSeconds), digits: 2 },
    { metric: 'cold, 1 client: wall / limit', better: 'lower', pm: val(pm.one, (p) => p.wallSeconds / r.limit.wallSeconds), dist: val(ds.one, (p) => p.wallSeconds / r.limit.wallSeconds), digits: 2 },
    { metric: 'cold, 1 client: until stored, s', better: 'lower', pm: pm.one.storedSeconds, dist: ds.one.storedSeconds, digits: 2 },
    { metric: 'cold, 1 client: MiB over the link (down)', better: 'lower', pm: pm.one.bytesDown / MiB, dist: ds.one.bytesDown / MiB },
    { metric: 'cold, 1 client: copies of the image over the link', better: 'lower', pm: pm.one.copies, dist: ds.one.copies, digits: 2 },
    { metric: 'cold, 1 client: layer GETs over the link', better: '', pm: statusText(pm.one.layerGets), dist: statusText(ds.one.layerGets) },
    { metric: 'cold, 1 client: first layer GET over the link, s', better: 'lower', pm: pm.one.layerGetSeconds, dist: ds.one.layerGetSeconds, digits: 2 },
    { metric: 'cold, 1 client: server CPU s', better: 'lower', pm: pm.one.serverCpuSeconds, dist: ds.one.serverCpuSeconds, digits: 2 },
    { metric: `cold, ${MANY_CLIENTS} clients: wall s`, better: 'lower', pm: val(pm.many, (p) => p.wallSeconds), dist: val(ds.many, (p) => p.wallSeconds), digits: 2 },
    { metric: `cold, ${MANY_CLIENTS} clients: fastest / slowest client s`, better: '', pm: `${pm.many.fastestSeconds.toFixed(2)} / ${pm.many.slowestSeconds.toFixed(2)}`, dist: `${ds.many.fastestSeconds.toFixed(2)} / ${ds.many.slowestSeconds.toFixed(2)}` },
    { metric: `cold, ${MANY_CLIENTS} clients: until stored, s`, better: 'lower', pm: pm.many.storedSeconds, dist: ds.many.storedSeconds, digits: 2 },
    { metric: `cold, ${MANY_CLIENTS} clients: MiB over the link (down)`, better: 'lower', pm: pm.many.bytesDown / MiB, dist: ds.many.bytesDown / MiB },
    { metric: `cold, ${MANY_CLIENTS} clients: copies of the image over the link`, better: 'lower', pm: pm.many.copies, dist: ds.many.copies, digits: 2 },
    { metric: `cold, ${MANY_CLIENTS} clients: layer GETs over the link`, better: '', pm: statusText(pm.many.layerGets), dist: statusText(ds.many.layerGets) },
    { metric: `cold, ${MANY_CLIENTS} clients: first layer GET over the link, s`, better: 'lower', pm: pm.many.layerGetSeconds, dist: ds.many.layerGetSeconds, digits: 2 },
    { metric: `cold, ${MANY_CLIENTS} clients: server CPU s`, better: 'lower', pm: pm.many.serverCpuSeconds, dist: ds.many.serverCpuSeconds, digits: 2 },
  ];
  const { text, markdown } = table(rows);
  const targets: Target[] = [];
  // "One copy": what crossed the link is the image once, plus headers and token challenges (< 5 %).
  const oneCopy = (p: Pull) => p.copies < 1.05;
  targets.push(
    target(
      'pullmirror: the link carries one copy of the image whatever the number of clients',
      pm.one.ok && pm.many.ok ? oneCopy(pm.one) && oneCopy(pm.many) : undefined,
      `1 client: ${pm.one.copies.toFixed(3)} copies (${(pm.one.bytesDown / MiB).toFixed(1)} MiB, layer GETs ${statusText(pm.one.layerGets)}), ${MANY_CLIENTS} clients: ${pm.many.copies.toFixed(3)} copies (${(pm.many.bytesDown / MiB).toFixed(1)} MiB, layer GETs ${statusText(pm.many.layerGets)}); one image = ${(r.imageBytes / MiB).toFixed(1)} MiB; distribution: ${ds.one.copies.toFixed(2)} and ${ds.many.copies.toFixed(2)} copies`,
    ),
  );
  const within = pm.one.wallSeconds / r.limit.wallSeconds;
  targets.push(
    target(
      `pullmirror: 1 client within ${ONE_CLIENT_TARGET}× of the limit`,
      pm.one.ok && r.limit.ok ? within <= ONE_CLIENT_TARGET : undefined,
      `${pm.one.wallSeconds.toFixed(2)} s vs ${r.limit.wallSeconds.toFixed(2)} s straight from the link = ${within.toFixed(2)}× (distribution ${(ds.one.wallSeconds / r.limit.wallSeconds).toFixed(2)}×)`,
    ),
  );
  const vsDist = pm.many.wallSeconds / ds.many.wallSeconds;
  targets.push(
    target(
      `pullmirror: ${MANY_CLIENTS} clients at most ${MANY_CLIENTS_TARGET}× distribution's wall time`,
      pm.many.ok && ds.many.ok ? vsDist <= MANY_CLIENTS_TARGET : undefined,
      `${pm.many.wallSeconds.toFixed(2)} s vs ${ds.many.wallSeconds.toFixed(2)} s = ${vsDist.toFixed(2)}×`,
    ),
  );
  if (r.relay) {
    targets.push(
      target(
        `the link relay (cap and delay off) passes ≥ ${RELAY_TARGET_GIBPS} GiB/s on loopback`,
        r.relay.viaLinkGiBps >= RELAY_TARGET_GIBPS,
        `${r.relay.viaLinkGiBps.toFixed(2)} GiB/s through it vs ${r.relay.directGiBps.toFixed(2)} GiB/s direct (${r.relay.client}, best of ${RELAY_CHECK_RUNS} × ${RELAY_CHECK_BYTES / GiB} GiB)`,
      ),
    );
  }
  const notes: string[] = [
    `Link: ${r.link.mibps} MiB/s per direction shared by all connections (one FIFO bottleneck), ${r.link.rttMs} ms round trip (half each way, plus one rtt of handshake per new connection), 4 MiB window per connection; a relay in its own process (spec/support/link-proxy.ts). The token server is reached directly, not across the link.`,
    `Image: ${REPO}:${TAG}, one ${r.blobMiB} MiB layer of random bytes + config + manifest = ${(r.imageBytes / MiB).toFixed(2)} MiB. Clients: skopeo copy docker://… dir:… (each in its own temp dir and mount namespace, as the e2e tests run it), ${MANY_CLIENTS} started at once; each copy is checked by digest. Every server run starts on an empty store.`,
    `"First layer GET over the link" runs from its request line to its last body byte crossing the link: at ${r.link.mibps} MiB/s alone, one copy takes ${(r.imageBytes / MiB / r.link.mibps).toFixed(2)} s; longer means the server read it slower than the link could carry it (or shared the link with its other GETs).`,
    `"Bytes over the link" are counted until the server had stored the layer and the link had been quiet for 1 s, so distribution's background fill is included; "until stored" is when the layer was in the server's store.`,
    `Limit: skopeo straight from the link (${r.limit.ok ? `${r.limit.wallSeconds.toFixed(2)} s, ${(r.limit.bytesDown / MiB).toFixed(1)} MiB, ${(r.imageBytes / MiB / r.limit.wallSeconds).toFixed(1)} MiB/s effective` : r.limit.error}). ${os.cpus().length} cores here: skopeo's own sha256 and disk writes (${MANY_CLIENTS} × ${r.blobMiB} MiB) compete with the server.`,
  ];
  if (r.relay) {
    notes.push(
      `Relay check (cap and delay off): fast source → curl ${r.relay.directGiBps.toFixed(2)} GiB/s direct, ${r.relay.viaLinkGiBps.toFixed(2)} GiB/s through the link relay. The upstream registry's GET of the layer with curl: ${r.relay.upstreamDirectMiBps?.toFixed(0)} MiB/s direct, ${r.relay.upstreamViaLinkMiBps?.toFixed(0)} MiB/s through the unshaped link.`,
    );
  } else if (r.relayNote) notes.push(r.relayNote);
  for (const [name, runs] of Object.entries(r.servers)) {
    for (const p of [runs.one, runs.many]) if (p.error) notes.push(`${name}, ${p.clients} client(s): ${p.error}`);
  }
  return { text, markdown, targets, notes };
}

/** `npm run bench -- link`: runs, prints, writes spec/bench/results/link-<timestamp>.{json,md}; 1 when pullmirror's clients failed. */
export async function benchLinkCase(log: Log, onCleanup: OnCleanup): Promise<number> {
  const missing = ['docker-registry', 'skopeo'].filter((b) => !findBinary(b));
  if (missing.length) {
    log(`ERROR: link case needs ${missing.join(', ')} (Debian: apt-get install docker-registry skopeo)`);
    return 1;
  }
  const started = performance.now();
  const results: LinkBenchResult[] = [];
  for (let run = 1; run <= RUNS; run++) {
    if (RUNS > 1) log(`link: run ${run} of ${RUNS}`);
    const result = await benchLink(log, onCleanup);
    results.push(result);
    const { text, markdown, targets, notes } = reportLink(result);
    const title = `pullmirror vs distribution through a ${result.link.mibps} MiB/s, ${result.link.rttMs} ms link — ${new Date().toISOString()}, ${((performance.now() - started) / 1000).toFixed(0)} s`;
    const targetLines = targets.map((t) => `${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`);
    process.stdout.write(['', title, '', text, '', 'Targets (informational):', ...targetLines.map((l) => `  ${l}`), '', 'Notes:', ...notes.map((n) => `  - ${n}`), ''].join('\n'));
    const base = writeResults(
      'link',
      { date: new Date().toISOString(), loadavg: os.loadavg(), result, targets, notes },
      [`# ${title}`, '', markdown, '', '## Targets (informational)', '', ...targets.map((t) => `- **${t.verdict}** ${t.name}: ${t.detail}`), '', '## Notes', '', ...notes.map((n) => `- ${n}`), ''].join('\n'),
    );
    process.stdout.write(`Results: ${base}.json and ${base}.md\n`);
  }
  if (RUNS > 1) process.stdout.write(`${summarizeLinkRuns(results)}\n`);
  return results.every((r) => r.servers.pullmirror.one.ok && r.servers.pullmirror.many.ok) ? 0 : 1;
}

/** The targets over several runs: median (min–max) of each ratio. */
function summarizeLinkRuns(results: LinkBenchResult[]): string {
  const spread = (values: number[]) => {
    const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
    if (sorted.length === 0) return 'n/a';
    const mid = Math.floor(sorted.length / 2);
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    return `${median.toFixed(2)} (${sorted[0].toFixed(2)}–${sorted[sorted.length - 1].toFixed(2)})`;
  };
  const pm = (r: LinkBenchResult) => r.servers.pullmirror;
  const ds = (r: LinkBenchResult) => r.servers.distribution;
  return [
    '',
    `Link, ${results.length} runs: median (min–max)`,
    `  limit, 1 skopeo straight from the link: wall s           ${spread(results.map((r) => r.limit.wallSeconds))}`,
    `  pullmirror 1 client / limit (need ≤ ${ONE_CLIENT_TARGET}):             ${spread(results.map((r) => pm(r).one.wallSeconds / r.limit.wallSeconds))}`,
    `  distribution 1 client / limit:                          ${spread(results.map((r) => ds(r).one.wallSeconds / r.limit.wallSeconds))}`,
    `  ${MANY_CLIENTS} clients: pullmirror wall s                          ${spread(results.map((r) => pm(r).many.wallSeconds))}`,
    `  ${MANY_CLIENTS} clients: distribution wall s                        ${spread(results.map((r) => ds(r).many.wallSeconds))}`,
    `  ${MANY_CLIENTS} clients: pullmirror / distribution (need ≤ ${MANY_CLIENTS_TARGET}):     ${spread(results.map((r) => pm(r).many.wallSeconds / ds(r).many.wallSeconds))}`,
    `  copies over the link, pullmirror 1 / ${MANY_CLIENTS} clients:            ${spread(results.map((r) => pm(r).one.copies))} / ${spread(results.map((r) => pm(r).many.copies))}`,
  ].join('\n');
}
