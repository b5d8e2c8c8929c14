/**
 * What `gc` and `stats` print, as a user reads it: a count agrees with its noun (`1 tag`, not
 * `1 tags`), and the digits stay plain (`150000 blobs`), as scripts read them with `\d+`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summary } from '../../src/cli/gc.ts';
import { statsReport } from '../../src/cli/stats.ts';
import type { SweepResult } from '../../src/eviction/sweeper.ts';
import type { StoreFigures } from '../../src/storage/store-stats.ts';

const T = Date.UTC(2026, 11, 1, 10, 30);

function result(counts: { tags: number; links: number; blobs: number }, more: Partial<SweepResult> = {}): SweepResult {
  const tag = { repository: 'library/alpine', tag: 'latest', digest: undefined, lastUseMs: 0, reason: 'ttl' as const };
  const link = { repository: 'library/alpine', digest: `sha256:${'a'.repeat(64)}`, lastUseMs: 0, lastAccess: 0, reason: 'ttl' as const, pins: [] };
  const blob = { digest: `sha256:${'b'.repeat(64)}`, size: 1024 };
  return {
    tags: Array(counts.tags).fill(tag),
    links: Array(counts.links).fill(link),
    blobs: Array(counts.blobs).fill(blob),
    sizeBefore: 4096,
    sizeAfter: 0,
    capUnreached: false,
    pinned: { tags: 0, manifests: 0, items: [] },
    dryRun: false,
    kept: 0,
    freed: 4096,
    records: 0,
    cleaned: 0,
    durationMs: 1200,
    graceMs: 600_000,
    maxEventLoopDelayMs: 0,
    ...more,
  };
}

describe('gc: the summary after the items', () => {
  it('says 1 tag, 1 manifest, 1 blob, and 2 of each in the plural', () => {
    assert.match(summary(result({ tags: 1, links: 1, blobs: 1 })), /^1 tag, 1 manifest, 1 blob, 4 KiB freed;/);
    assert.match(summary(result({ tags: 2, links: 0, blobs: 2 }, { dryRun: true })), /^dry run: 2 tags, 0 manifests, 2 blobs, 4 KiB to free;/);
  });

  it('the grace period, storage.eviction.keep and crashed uploads agree with their counts too', () => {
    const text = summary(
      result({ tags: 0, links: 0, blobs: 0 }, {
        cleaned: 1,
        graceHeld: { tags: 1, links: 1, blobs: 1, bytes: 2048, from: T, until: T },
        pinned: { tags: 1, manifests: 1, items: [] },
      }),
    );
    assert.match(text, /^1 incomplete upload left by crashed writers removed$/m);
    assert.match(text, /^grace period \(storage\.eviction\.grace 10m\) holds back 1 tag, 1 manifest, 1 blob \(2 KiB\): until 2026-12-01T10:30:00Z$/m);
    assert.match(text, /^storage\.eviction\.keep holds 1 tag and 1 manifest$/m);
  });

  it('prints large counts with plain digits', () => {
    assert.match(summary(result({ tags: 10_000, links: 1, blobs: 150_000 })), /^10000 tags, 1 manifest, 150000 blobs,/);
  });
});

describe('stats: the figures of a store', () => {
  const figures: StoreFigures = {
    blobs: 1,
    bytes: 100,
    manifests: 1,
    manifestBytes: 100,
    repositories: 2,
    tags: 3,
    registries: { '': { repositories: 1, tags: 1 }, 'ghcr.io': { repositories: 1, tags: 2 } },
    tempFiles: 0,
    tempBytes: 0,
    computedAt: T,
    complete: true,
  };

  it("each registry's line says 1 repository, 1 tag, and 2 tags", () => {
    const text = statsReport('/var/lib/pullmirror', figures, 'docker.io');
    assert.match(text, /^ {2}docker\.io \(default\)\s+1 repository, 1 tag$/m);
    assert.match(text, /^ {2}ghcr\.io\s+1 repository, 2 tags$/m);
    assert.match(text, /^blobs\s+1, 100 B \(100 bytes\)$/m);
  });
});
