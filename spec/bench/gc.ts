/**
 * `npm run bench -- gc`: one eviction pass of `pullmirror gc` (the bundle, as `npm start` runs it) over a generated store of
 * 100 000 cached blobs: wall seconds and peak RSS of the gc process, for a dry run (plan
 * only), the real pass, and a second pass with nothing left to do; plus the mirror's start-up
 * time on that store next to an empty one (it must not grow with the number of blobs).
 *
 * The store is written directly in the on-disk layout (src/storage/paths.ts): blobs are
 * sparse files of realistic sizes (the sweep never reads layer bytes, only stats them), image
 * manifests are real JSON. Half of the images were last used 200 h ago (past the 168 h TTL);
 * layers are drawn from a shared pool, so many are referenced by both a stale and a fresh
 * image; the remaining blobs are referenced by nothing.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startCommand, startMirror } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';
import { blobPath } from '../support/store.ts';
import { peakRssWatch } from './measure.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BLOBS = 100_000;
const IMAGES = 4_000;
const LAYERS_PER_IMAGE = 8;
const LAYER_POOL = 40_000;
const HOUR = 3_600_000;
const MiB = 1024 * 1024;

type Log = (message: string) => void;

interface Run {
  seconds: number;
  peakRssMiB: number;
  summary: string;
}

/** A deterministic pseudo-random sequence, so every run builds the same store. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const digestOf = (label: string | Buffer) => `sha256:${createHash('sha256').update(label).digest('hex')}`;

/** The generated store's shape: gc's default, and the fleet-sized one of `bench -- scale`. */
export interface StoreShape {
  blobs: number;
  /** Images, one tag each, spread over `repositories` repositories. */
  images: number;
  repositories: number;
  layerPool: number;
  /** Write each image's `_layers` links too, as a serving mirror does (one small file per layer). */
  layerLinks?: boolean;
  /**
   * The largest size of a layer, config or unreferenced blob. Unset: realistic sizes (up to
   * 64 MiB, sparse files on a filesystem). A bucket has no sparse objects (the RADOS Gateway's
   * memstore keeps every byte in RAM), so the S3 store of `bench -- scale` caps them: a pass
   * reads only their sizes, never their bytes.
   */
  maxBlobBytes?: number;
}

/** An image generateStore wrote whose tag and manifest link were used recently (odd images). */
export interface FreshImage {
  repository: string;
  tag: string;
  manifest: string;
}

export const GC_SHAPE: StoreShape = { blobs: BLOBS, images: IMAGES, repositories: 1000, layerPool: LAYER_POOL };

