/**
 * Where pullmirror's RSS goes in the hit bench's phases: RssAnon / RssFile from /proc/PID/status,
 * sampled every 50 ms; at each phase's peak also the mirror's V8 heap (nodejs_heap_used_bytes).
 * `node spec/bench/rss-phases.ts [MiB]` (a measurement: not while another bench runs).
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PUSHER, MIRROR_ACCOUNT } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { startUpstreamRegistry } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { get } from './hit.ts';
import { spawn } from 'node:child_process';

const size = Number(process.argv[2] ?? 256);
const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
const registry = await startUpstreamRegistry({ tokenServer: tokens });
const nodeArgs = (process.env.PULLMIRROR_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
const mirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true, nodeArgs });
const pid = mirror.process.pid;
const status = () => {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
};
const heap = async () => {
  const text = await (await fetch(`${mirror.url}/metrics`)).text();
  return Number(/nodejs_heap_used_bytes (\d+)/.exec(text)?.[1] ?? NaN) / 2 ** 20;
};
async function phase(name: string, work: () => Promise<unknown>): Promise<void> {
  let peak = status();
  let peakHeap = NaN;
  let running = true;
  const watch = (async () => {
    while (running) {
      const now = status();
      if (now.rss > peak.rss) {
        peak = now;
        peakHeap = await heap().catch(() => NaN);
      }
      await sleep(50);
    }
  })();
  await work();
  running = false;
  await watch;
  const after = status();
  console.log(`${name.padEnd(22)} peak RSS ${peak.rss.toFixed(1)} MiB (anon ${peak.anon.toFixed(1)}, file ${peak.file.toFixed(1)}), V8 heap used near the peak ${peakHeap.toFixed(1)} MiB; after: RSS ${after.rss.toFixed(1)} (anon ${after.anon.toFixed(1)})`);
}
try {
  const a = await pushRandomBlob(registry.url, PUSHER, 'library/rss', { sizeMiB: size, label: `rss-a-${Date.now()}` });
  const b = await pushRandomBlob(registry.url, PUSHER, 'library/rss', { sizeMiB: size, label: `rss-b-${Date.now()}` });
  const url = (digest: string) => `${mirror.url}/v2/library/rss/blobs/${digest}`;
  console.log(`idle                   RSS ${status().rss.toFixed(1)} MiB (anon ${status().anon.toFixed(1)}, file ${status().file.toFixed(1)}), heap ${(await heap()).toFixed(1)} MiB`);
  await phase('cold, 1 client', () => get(url(a.digest), { hash: true }));
  await phase('cold, 16 clients', () => Promise.all(Array.from({ length: 16 }, () => get(url(b.digest), { hash: true }))));
  await sleep(1000);
  const wrk = (clients: number, seconds: number) => () =>
    new Promise((resolve) => spawn('wrk', ['-t', '2', '-c', String(clients), '-d', `${seconds}s`, '--timeout', '60s', url(b.digest)], { stdio: 'ignore' }).once('exit', resolve));
  await phase('warm, 1 client (wrk)', wrk(1, 3));
  await phase('warm, 16 clients (wrk)', wrk(16, 4));
  console.log(`VmHWM ${(Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024).toFixed(1)} MiB`);
} finally {
  await mirror.stop();
  await registry.stop();
  await tokens.close();
}
