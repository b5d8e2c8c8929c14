/**
 * Bench case `stall`: clients that stop reading. STALL_CLIENTS clients GET a cached BLOB_MIB
 * blob, read the headers and a little of the body, then stop reading (the socket stays open).
 * Measured for pullmirror and distribution: the server's RSS and open descriptors before and
 * while they stall, memory per stalled reader, and whether and when the server lets go of them.
 *
 * pullmirror is started with `REGISTRY_HTTP_SENDTIMEOUT=10s` (issue 12: a response that makes
 * no progress for that long is closed). A build that does not know the key refuses to start
 * (unknown keys stop start-up): the case then says "sendtimeout not supported" and measures the
 * build without it. distribution has no such timeout: the case reports what it holds.
 *
 * Then HALF_REQUEST clients send half a request head and nothing more: does the server drop
 * them (the issue asks for request headers within 20 s)?
 *
 * `npm run bench -- stall`; BENCH_BLOB_MIB=N for a smaller blob while developing.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { MIRROR_ACCOUNT, PUSHER } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { findBinary } from '../support/processes.ts';
import { blobDataPath, startDistributionProxy, startUpstreamRegistry } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { BLOB_MIB, blobPathInStore, countFds, MiB, readProcMem, table, target, waitForFile, writeResults, type Row, type Target } from './measure.ts';

const REPO = 'library/bench';
/** Stalled readers (issue 12 measured 400). */
export const STALL_CLIENTS = 400;
/** Body bytes each stalled client reads before it stops. */
const STALL_READ_BYTES = 64 * 1024;
/** What pullmirror is started with. */
const SEND_TIMEOUT = '10s';
const SEND_TIMEOUT_SECONDS = 10;
/** How long the case watches a server hold stalled readers (sendtimeout + 30 s). */
const STALL_WATCH_SECONDS = SEND_TIMEOUT_SECONDS + 30;
/** Clients that send half a request head; watched for HALF_WATCH_SECONDS (the issue wants ≤ 20 s). */
const HALF_REQUEST_CLIENTS = 400;
const HALF_WATCH_SECONDS = 30;
/** A server "let go" once it holds at most this many more sockets than before the clients came. */
const RELEASED_SLACK = 5;
/** After the watch, the stalled clients read again for this long: a closed connection ends early. */
const RESUME_MS = 3000;
const OPEN_BATCH = 50;
const SAMPLE_MS = 250;

type Log = (message: string) => void;
type OnCleanup = (what: string, run: () => Promise<void> | void) => void;

interface StalledClient {
  socket: net.Socket;
  status: number;
  bytes: number;
  contentLength: number;
  /** The connection ended or failed (seen only while reading). */
  ended: boolean;
}

/** GET `path`, read the head and STALL_READ_BYTES of body, then stop reading. */
function openStalled(port: number, path: string): Promise<StalledClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const client: StalledClient = { socket, status: 0, bytes: 0, contentLength: -1, ended: false };
    let head = '';
    let bodyBytes = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`stalled client: no ${STALL_READ_BYTES} body bytes within 30 s (status ${client.status})`));
    }, 30_000);
    socket.on('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: pullmirror-bench-stall\r\n\r\n`));
    const onData = (chunk: Buffer) => {
      client.bytes += chunk.length;
      if (client.status === 0) {
        head += chunk.toString('latin1', 0, Math.min(chunk.length, 4096));
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.status = Number(/^HTTP\/1\.\d (\d{3})/.exec(head)?.[1] ?? 0);
        client.contentLength = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? -1);
        bodyBytes = client.bytes - (end + 4);
      } else {
        bodyBytes += chunk.length;
      }
      if (bodyBytes >= STALL_READ_BYTES || client.status !== 200) {
        socket.off('data', onData);
        socket.pause();
        clearTimeout(timer);
        resolve(client);
      }
    };
    socket.on('data', onData);
    socket.on('error', (err) => {
      client.ended = true;
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      client.ended = true;
    });
  });
}

