/**
 * One cold GET of a large blob through pullmirror, alone, for profiling where its wall time
 * goes: `node spec/bench/cold-profile.ts [MiB] [runs]`, with PULLMIRROR_NODE_OPTIONS (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof`) passed to the mirror. Prints wall ms and MiB/s per run
 * (each run a new blob, so each is cold) and the same GET straight from the upstream.
 * Upstream: the e2e world (token server + docker-registry), nothing in between.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { PUSHER, MIRROR_ACCOUNT } from '../e2e/fixtures.ts';
import { pushRandomBlob } from '../support/images.ts';
import { startMirror } from '../support/mirror.ts';
import { startUpstreamRegistry } from '../support/registry.ts';
import { startTokenServer } from '../support/token-server.ts';

const size = Number(process.argv[2] ?? 256);
const runs = Number(process.argv[3] ?? 3);

function curl(url: string, headers: string[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('curl', ['-sf', '-o', '/dev/null', ...headers.flatMap((h) => ['-H', h]), url], { stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`curl exit ${code}`))));
  });
}

const tokens = await startTokenServer({ users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password } });
const registry = await startUpstreamRegistry({ tokenServer: tokens });
const extra = process.env.PULLMIRROR_NODE_OPTIONS ? { NODE_OPTIONS: process.env.PULLMIRROR_NODE_OPTIONS } : {};
const mirror = await startMirror({ remoteurl: registry.url, ...MIRROR_ACCOUNT, bundle: true, env: extra });
try {
  for (let run = 0; run < runs; run++) {
    const blob = await pushRandomBlob(registry.url, PUSHER, 'library/prof', { sizeMiB: size, label: `prof-${Date.now()}-${run}` });
    await sleep(200);
    const ms = await curl(`${mirror.url}/v2/library/prof/blobs/${blob.digest}`);
    console.log(`cold ${size} MiB: ${ms.toFixed(0)} ms, ${((size * 1000) / ms).toFixed(1)} MiB/s`);
  }
} finally {
  await mirror.stop();
  await registry.stop();
  await tokens.close();
}
