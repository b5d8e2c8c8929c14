/**
 * The hit path alone, for profiling: one cold GET of a large blob through pullmirror, then
 * `gets` warm GETs of it by curl (to /dev/null), one at a time. Prints wall time, MiB/s and the
 * mirror's CPU seconds per GiB (utime + stime, all threads) for each phase, and the mirror's pid
 * while the warm GETs run (`perf stat -p PID`). PULLMIRROR_NODE_OPTIONS (e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof`) is passed to the mirror; HIT_PROFILE_WAIT=1 waits for Enter
 * before the warm GETs (to attach a profiler).
 *
 * `node spec/bench/hit-profile.ts [MiB] [gets]`. Upstream: token server + docker-registry.
 */
import { spawn } from 'node:child_process';
import { PUSHER, MIRROR_ACCOUNT } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { startUpstreamRegistry } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { GiB, MiB, readCpuSeconds, readProcMem } from './measure.ts';

const size = Number(process.argv[2] ?? 256);
const gets = Number(process.argv[3] ?? 8);
/** Clients at once, cold and warm (HIT_PROFILE_CLIENTS, default 1); each makes `gets` warm GETs. */
const clients = Number(process.env.HIT_PROFILE_CLIENTS ?? 1);

function curl(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('curl', ['-sf', '-o', '/dev/null', url], { stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`curl exit ${code}`))));
  });
}

const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
const registry = await startUpstreamRegistry({ tokenServer: tokens });
const extra: Record<string, string> = process.env.PULLMIRROR_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PULLMIRROR_NODE_OPTIONS } : {};
if (process.env.UV_USE_IO_URING) extra.UV_USE_IO_URING = process.env.UV_USE_IO_URING;
const mirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true, env: extra });
const pid = mirror.process.pid;
try {
  const blob = await pushRandomBlob(registry.url, PUSHER, 'library/prof', { sizeMiB: size, label: `hit-prof-${Date.now()}` });
  const url = `${mirror.url}/v2/library/prof/blobs/${blob.digest}`;
  let cpu = await readCpuSeconds(pid);
  const coldMs = Math.max(...(await Promise.all(Array.from({ length: clients }, () => curl(url)))));
  await new Promise((resolve) => setTimeout(resolve, 500));
  let now = await readCpuSeconds(pid);
  const hwm = async () => `peak RSS so far ${(((await readProcMem(pid))?.hwm ?? NaN) / 1e6).toFixed(0)} MB`;
  console.log(`cold, ${clients} client(s): ${coldMs.toFixed(0)} ms, ${((clients * size * 1000) / coldMs).toFixed(0)} MiB/s, ${((now - cpu) / ((clients * size * MiB) / GiB)).toFixed(2)} CPU s/GiB, ${await hwm()}`);
  if (process.env.HIT_PROFILE_WAIT === '1') {
    console.log(`mirror pid ${pid}: press Enter to start the warm GETs`);
    await new Promise((resolve) => process.stdin.once('data', resolve));
  } else console.log(`mirror pid ${pid}`);
  cpu = await readCpuSeconds(pid);
  // CLOCK_MONOTONIC in µs, the clock of a .cpuprofile's timestamps: the warm GETs' window in the profile.
  const from = process.hrtime.bigint() / 1000n;
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = 0; i < gets; i++) await curl(url);
  }));
  const ms = performance.now() - started;
  now = await readCpuSeconds(pid);
  const gib = (clients * gets * size * MiB) / GiB;
  const to = process.hrtime.bigint() / 1000n;
  console.log(`warm: ${clients} client(s) × ${gets} GETs, ${((clients * gets * size * 1000) / ms).toFixed(0)} MiB/s, ${((now - cpu) / gib).toFixed(2)} CPU s/GiB, ${await hwm()}; window ${from}-${to}`);
} finally {
  await mirror.stop();
  await registry.stop();
  await tokens.close();
}