/** Clients that send the start of a request head and never finish it. */
function openHalfRequest(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.write(`GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

async function inBatches<T>(n: number, open: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += OPEN_BATCH) out.push(...(await Promise.all(Array.from({ length: Math.min(OPEN_BATCH, n - i) }, open))));
  return out;
}

interface Watch {
  /** Seconds from the last client's stall until the server held at most RELEASED_SLACK more sockets than before; undefined if it never did. */
  releasedAfterSeconds?: number;
  /** Sockets and descriptors the server held when the watch ended. */
  socketsAtEnd: number;
  fdsAtEnd: number;
  peakFds: number;
  peakRss: number;
  rssAtEnd: number;
}

/** Samples fds and RSS of `pid` until it let go of the clients (+2 s) or `seconds` passed. */
async function watch(pid: number, baseSockets: number, seconds: number): Promise<Watch> {
  const started = performance.now();
  let releasedAfterSeconds: number | undefined;
  let peakFds = 0;
  let peakRss = 0;
  let last = countFds(pid);
  let rss = 0;
  while (performance.now() - started < seconds * 1000) {
    last = countFds(pid);
    rss = (await readProcMem(pid))?.rss ?? NaN;
    peakFds = Math.max(peakFds, last.all);
    peakRss = Math.max(peakRss, rss);
    if (releasedAfterSeconds === undefined && last.sockets <= baseSockets + RELEASED_SLACK) releasedAfterSeconds = (performance.now() - started) / 1000;
    if (releasedAfterSeconds !== undefined && performance.now() - started > releasedAfterSeconds * 1000 + 2000) break;
    await sleep(SAMPLE_MS);
  }
  return { releasedAfterSeconds, socketsAtEnd: last.sockets, fdsAtEnd: last.all, peakFds, peakRss, rssAtEnd: rss };
}

/** Lets the stalled clients read again for RESUME_MS: how many connections end before the body does. */
async function resumeAndCount(clients: StalledClient[]): Promise<{ endedEarly: number; stillStreaming: number; endedBefore: number }> {
  const endedBefore = clients.filter((c) => c.ended).length;
  let endedEarly = 0;
  await Promise.all(
    clients.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ended) {
            resolve();
            return;
          }
          let ours = false;
          const timer = setTimeout(() => {
            ours = true;
            c.socket.destroy();
            resolve();
          }, RESUME_MS);
          c.socket.on('data', () => {});
          c.socket.once('close', () => {
            clearTimeout(timer);
            if (!ours) endedEarly += 1;
            resolve();
          });
          c.socket.resume();
        }),
    ),
  );
  return { endedEarly, stillStreaming: clients.length - endedBefore - endedEarly, endedBefore };
}

export interface StallResult {
  server: 'pullmirror' | 'distribution';
  sendTimeout: string;
  clients: number;
  statuses: Record<string, number>;
  rssBefore: number;
  rssStalled: number;
  fdsBefore: number;
  socketsBefore: number;
  fdsStalled: number;
  socketsStalled: number;
  /** (rssStalled − rssBefore) / clients. */
  bytesPerReader: number;
  watch: Watch;
  resumed: { endedEarly: number; stillStreaming: number; endedBefore: number };
  halfRequest: { clients: number; fdsBefore: number; fdsHeld: number; watch: Watch };
  error?: string;
}

async function getHashed(url: string): Promise<{ status: number; sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sha256: `sha256:${hash.digest('hex')}`, bytes }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** One server's figures; exported so the case's logic can be tried against any HTTP server. */
export async function stallOne(
  log: Log,
  server: { name: StallResult['server']; port: number; pid: number; sendTimeout: string; stored: () => Promise<boolean> },
  blob: { digest: string; size: number },
): Promise<StallResult> {
  const path = `/v2/${REPO}/blobs/${blob.digest}`;
  const warm = await getHashed(`http://127.0.0.1:${server.port}${path}`);
  if (warm.status !== 200 || warm.sha256 !== blob.digest) throw new Error(`${server.name}: warm-up GET: HTTP ${warm.status}, ${warm.bytes} bytes, ${warm.sha256}`);
  if (!(await server.stored())) throw new Error(`${server.name}: the blob was not stored within 60 s`);
  await sleep(1000);
  const rssBefore = (await readProcMem(server.pid))?.rss ?? NaN;
  const before = countFds(server.pid);

  log(`stall: ${server.name}: ${STALL_CLIENTS} clients read ${STALL_READ_BYTES / 1024} KiB of the ${(blob.size / MiB).toFixed(0)} MiB blob, then stop reading`);
  const clients = await inBatches(STALL_CLIENTS, () => openStalled(server.port, path));
  const statuses: Record<string, number> = {};
  for (const c of clients) statuses[String(c.status)] = (statuses[String(c.status)] ?? 0) + 1;
  // Let the server fill the sockets' buffers, then take the "stalled" figures.
  await sleep(2000);
  const rssStalled = (await readProcMem(server.pid))?.rss ?? NaN;
  const stalled = countFds(server.pid);
  log(`stall: ${server.name}: RSS ${(rssBefore / MiB).toFixed(0)} → ${(rssStalled / MiB).toFixed(0)} MiB, fds ${before.all} → ${stalled.all}; watching up to ${STALL_WATCH_SECONDS} s`);
  const watched = await watch(server.pid, before.sockets, STALL_WATCH_SECONDS - 2);
  if (watched.releasedAfterSeconds !== undefined) watched.releasedAfterSeconds += 2;
  const resumed = await resumeAndCount(clients);
  for (const c of clients) c.socket.destroy();

  await sleep(1000);
  const halfBefore = countFds(server.pid);
  log(`stall: ${server.name}: ${HALF_REQUEST_CLIENTS} clients send half a request head; watching up to ${HALF_WATCH_SECONDS} s`);
  const half = await inBatches(HALF_REQUEST_CLIENTS, () => openHalfRequest(server.port));
  await sleep(500);
  const halfHeld = countFds(server.pid);
  const halfWatch = await watch(server.pid, halfBefore.sockets, HALF_WATCH_SECONDS);
  if (halfWatch.releasedAfterSeconds !== undefined) halfWatch.releasedAfterSeconds += 0.5;
  for (const s of half) s.destroy();

  return {
    server: server.name,
    sendTimeout: server.sendTimeout,
    clients: clients.length,
    statuses,
    rssBefore,
    rssStalled,
    fdsBefore: before.all,
    socketsBefore: before.sockets,
    fdsStalled: stalled.all,
    socketsStalled: stalled.sockets,
    bytesPerReader: (rssStalled - rssBefore) / clients.length,
    watch: watched,
    resumed,
    halfRequest: { clients: half.length, fdsBefore: halfBefore.all, fdsHeld: halfHeld.all, watch: halfWatch },
  };
}

export async function benchStall(log: Log, onCleanup: OnCleanup): Promise<{ results: StallResult[]; notes: string[] }> {
  const stops: Array<() => Promise<void> | void> = [];
  const later = (what: string, run: () => Promise<void> | void) => {
    stops.push(run);
    onCleanup(what, run);
  };
  const notes: string[] = [];
  try {
    const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
    later('stall token server', () => tokens.close());
    const registry = await startUpstreamRegistry({ tokenServer: tokens });
    later(`stall upstream docker-registry pid ${registry.pid}`, () => registry.stop());
    log(`stall: pushing a ${BLOB_MIB} MiB blob`);
    const blob = await pushRandomBlob(registry.url, PUSHER, REPO, { sizeMiB: BLOB_MIB, label: 'bench-stall' });
    const results: StallResult[] = [];

    // pullmirror, with the send timeout if this build knows the key.
    let sendTimeout = SEND_TIMEOUT;
    const base = { remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true };
    const mirror = await startMirror({ ...base, env: { REGISTRY_HTTP_SENDTIMEOUT: SEND_TIMEOUT } }).catch(async (err: Error) => {
      if (!/sendtimeout/i.test(err.message)) throw err;
      sendTimeout = 'not supported';
      notes.push(`pullmirror: sendtimeout not supported by this build (REGISTRY_HTTP_SENDTIMEOUT=${SEND_TIMEOUT} refused: ${/[^\n]*sendtimeout[^\n]*/i.exec(err.message)?.[0].trim().slice(0, 200)}); measured without it.`);
      log('stall: pullmirror refuses http.sendtimeout (sendtimeout not supported); measuring without it');
      return startMirror(base);
    });
    later(`stall pullmirror pid ${mirror.process.pid}`, () => mirror.stop());
    results.push(
      await stallOne(log, { name: 'pullmirror', port: mirror.port, pid: mirror.process.pid, sendTimeout, stored: () => waitForFile(blobPathInStore(mirror.root, blob.digest), blob.size, 60_000) }, blob),
    );
    await mirror.stop();

    const dist = await startDistributionProxy({ remoteurl: registry.url, ...MIRROR_ACCOUNT });
    later(`stall distribution pid ${dist.pid}`, () => dist.stop());
    results.push(await stallOne(log, { name: 'distribution', port: dist.port, pid: dist.pid, sendTimeout: 'none (no such setting)', stored: () => waitForFile(blobDataPath(dist.rootDir, blob.digest), blob.size, 60_000) }, blob));
    return { results, notes };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

const released = (w: Watch, within: number): string => (w.releasedAfterSeconds === undefined ? `still held after ${within} s` : `released after ${w.releasedAfterSeconds.toFixed(1)} s`);

export function reportStall(results: StallResult[], notes: string[]): { text: string; markdown: string; targets: Target[]; notes: string[] } {
  const [pm, ds] = results;
  const both = (f: (r: StallResult) => number | string | undefined, metric: string, better: Row['better'], digits = 1): Row => ({ metric, better, pm: f(pm), dist: f(ds), digits });
  const rows: Row[] = [
    both((r) => r.sendTimeout, 'send timeout', ''),
    both((r) => Object.entries(r.statuses).map(([s, n]) => `${n}×${s}`).join(' + '), `${STALL_CLIENTS} stalled GETs: statuses`, ''),
    both((r) => r.rssBefore / MiB, 'RSS before (MiB)', 'lower'),
    both((r) => r.rssStalled / MiB, `RSS with ${STALL_CLIENTS} stalled readers (MiB)`, 'lower'),
    both((r) => r.bytesPerReader / 1024, 'memory per stalled reader (KiB)', 'lower'),
    both((r) => `${r.fdsBefore} → ${r.fdsStalled}`, 'open fds before → stalled', ''),
    both((r) => (r.fdsStalled - r.fdsBefore) / r.clients, 'fds per stalled reader', 'lower', 2),
    both((r) => released(r.watch, STALL_WATCH_SECONDS), 'stalled readers', ''),
    both((r) => r.watch.fdsAtEnd, 'open fds at the end of the watch', 'lower', 0),
    both((r) => r.watch.rssAtEnd / MiB, 'RSS at the end of the watch (MiB)', 'lower'),
    both((r) => `${r.resumed.endedEarly + r.resumed.endedBefore} closed / ${r.resumed.stillStreaming} streaming`, 'stalled clients, reading again', ''),
    both((r) => `${r.halfRequest.fdsBefore} → ${r.halfRequest.fdsHeld}`, `${HALF_REQUEST_CLIENTS} half request heads: fds`, ''),
    both((r) => released(r.halfRequest.watch, HALF_WATCH_SECONDS), 'half request heads', ''),
  ];
  const { text, markdown } = table(rows);
  const targets: Target[] = [];
  const pmReleased = pm.watch.releasedAfterSeconds;
  targets.push(
    target(
      `pullmirror: stalled readers are closed after http.sendtimeout (${SEND_TIMEOUT}) and their descriptors released`,
      pm.sendTimeout === 'not supported' ? false : pmReleased !== undefined && pmReleased <= SEND_TIMEOUT_SECONDS + 10,
      pm.sendTimeout === 'not supported'
        ? `sendtimeout not supported by this build; without it the readers were ${released(pm.watch, STALL_WATCH_SECONDS)}, ${pm.watch.fdsAtEnd} fds at the end`
        : `${released(pm.watch, STALL_WATCH_SECONDS)} (fds ${pm.fdsStalled} → ${pm.watch.fdsAtEnd}); distribution: ${released(ds.watch, STALL_WATCH_SECONDS)}`,
    ),
  );
  targets.push(
    target(
      'pullmirror: memory per stalled reader well under 256 KiB',
      Number.isFinite(pm.bytesPerReader) ? pm.bytesPerReader < 128 * 1024 : undefined,
      `${(pm.bytesPerReader / 1024).toFixed(1)} KiB (RSS ${(pm.rssBefore / MiB).toFixed(1)} → ${(pm.rssStalled / MiB).toFixed(1)} MiB for ${pm.clients}); distribution ${(ds.bytesPerReader / 1024).toFixed(1)} KiB`,
    ),
  );
  targets.push(
    target(
      'pullmirror: a request head must arrive within 20 s',
      pm.halfRequest.watch.releasedAfterSeconds !== undefined ? pm.halfRequest.watch.releasedAfterSeconds <= 21 : false,
      `${HALF_REQUEST_CLIENTS} half heads: ${released(pm.halfRequest.watch, HALF_WATCH_SECONDS)}; distribution: ${released(ds.halfRequest.watch, HALF_WATCH_SECONDS)}`,
    ),
  );
  const allNotes = [
    ...notes,
    `Stalled readers: ${STALL_CLIENTS} raw connections each GET the cached ${BLOB_MIB} MiB blob, read the head and ${STALL_READ_BYTES / 1024} KiB, then stop reading (socket paused, kept open). "Stalled" figures are taken 2 s after the last one stopped; "released" is when the server held at most ${RELEASED_SLACK} more sockets than before (/proc/PID/fd), counted from then; watched for up to ${STALL_WATCH_SECONDS} s. Then each client reads again for ${RESUME_MS / 1000} s: a connection the server closed ends early (after what the kernel still held), one it kept goes on streaming.`,
    `Memory per reader is the RSS growth over the readers; the kernel's socket buffers (up to a few MiB per connection here) are not in it. fds: \`ls /proc/PID/fd | wc -l\`.`,
    `Host: ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`,
  ];
  return { text, markdown, targets, notes: allNotes };
}

/** `npm run bench -- stall`: runs, prints, writes spec/bench/results/stall-<timestamp>.{json,md}. 1 when pullmirror answered a stalled GET wrongly. */
export async function benchStallCase(log: Log, onCleanup: OnCleanup): Promise<number> {
  if (!findBinary('docker-registry')) {
    log('ERROR: stall case needs docker-registry (Debian: apt-get install docker-registry)');
    return 1;
  }
  const started = performance.now();
  const { results, notes } = await benchStall(log, onCleanup);
  const report = reportStall(results, notes);
  const title = `Stalled clients: pullmirror vs distribution — ${new Date().toISOString()}, ${((performance.now() - started) / 1000).toFixed(0)} s`;
  const targetLines = report.targets.map((t) => `${t.verdict.padEnd(4)}  ${t.name}: ${t.detail}`);
  process.stdout.write(['', title, '', report.text, '', 'Targets (informational):', ...targetLines.map((l) => `  ${l}`), '', 'Notes:', ...report.notes.map((n) => `  - ${n}`), ''].join('\n'));
  const base = writeResults(
    'stall',
    { date: new Date().toISOString(), parameters: { clients: STALL_CLIENTS, readBytes: STALL_READ_BYTES, sendTimeout: SEND_TIMEOUT, blobMiB: BLOB_MIB }, results, targets: report.targets, notes: report.notes },
    [`# ${title}`, '', report.markdown, '', '## Targets (informational)', '', ...report.targets.map((t) => `- **${t.verdict}** ${t.name}: ${t.detail}`), '', '## Notes', '', ...report.notes.map((n) => `- ${n}`), ''].join('\n'),
  );
  process.stdout.write(`Results: ${base}.json and ${base}.md\n`);
  return results[0].statuses['200'] === results[0].clients ? 0 : 1;
}
