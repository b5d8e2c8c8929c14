/**
 * `npm run bench -- scale`: a mirror on a fleet-sized store (150 000 blobs, 3 000 repositories,
 * 10 000 tags, with the `_layers` links a real mirror writes), generated in the on-disk layout
 * as the gc bench does. Measured, each against the target:
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
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startCommand, startMirror, type RunningMirror } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';
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

/** A real 1 MiB blob in the store, linked from one repository: what the warm GETs read. */
function storeWarmBlob(root: string): { repository: string; digest: string } {
  const bytes = createHash('sha512').update('scale-warm').digest();
  const content = Buffer.alloc(MiB);
  for (let i = 0; i < content.length; i += bytes.length) bytes.copy(content, i);
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
  const file = blobPath(root, digest);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  const link = path.join(root, 'repositories', 'library', 'warm', '_layers', 'sha256', digest.slice(7));
  mkdirSync(path.dirname(link), { recursive: true });
  writeFileSync(link, digest);
  return { repository: 'library/warm', digest };
}

/** A six-field cron expression for the second `seconds` from now (the one pass of this run). */
function cronIn(seconds: number): { expression: string; at: number } {
  const at = new Date(Date.now() + seconds * 1000);
  return { expression: `${at.getSeconds()} ${at.getMinutes()} ${at.getHours()} * * *`, at: at.getTime() };
}

export async function benchScale(log: Log): Promise<number> {
  const work = tempDir('pullmirror-bench-scale');
  let mirror: RunningMirror | undefined;
  try {
    const root = path.join(work.path, 'store');
    log(`scale: generating ${SCALE_SHAPE.blobs} blobs, ${SCALE_SHAPE.images} tags in ${SCALE_SHAPE.repositories} repositories`);
    const generating = performance.now();
    const shape = generateStore(root, log, SCALE_SHAPE);
    const warm = storeWarmBlob(root);
    log(`scale: store generated in ${((performance.now() - generating) / 1000).toFixed(1)} s: ${shape.referenced} referenced blobs, ${shape.orphans} unreferenced, ${shape.staleImages} images past the TTL`);
    const configFile = path.join(work.path, 'config.yml');
    writeFileSync(configFile, stringify({ version: '0.1', log: { level: 'error', formatter: 'json' }, storage: { filesystem: { rootdirectory: root } } }));
    log('scale: gc --dry-run');
    const gc = await dryRun(configFile);
    log(`scale: gc --dry-run ${gc.seconds.toFixed(2)} s, first line after ${gc.firstLineS.toFixed(2)} s, peak RSS ${gc.peakRssMiB.toFixed(1)} MiB`);

    // The pass starts 45 s after start-up: the first walk is over by then, idle figures taken.
    const passStart = cronIn(45);
    mirror = await startMirror({
      remoteurl: 'http://127.0.0.1:9',
      root,
      bundle: true,
      // PULLMIRROR_NODE_OPTIONS (e.g. --trace-gc, --heapsnapshot-signal=SIGUSR2) to see where memory goes.
      env: process.env.PULLMIRROR_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PULLMIRROR_NODE_OPTIONS } : {},
      config: { log: { level: 'info' }, storage: { delete: { enabled: true }, eviction: { schedule: passStart.expression } } },
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
    for (;;) {
      const status = (await (await fetch(`${mirror.url}/api/status`)).json()) as { store: { complete: boolean; blobs: number } };
      if (status.store.complete) {
        log(`scale: first walk done after ${((performance.now() - started) / 1000).toFixed(1)} s: ${status.store.blobs} blobs`);
        break;
      }
      await sleep(200);
    }
    phase = 'idle';
    const lines = () => mirror!.logLines();
    while (!lines().some((line) => line.message === 'eviction pass started')) await sleep(20);
    phase = 'pass';
    log('scale: eviction pass started');
    let finished: Record<string, any> | undefined;
    while (!(finished = lines().find((line) => line.message === 'eviction pass finished' || line.message === 'eviction pass failed'))) await sleep(20);
    passEnd = performance.now();
    phase = 'after';
    log(`scale: eviction pass ${finished.message}: ${JSON.stringify(finished)}`);
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
    const table = [
      '',
      `pullmirror on a store of ${SCALE_SHAPE.blobs} blobs, ${SCALE_SHAPE.repositories} repositories, ${SCALE_SHAPE.images} tags — ${new Date().toISOString()}`,
      '',
      '| figure | value | target | |',
      '| --- | ---: | --- | --- |',
      `| /metrics + /api/status, max ms (${opsAll.length} requests; first walk / idle / pass / after) | ${Math.max(...opsAll).toFixed(1)} (${(['first walk', 'idle', 'pass', 'after'] as Phase[]).map((p) => Math.max(...of(ops, p)).toFixed(1)).join(' / ')}) | < 50 | ${verdict(Math.max(...opsAll) < 50)} |`,
      `| event loop, longest stall during the pass, ms | ${stall.toFixed(1)} | <= 20 | ${verdict(stall <= 20)} |`,
      `| warm GET 1 MiB p99, idle / during the pass, ms (${of(warmGets, 'idle').length} / ${of(warmGets, 'pass').length} GETs) | ${idleP99.toFixed(1)} / ${passP99.toFixed(1)} (${(passP99 / idleP99).toFixed(2)}x) | <= 2x | ${verdict(passP99 <= 2 * idleP99)} |`,
      `| warm GET p50 / p90 / max, idle; during the pass, ms | ${[50, 90, 100].map((q) => percentile(of(warmGets, 'idle'), q).toFixed(1)).join(' / ')}; ${[50, 90, 100].map((q) => percentile(of(warmGets, 'pass'), q).toFixed(1)).join(' / ')} | | |`,
      `| RSS: first walk peak / idle / pass peak / 10 s after, MB | ${Math.max(...of(rss, 'first walk')).toFixed(1)} / ${(of(rss, 'idle').at(-1) ?? NaN).toFixed(1)} / ${rssPass.toFixed(1)} / ${rssAfter.toFixed(1)} | pass < 150 | ${verdict(rssPass < 150)} |`,
      `| eviction pass: duration, removed | ${(Number(finished.durationMs) / 1000).toFixed(2)} s, ${finished.manifests} manifests, ${finished.tags} tags, ${finished.blobs} blobs | | |`,
      `| store figures after the pass (live) | ${afterPassStatus.store.blobs} blobs | | |`,
      `| gc --dry-run: wall s, first line after s, peak RSS MiB, lines | ${gc.seconds.toFixed(2)}, ${gc.firstLineS.toFixed(2)}, ${gc.peakRssMiB.toFixed(1)}, ${gc.lines} | streams | |`,
      '',
      `gc --dry-run summary: ${gc.summary}`,
      ...(failures.length ? ['', `FAILURES (${failures.length}): ${failures.slice(0, 5).join('; ')}`] : []),
      '',
    ];
    process.stdout.write(table.join('\n'));
    const results = path.join(HERE, 'results');
    mkdirSync(results, { recursive: true });
    const file = path.join(results, `scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), shape: SCALE_SHAPE, generated: shape, gc, pass: finished, passDurationMs: passEnd - started, ops, warmGets: { idleP99, passP99 }, rss: { pass: rssPass, after: rssAfter } }, null, 2)}\n`);
    process.stdout.write(`Results: ${file}\n`);
    return failures.length ? 1 : 0;
  } finally {
    await mirror?.stop();
    if (process.env.BENCH_KEEP === '1') log(`scale: BENCH_KEEP=1: store kept in ${work.path}`);
    else await work.cleanup();
  }
}
