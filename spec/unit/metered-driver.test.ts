/**
 * The metered driver counts every driver's operations alike, by result (ok or the fault), and
 * times them: what /metrics shows as pullmirror_storage_operations_total and
 * pullmirror_storage_operation_seconds. Run over the in-memory driver; the s3 driver's figures
 * are checked against RADOS Gateway in spec/e2e/s3-driver.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { metricsRegistry } from '../../src/metrics/metrics.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import { MeteredDriver } from '../../src/storage/driver/metered-driver.ts';

async function scrape(): Promise<string> {
  return metricsRegistry.metrics();
}

function value(text: string, line: RegExp): number {
  const match = text.split('\n').find((l) => line.test(l));
  return match ? Number(match.split(' ').pop()) : 0;
}

describe('metered driver', () => {
  it('counts operations by driver, operation and result, and times them', async () => {
    const driver = new MeteredDriver(new MemoryDriver());
    assert.equal(driver.kind, 'inmemory');
    await driver.putContent('a/b', 'hello');
    assert.equal((await driver.getContent('a/b'))?.toString(), 'hello');
    assert.equal(await driver.getContent('a/missing'), undefined, 'a missing key is an answer: ok');
    await assert.rejects(driver.getContent('../outside'));
    await assert.rejects(driver.getContent('a/b', 2));
    const opened = await driver.open('a/b');
    assert.ok(opened);
    await opened.send(new Writable({ write: (_chunk, _encoding, callback) => callback() }), { start: 0, end: 4 });
    opened.release();
    const listed: string[] = [];
    for await (const name of driver.children('a')) listed.push(name);
    assert.deepEqual(listed, ['b']);

    const text = await scrape();
    const count = (operation: string, result: string) => value(text, new RegExp(`^pullmirror_storage_operations_total\\{driver="inmemory",operation="${operation}",result="${result}"\\} `));
    assert.equal(count('putContent', 'ok'), 1);
    assert.equal(count('getContent', 'ok'), 2);
    assert.equal(count('getContent', 'invalid-key'), 1);
    assert.equal(count('getContent', 'too-large'), 1);
    assert.equal(count('open', 'ok'), 1);
    assert.equal(count('send', 'ok'), 1);
    assert.equal(count('children', 'ok'), 1);
    assert.equal(value(text, /^pullmirror_storage_operation_seconds_count\{driver="inmemory",operation="getContent"\} /), 4);
    await driver.close();
  });
});
