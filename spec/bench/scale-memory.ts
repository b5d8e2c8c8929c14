/**
 * Where an eviction pass's memory goes, phase by phase, on the store `bench -- scale` builds:
 * `node --expose-gc spec/bench/scale-memory.ts [store-dir]` (generates one when none is given).
 * Prints heap and RSS at the start (full GC first), their peaks while the pass plans and while
 * it deletes, and after it. DRY=1: a dry run; GRACE=1: with the grace report (as gc does);
 * SHARE=1: resting between slices, as a pass inside a serving mirror does.
 */
import path from 'node:path';
import { readInventory } from '../../src/eviction/inventory.ts';
import { LocalAccessClock } from '../../src/eviction/local-access-clock.ts';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { sweep } from '../../src/eviction/sweeper.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { tempDir } from '../support/processes.ts';
import { generateStore } from './gc.ts';
import { SCALE_SHAPE } from './scale.ts';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
const reading = (label: string) => {
  gc();
  const m = process.memoryUsage();
  console.log(`${label.padEnd(28)} heap ${mb(m.heapUsed).padStart(7)} MB  rss ${mb(m.rss).padStart(7)} MB  external ${mb(m.external)} MB`);
};

const work = process.argv[2] ? undefined : tempDir('pullmirror-scale-memory');
const root = process.argv[2] ?? path.join(work!.path, 'store');
if (work) generateStore(root, () => {}, SCALE_SHAPE);
const paths = new StorePaths(root);
const logger = createLogger({ level: 'error', formatter: 'json' } as never);
// The store's local access clock (its journal, if any), as a serving mirror without Redis reads it.
const store = { driver: new FilesystemDriver({ root, tempDir: paths.tmpDir() }), paths, clock: new LocalAccessClock({ dir: paths.accessClockDir(), logger, compacts: false }) };
reading('start');
if (process.env.INVENTORY === '1') {
  const inventory = await readInventory(store);
  reading(`inventory (${inventory.blobs.count} blobs, ${inventory.links.length} links)`);
}
// Peak RSS and heap while the pass reads and plans, and while it deletes (from its first removal on).
const peaks = { planning: { rss: 0, heap: 0 }, deleting: { rss: 0, heap: 0 } };
let phase: keyof typeof peaks = 'planning';
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peaks[phase].rss = Math.max(peaks[phase].rss, m.rss);
  peaks[phase].heap = Math.max(peaks[phase].heap, m.heapUsed);
}, 5);
const result = await sweep({
  store,
  logger,
  dryRun: process.env.DRY === '1',
  graceReport: process.env.GRACE === '1',
  sharesLoop: process.env.SHARE === '1',
  onItem: () => (phase = 'deleting'),
  ttlMs: 168 * 3_600_000,
  graceMs: 600_000,
  maxSize: 0,
  highWatermark: 90,
  lowWatermark: 80,
});
clearInterval(sampler);
console.log(`sweep: ${result.blobs.length} blobs, ${(result.durationMs / 1000).toFixed(2)} s, max event-loop delay ${result.maxEventLoopDelayMs.toFixed(1)} ms`);
for (const [name, peak] of Object.entries(peaks)) console.log(`  ${name.padEnd(10)} peak heap ${mb(peak.heap)} MB, peak rss ${mb(peak.rss)} MB`);
reading('after sweep (result held)');
await store.clock.close();
await work?.cleanup();
