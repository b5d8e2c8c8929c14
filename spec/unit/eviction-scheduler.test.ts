import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logging/logger.ts';
import { EvictionScheduler } from '../../src/eviction/scheduler.ts';
import type { SweepResult } from '../../src/eviction/sweeper.ts';

const result = (): SweepResult => ({ tags: [], links: [], blobs: [], sizeBefore: 0, sizeAfter: 0, capUnreached: false, pinned: { tags: 0, manifests: 0, items: [] }, maxEventLoopDelayMs: 0, dryRun: false, kept: 0, freed: 0, records: 0, cleaned: 0, durationMs: 0, graceHeld: { tags: 0, links: 0, blobs: 0, bytes: 0 }, graceMs: 0 });

describe('eviction scheduler', () => {
  it('never runs two passes at once: a tick during a pass is skipped', async () => {
    let running = 0;
    let most = 0;
    let passes = 0;
    let finish!: () => void;
    const scheduler = new EvictionScheduler({
      schedule: '* * * * *',
      logger: createLogger({ level: 'error', formatter: 'json', accesslog: { disabled: true, format: 'json' } }),
      pass: async () => {
        running++;
        passes++;
        most = Math.max(most, running);
        await new Promise<void>((resolve) => (finish = resolve));
        running--;
        return result();
      },
    });
    const first = scheduler.runOnce();
    assert.equal(await scheduler.runOnce(), undefined, 'skipped while the first runs');
    assert.equal(await scheduler.runOnce(), undefined);
    finish();
    assert.deepEqual(await first, result());
    assert.deepEqual([passes, most], [1, 1]);
    const second = scheduler.runOnce();
    finish();
    assert.ok(await second, 'a tick after the pass ended runs');
    assert.equal(passes, 2);
  });
});