/** Writes the store; returns how many blobs are referenced by fresh and by stale images. */
export function generateStore(root: string, log: Log, shape: StoreShape = GC_SHAPE): { referenced: number; orphans: number; staleImages: number; fresh: FreshImage[] } {
  const { blobs: BLOBS, images: IMAGES, layerPool: LAYER_POOL } = shape;
  const cap = (size: number) => Math.min(size, shape.maxBlobBytes ?? Infinity);
  const fresh: FreshImage[] = [];
  const random = prng(42);
  const oldTime = (Date.now() - 200 * HOUR) / 1000;
  const madeDirs = new Set<string>();
  const file = (target: string, content: Buffer | number, mtime: number) => {
    const dir = path.dirname(target);
    if (!madeDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      madeDirs.add(dir);
    }
    if (typeof content === 'number') {
      const fd = openSync(target, 'w');
      ftruncateSync(fd, content);
      closeSync(fd);
    } else {
      writeFileSync(target, content);
    }
    utimesSync(target, mtime, mtime);
  };
  const referenced = new Set<string>();
  const layers = Array.from({ length: LAYER_POOL }, (_, i) => ({ digest: digestOf(`layer-${i}`), size: cap(Math.floor(1024 + random() * 64 * MiB)) }));
  const used = new Set<number>();
  let staleImages = 0;
  for (let i = 0; i < IMAGES; i++) {
    const config = { digest: digestOf(`config-${i}`), size: cap(1500 + Math.floor(random() * 4000)) };
    const picks: number[] = [];
    for (let l = 0; l < LAYERS_PER_IMAGE; l++) picks.push(Math.floor(random() * LAYER_POOL));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.size, digest: config.digest },
        layers: picks.map((p) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layers[p].size, digest: layers[p].digest })),
      }),
    );
    const manifestDigest = digestOf(manifest);
    file(blobPath(root, manifestDigest), manifest, oldTime);
    file(blobPath(root, config.digest), config.size, oldTime);
    for (const p of picks) {
      if (!used.has(p)) file(blobPath(root, layers[p].digest), layers[p].size, oldTime);
      used.add(p);
    }
    for (const d of [manifestDigest, config.digest, ...picks.map((p) => layers[p].digest)]) referenced.add(d);
    const stale = i % 2 === 0;
    if (stale) staleImages++;
    else fresh.push({ repository: `library/app${i % shape.repositories}`, tag: `v${i}`, manifest: manifestDigest });
    // Fresh images were used an hour ago: past the grace period, well within the TTL.
    const usedAt = stale ? oldTime : (Date.now() - HOUR) / 1000;
    const repo = path.join(root, 'repositories', 'library', `app${i % shape.repositories}`);
    file(path.join(repo, '_manifests', 'sha256', manifestDigest.slice(7)), Buffer.from(JSON.stringify({ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', size: manifest.length })), usedAt);
    file(path.join(repo, '_tags', `v${i}`), Buffer.from(manifestDigest), usedAt);
    if (shape.layerLinks) {
      for (const d of [config.digest, ...picks.map((p) => layers[p].digest)]) file(path.join(repo, '_layers', 'sha256', d.slice(7)), Buffer.from(d), usedAt);
    }
    if (i % 2000 === 1999) log(`  ${i + 1} images written`);
  }
  let orphans = 0;
  for (let i = 0; referenced.size + orphans < BLOBS; i++) {
    file(blobPath(root, digestOf(`orphan-${i}`)), cap(Math.floor(random() * 8 * MiB)), oldTime);
    orphans++;
  }
  return { referenced: referenced.size, orphans, staleImages, fresh };
}

/** Runs `pullmirror gc ARGS config` once: wall time and peak RSS (GNU time when present, else sampled). */
function runGc(configFile: string, args: string[], outFile: string): Promise<Run> {
  const gnuTime = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
  // The shipped form, as `npm start` runs it (the bundle and its Node flags).
  const shipped = startCommand();
  const command = [...(gnuTime ? [gnuTime, '-f', 'PEAKRSS %M'] : []), process.execPath, ...shipped.args];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command[0], [...command.slice(1), 'gc', ...args, configFile], { env: { ...cleanEnv(['REGISTRY_']), ...shipped.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const watch = peakRssWatch(child.pid);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('close', (code) => {
      const sampled = watch.stop();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const text = Buffer.concat(out).toString();
      writeFileSync(outFile, text);
      if (code !== 0) return reject(new Error(`pullmirror gc ${args.join(' ')} exited ${code}: ${err}`));
      const peak = /PEAKRSS (\d+)/.exec(err);
      resolve({ seconds, peakRssMiB: (peak ? Number(peak[1]) : sampled) / 1024, summary: text.split('\n').find((line) => /^(dry run: )?\d+ tags?, /.test(line)) ?? '' });
    });
  });
}

async function startupSeconds(root: string): Promise<number> {
  const started = performance.now();
  const mirror = await startMirror({ remoteurl: 'http://127.0.0.1:9', root, bundle: true, config: { log: { level: 'info' } } });
  const seconds = (performance.now() - started) / 1000;
  await mirror.stop();
  return seconds;
}

export async function benchGc(log: Log): Promise<number> {
  const work = tempDir('pullmirror-bench-gc');
  try {
    const root = path.join(work.path, 'store');
    log(`gc: generating ${BLOBS} blobs, ${IMAGES} images (${LAYERS_PER_IMAGE} layers each from a pool of ${LAYER_POOL}) in ${root}`);
    const generating = performance.now();
    const { fresh: _fresh, ...shape } = generateStore(root, log);
    log(`gc: store generated in ${((performance.now() - generating) / 1000).toFixed(1)} s: ${shape.referenced} referenced blobs, ${shape.orphans} unreferenced, ${shape.staleImages} of ${IMAGES} images past the TTL`);
    const configFile = path.join(work.path, 'config.yml');
    writeFileSync(configFile, stringify({ version: '0.1', log: { level: 'error', formatter: 'json' }, storage: { filesystem: { rootdirectory: root } } }));

    // Best of three each: start-up is short and the machine may be busy.
    let emptyStart = Infinity;
    let fullStart = Infinity;
    for (let i = 0; i < 3; i++) {
      emptyStart = Math.min(emptyStart, await startupSeconds(path.join(work.path, 'empty')));
      fullStart = Math.min(fullStart, await startupSeconds(root));
    }
    log('gc: dry run');
    const dry = await runGc(configFile, ['--dry-run'], path.join(work.path, 'dry-run.txt'));
    log('gc: real pass');
    const real = await runGc(configFile, [], path.join(work.path, 'pass-1.txt'));
    log('gc: second pass (nothing due)');
    const again = await runGc(configFile, [], path.join(work.path, 'pass-2.txt'));

    const rows = [
      ['gc --dry-run (plan only)', dry],
      ['gc (one pass, deleting)', real],
      ['gc again (nothing due)', again],
    ] as const;
    const lines = [
      '',
      `pullmirror gc over ${BLOBS} cached blobs (${IMAGES} images, ${shape.staleImages} past the TTL, ${shape.orphans} unreferenced blobs) — ${new Date().toISOString()}`,
      '',
      '| pass | wall s | peak RSS MiB | summary |',
      '| --- | ---: | ---: | --- |',
      ...rows.map(([name, run]) => `| ${name} | ${run.seconds.toFixed(2)} | ${run.peakRssMiB.toFixed(1)} | ${run.summary.replace(/\|/g, '/')} |`),
      '',
      `mirror start-up (process start to "listening", best of 3): empty store ${emptyStart.toFixed(2)} s, this store ${fullStart.toFixed(2)} s`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
    const results = path.join(HERE, 'results');
    mkdirSync(results, { recursive: true });
    const file = path.join(results, `gc-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), blobs: BLOBS, images: IMAGES, shape, dryRun: dry, pass: real, secondPass: again, startup: { emptyStore: emptyStart, thisStore: fullStart } }, null, 2)}\n`);
    process.stdout.write(`Results: ${file}\n`);
    return 0;
  } finally {
    if (process.env.BENCH_KEEP === '1') log(`gc: BENCH_KEEP=1: store kept in ${work.path}`);
    else await work.cleanup();
  }
}
