/**
 * The temporary area's sweep removes what dead instances left, and nothing else of the
 * directory it lives in: on S3 that directory is storage.s3.spooldirectory, which also holds
 * the access clock's journal (`_access-clock/`), untouched for long stretches while the
 * journal is only appended to.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import winston from 'winston';
import type { Logger } from '../../src/logging/logger.ts';
import { TempArea } from '../../src/storage/temp-area.ts';
import { tempDir } from '../support/processes.ts';

const logger: Logger = winston.createLogger({ silent: true });

describe('TempArea.sweep', () => {
  const work = tempDir('pullmirror-temp-area');
  after(() => work.cleanup());

  it('removes a dead instance\'s directory but keeps the access clock\'s journal, however old its directory', async () => {
    const old = new Date(Date.now() - 3600_000);
    const journal = path.join(work.path, '_access-clock');
    mkdirSync(journal);
    writeFileSync(path.join(journal, 'journal'), '# pullmirror access clock 1\n');
    const dead = path.join(work.path, 'otherhost-4242-0123abcd');
    mkdirSync(dead);
    writeFileSync(path.join(dead, 'partial'), 'x');
    for (const dir of [journal, dead]) utimesSync(dir, old, old);

    const area = new TempArea(work.path, logger);
    assert.equal(await area.sweep(), 1);
    assert.ok(!existsSync(dead), 'the dead instance\'s spool went');
    assert.ok(existsSync(path.join(journal, 'journal')), 'the journal stays');
  });
});
