/**
 * The one byte formatter, duration formatter and plural of the status page and the CLI
 * (src/util): IEC units, durations as people write them, a noun that agrees with its count.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatBytes } from '../../src/util/format-bytes.ts';
import { formatDuration } from '../../src/util/format-duration.ts';
import { plural } from '../../src/util/plural.ts';

describe('formatBytes: binary sizes with binary names', () => {
  it('writes 272,295,674 bytes as 259.7 MiB (not "259.7 MB", which is 259,700,000 bytes)', () => {
    assert.equal(formatBytes(272_295_674), '259.7 MiB');
  });

  it('steps at 1024, names each unit KiB, MiB, GiB, TiB, and drops a trailing .0', () => {
    assert.deepEqual(
      [0, 1023, 1024, 1536, 1024 ** 2, 20 * 1024 ** 3, 1.5 * 1024 ** 4].map((n) => formatBytes(n)),
      ['0 B', '1023 B', '1 KiB', '1.5 KiB', '1 MiB', '20 GiB', '1.5 TiB'],
    );
    assert.equal(formatBytes(1_000_000), '976.6 KiB');
  });
});

describe('formatDuration: the largest units, at most two', () => {
  it('writes a TTL of 10080 minutes as 7d, and other durations as people write them', () => {
    assert.equal(formatDuration(10_080 * 60_000), '7d');
    assert.deepEqual(
      [250, 1_200, 45_000, 90 * 60_000, 36 * 3_600_000, 3_725_000, 5_000].map(formatDuration),
      ['250ms', '1.2s', '45s', '1h 30m', '1d 12h', '1h 2m', '5s'],
    );
  });
});

describe('plural: a count and a noun that agrees', () => {
  it('says 1 repository, 2 repositories, 0 tags', () => {
    assert.deepEqual([plural(1, 'repository', 'repositories'), plural(2, 'repository', 'repositories'), plural(0, 'tag'), plural(1, 'tag')], ['1 repository', '2 repositories', '0 tags', '1 tag']);
  });
});
