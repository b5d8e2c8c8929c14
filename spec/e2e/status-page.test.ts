import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { findBinary, requireBinary, tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

/** Debian's chromium; playwright-core drives it (no browser download). */
const CHROMIUM = findBinary('chromium') ?? '/usr/bin/chromium';

describe('status page: a real browser shows the numbers of a pull', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let image: PushedImage;
  let browser: Browser | undefined;
  const work = tempDir('pullmirror-status');

  before(async () => {
    world = await startWorld();
    image = await pushImage(world.registry.url, PUSHER, {
      name: 'team/web',
      tag: '1.0',
      layers: [randomLayer('status-0', 120 * 1024), randomLayer('status-1', 30 * 1024)],
      format: 'docker',
    });
    mirror = await world.startMirror();
  });

  after(async () => {
    await browser?.close();
    await world?.close();
    await work.cleanup();
  });

  it('shows store figures, hit ratio, bytes, the most pulled repository, the recent pulls and a traffic chart', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const dest = (n: number) => `dir:${path.join(work.path, `pull-${n}`)}`;
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/web:1.0`, dest(1));
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/web:1.0`, dest(2));
    const pulled = await readDirImage(path.join(work.path, 'pull-1'));
    assert.equal(pulled.manifest.digest, image.manifestDigest);
    const blobBytes = [...pulled.blobs.values()].reduce((a, b) => a + b, 0);
    const imageBytes = blobBytes + pulled.manifest.bytes.length;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    await page.goto(`${mirror.url}/`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    // The store's figures are recomputed lazily; the page refreshes every 5 s until they show the pull.
    await page.waitForFunction((want) => Number(document.getElementById('store-blobs')!.dataset.value) >= want, pulled.blobs.size + 1, { timeout: 20_000 });

    const value = (id: string) => page.locator(`#${id}`).getAttribute('data-value');
    const text = (id: string) => page.locator(`#${id}`).innerText();
    // First pull: every byte came through upstream; second pull: every byte from the cache.
    assert.equal(Number(await value('bytes-upstream')), imageBytes, 'bytes served through upstream = the image');
    assert.equal(Number(await value('bytes-saved')), imageBytes, 'bytes saved = the image, served again from the cache');
    assert.equal(await text('bytes-saved'), formatBytes(imageBytes));
    assert.equal(await text('pulls'), '2');
    assert.equal(Number(await value('hits')), Number(await value('misses')), 'as many hits as misses');
    assert.equal(await text('hit-ratio'), '50.0 %');
    assert.ok(Number(await value('store-size')) >= imageBytes, 'the store holds the image');
    assert.equal(await text('store-repositories'), '1');

    const top = await page.locator('#top tr').allInnerTexts();
    assert.deepEqual(top.map((row) => row.split('\t').map((cell) => cell.trim())), [['team/web', '2']]);
    const recent = await page.locator('#recent tr').allInnerTexts();
    assert.equal(recent.length, 2);
    for (const row of recent) assert.match(row, /team\/web:1\.0/);
    assert.match(recent[0], /\bhit\b/, 'the latest pull was served from the cache');
    assert.match(recent[1], /\bmiss\b/, 'the first pull went upstream');
    assert.equal(await page.locator('#recent code').first().getAttribute('title'), image.manifestDigest);

    assert.ok((await page.locator('#chart rect').count()) >= 1, 'the chart draws this minute\'s traffic');
    assert.deepEqual(errors, [], 'no script errors');
  });
});

/** The page's own formatting of bytes, to compare its text. */
function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
