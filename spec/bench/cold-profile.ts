/**
 * One cold GET of a large blob through pullmirror, alone, for profiling where its wall time
 * goes: `node spec/bench/cold-profile.ts [MiB] [runs]`, with PULLMIRROR_NODE_OPTIONS (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof --trace-gc`) passed to the mirror as its Node flags. Prints wall ms and
 * MiB/s per run (each run a new blob, so each is cold), the mirror's CPU seconds per GiB, and,
 * with --trace-gc, how many scavenges and mark-compacts the mirror logged. The client is curl,
 * or with COLD_PROFILE_CLIENT=node the bench's own (node:http in this process, body hashed, as
 * `npm run bench -- hit` measures). With COLD_PROFILE_DISTRIBUTION=1, each run's GET is made
 * through distribution (proxy mode) too, on a blob of its own, for the same figures side by side.
 * CPU is counted per process: the server, the upstream registry and the client (this process).
 * Upstream: the e2e world (token server + docker-registry), nothing in between.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PUSHER, MIRROR_ACCOUNT } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { startDistributionProxy, startUpstreamRegistry, type RegistryServer } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';
import { get } from './hit.ts';
import { readCpuSeconds } from './measure.ts';

const size = Number(process.argv[2] ?? 256);
const runs = Number(process.argv[3] ?? 3);
const nodeClient = process.env.COLD_PROFILE_CLIENT === 'node';
const withDistribution = process.env.COLD_PROFILE_DISTRIBUTION === '1';

function curl(url: string, headers: string[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('curl', ['-sf', '-o', '/dev/null', ...headers.flatMap((h) => ['-H', h]), url], { stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`curl exit ${code}`))));
  });
}

/** CPU seconds (utime + stime) of a process's threads, summed by thread name (`/proc/PID/task/TID/stat`). */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return byName;
}

/**
 * Issue 21 item 3: bytes of fills sent to clients from memory (as they arrived) and read back
 * from the file, from the mirror's metrics.
 */
async function fillSent(base: string): Promise<{ memory: number; file: number }> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const sent = (from: string) => Number(new RegExp(`pullmirror_fill_sent_bytes_total\\{from="${from}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
  return { memory: sent('memory'), file: sent('file') };
}

/** Minor page faults of a process so far (`/proc/PID/stat` minflt): fresh memory touched. */
function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

interface Server {
  name: string;
  url: string;
  pid: number;
}

/** One cold GET of a new blob: wall time, and CPU seconds per GiB of the server, the upstream and this process (the client). */
async function coldGet(server: Server, registry: RegistryServer): Promise<void> {
  const blob = await pushRandomBlob(registry.url, PUSHER, 'library/prof', { sizeMiB: size, label: `prof-${Date.now()}-${server.name}` });
  await sleep(200);
  const url = `${server.url}/v2/library/prof/blobs/${blob.digest}`;
  const sentBefore = server.name === 'pullmirror' ? await fillSent(server.url) : undefined;
  const threadsBefore = threadCpu(server.pid);
  const faultsBefore = minorFaults(server.pid);
  const before = { server: await readCpuSeconds(server.pid), upstream: await readCpuSeconds(registry.pid), client: process.cpuUsage() };
  // CLOCK_MONOTONIC in µs, the clock of a .cpuprofile's timestamps: the GET's window in the profile.
  const from = process.hrtime.bigint() / 1000n;
  let ms: number;
  if (nodeClient) {
    const got = await get(url, { hash: true });
    if (got.status !== 200 || got.sha256 !== blob.digest) throw new Error(`cold GET: HTTP ${got.status} ${got.error ?? ''} (${got.bytes} bytes, ${got.sha256})`);
    ms = got.ms;
  } else ms = await curl(url);
  const to = process.hrtime.bigint() / 1000n;
  const client = process.cpuUsage(before.client);
  const perGiB = (seconds: number) => (seconds / (size / 1024)).toFixed(2);
  const cpu = {
    server: (await readCpuSeconds(server.pid)) - before.server,
    upstream: (await readCpuSeconds(registry.pid)) - before.upstream,
    client: (client.user + client.system) / 1e6,
  };
  console.log(
    `${server.name} cold ${size} MiB: ${ms.toFixed(0)} ms, ${((size * 1000) / ms).toFixed(1)} MiB/s; CPU s/GiB server ${perGiB(cpu.server)}, upstream ${perGiB(cpu.upstream)}, ` +
      `client ${perGiB(cpu.client)}${nodeClient ? '' : ' (curl not counted)'}; window ${from}-${to}`,
  );
  const threads = [...threadCpu(server.pid)].map(([name, seconds]) => [name, seconds - (threadsBefore.get(name) ?? 0)] as const).filter(([, seconds]) => seconds > 0);
  console.log(`  ${server.name} threads, CPU s/GiB: ${threads.map(([name, seconds]) => `${name} ${perGiB(seconds)}`).join(', ')}; minor page faults ${minorFaults(server.pid) - faultsBefore}`);
  if (sentBefore) {
    const sent = await fillSent(server.url);
    console.log(`  sent ${((sent.memory - sentBefore.memory) / 2 ** 20).toFixed(0)} MiB from memory, ${((sent.file - sentBefore.file) / 2 ** 20).toFixed(0)} MiB read back from the file`);
  }
}

const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
const registry = await startUpstreamRegistry({ tokenServer: tokens });
const nodeArgs = (process.env.PULLMIRROR_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
const mirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true, nodeArgs });
const distribution = withDistribution ? await startDistributionProxy({ remoteurl: registry.url, ...MIRROR_ACCOUNT }) : undefined;
try {
  for (let run = 0; run < runs; run++) {
    await coldGet({ name: 'pullmirror', url: mirror.url, pid: mirror.process.pid }, registry);
    if (distribution) await coldGet({ name: 'distribution', url: distribution.url, pid: distribution.pid }, registry);
  }
  const gcLines = readFileSync(mirror.process.logFile, 'utf8').split('\n');
  const count = (what: RegExp) => gcLines.filter((line) => what.test(line)).length;
  if (count(/Scavenge|Mark-Compact/) > 0) {
    console.log(`mirror --trace-gc: ${count(/Scavenge/)} scavenges, ${count(/Mark-Compact/)} mark-compacts; the mark-compacts:`);
    for (const line of gcLines.filter((l) => /Mark-Compact/.test(l))) console.log(`  ${line.replace(/^\[[^\]]*\]\s*/, '')}`);
  }
} finally {
  await distribution?.stop();
  await mirror.stop();
  await registry.stop();
  await tokens.close();
}
