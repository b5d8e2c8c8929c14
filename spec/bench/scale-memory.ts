/**
 * Where an eviction pass's memory goes, phase by phase, on the store `bench -- scale` builds:
 * `node --expose-gc spec/bench/scale-memory.ts [store-dir]` (generates one when none is given).
 * Prints heap used and RSS after each phase, with a full GC before each reading.
 */
import path from 'node:path';
import { readInventory } from '../../src/eviction/inventory.ts';
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
reading('start');
if (process.env.INVENTORY === '1') {
  const inventory = await readInventory(paths);
  reading(`inventory (${inventory.blobs.count} blobs, ${inventory.links.length} links)`);
}
const logger = createLogger({ level: 'error', formatter: 'json' } as never);
let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
const result = await sweep({ paths, logger, dryRun: process.env.DRY === '1', ttlMs: 168 * 3_600_000, graceMs: 600_000, maxSize: 0, highWatermark: 90, lowWatermark: 80 });
clearInterval(sampler);
console.log(`sweep: ${result.blobs.length} blobs, ${(result.durationMs / 1000).toFixed(2)} s, max event-loop delay ${result.maxEventLoopDelayMs.toFixed(1)} ms, peak rss ${mb(peak)} MB`);
reading('after sweep (result held)');
await work?.cleanup();
