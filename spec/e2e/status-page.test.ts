/**
 * The overview in a real browser (Debian's chromium through playwright-core): two pulls of one
 * image through the mirror, then what a person reads on the page — the figures with their
 * units (IEC: KiB, MiB, 1024-based) and their nouns ("1 repository"), the size-cap card's text
 * inside its card, the traffic chart with its scales, and one date format — under a CSP that
 * allows no inline script or style.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

/** Debian's chromium; playwright-core drives it (no browser download). */
const SCREENS = process.env.PULLMIRROR_SCREENSHOTS || path.join(tmpdir(), `pullmirror-screens-${process.pid}`);

async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENS, `${name}.png`), fullPage: true });
}

/** "151.7 KiB" → bytes, checking the unit is an IEC one. */
function bytesOf(text: string): number {
  const match = /^(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB)$/.exec(text);
  assert.ok(match, `"${text}" is a size in IEC units`);
  return Number(match[1]) * 1024 ** ['B', 'KiB', 'MiB', 'GiB', 'TiB'].indexOf(match[2]);
}

/** Elements of the overview's cards whose text runs out of their box (wider than it, or past the card's edge). */
function overflowingCards(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    for (const card of document.querySelectorAll<HTMLElement>('.card')) {
      const edge = card.getBoundingClientRect();
      for (const node of [card, ...card.querySelectorAll<HTMLElement>('*')]) {
        const box = node.getBoundingClientRect();
        if (node.scrollWidth > node.clientWidth || box.right > edge.right + 0.5) out.push(`${card.querySelector('.label')?.textContent}: ${node.textContent}`);
      }
    }
    return out;
  });
}

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
    // No size cap: the cap card then names storage.eviction.maxsize, its longest word (the
    // browse suite has a cap).
    mirror = await world.startMirror();
  });

  after(async () => {
    await browser?.close();
    await world?.close();
    await work.cleanup();
  });

  it('serves the page under a CSP without inline script or style, and its script runs', async () => {
    const page = await fetch(`${mirror.url}/`);
    const csp = page.headers.get('content-security-policy') ?? '';
    const html = await page.text();
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /style-src 'self'/);
    assert.doesNotMatch(html, /<script>|<style>|style="/, 'no inline script, style or style attribute');
    const script = await fetch(`${mirror.url}/status-page.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(await script.text(), /api\/status/);
    const styles = await fetch(`${mirror.url}/status-page.css`);
    assert.equal(styles.status, 200);
    assert.match(styles.headers.get('content-type') ?? '', /^text\/css/);
    await styles.arrayBuffer();
  });

  it('shows store figures, hit ratio, bytes, the most pulled repository, the recent pulls and a traffic chart, as a person reads them', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const dest = (n: number) => `dir:${path.join(work.path, `pull-${n}`)}`;
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/web:1.0`, dest(1));
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/web:1.0`, dest(2));
    const pulled = await readDirImage(path.join(work.path, 'pull-1'));
    assert.equal(pulled.manifest.digest, image.manifestDigest);
    const blobBytes = [...pulled.blobs.values()].reduce((a, b) => a + b, 0);
    const imageBytes = blobBytes + pulled.manifest.bytes.length;

    browser = await launchChromium();
    // A laptop's width: the cards are at their narrowest.
    const page = await browser.newPage({ viewport: { width: 1024, height: 900 } });
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
    // The text in binary units: 1 KiB = 1024 bytes, to the 0.1 KiB shown.
    for (const id of ['bytes-saved', 'bytes-upstream']) {
      const shown = await text(id);
      assert.match(shown, / KiB$/, `${id}: ~150 KiB reads in KiB`);
      assert.ok(Math.abs(bytesOf(shown) - imageBytes) <= 0.05 * 1024, `${id}: "${shown}" is ${imageBytes} bytes`);
    }
    assert.ok(bytesOf(await text('store-size')) > 0);
    assert.equal(await text('pulls'), '2');
    assert.equal(Number(await value('hits')), Number(await value('misses')), 'as many hits as misses');
    assert.equal(await text('hit-ratio'), '50.0 %');
    assert.ok(Number(await value('store-size')) >= imageBytes, 'the store holds the image');
    // Counts with their nouns, singular for one.
    assert.equal(await text('store-repositories'), '1 repository');
    const blobs = Number(await value('store-blobs'));
    assert.equal(await text('store-blobs'), `${blobs} blobs`);
    const hits = Number(await value('hits'));
    assert.equal(await text('hits'), `${hits} ${hits === 1 ? 'hit' : 'hits'}`);
    assert.equal(await text('fills'), '0 downloads');
    // The size cap's card: binary units, and its text within the card.
    assert.equal(await text('cap-used'), 'no cap');
    assert.match(await text('cap-detail'), /^\d+(\.\d)? KiB stored\nstorage\.eviction\.maxsize is 0$/);
    assert.match(await text('disk-detail'), /^of \d+(\.\d)? [KMGT]iB\nblobs pass through below 256 MiB$/);
    assert.deepEqual(await overflowingCards(page), [], 'every card\'s text stays inside its card');

    const top = await page.locator('#top tr').allInnerTexts();
    assert.deepEqual(top.map((row) => row.split('\t').map((cell) => cell.trim())), [['team/web', '2']]);
    const recent = await page.locator('#recent tr').allInnerTexts();
    assert.equal(recent.length, 2);
    for (const row of recent) assert.match(row, /team\/web:1\.0/);
    assert.match(recent[0], /\bhit\b/, 'the latest pull was served from the cache');
    assert.match(recent[1], /\bmiss\b/, 'the first pull went upstream');
    assert.equal(await page.locator('#recent code').first().getAttribute('title'), image.manifestDigest);
    // One date format: times as HH:MM:SS, their dates (tooltips) as YYYY-MM-DD HH:MM:SS.
    const firstTime = page.locator('#recent tr td').first();
    assert.match(await firstTime.innerText(), /^\d\d:\d\d:\d\d$/);
    assert.match((await firstTime.getAttribute('title')) ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.match(await text('updated'), /^\d\d:\d\d:\d\d$/);
    assert.ok((await firstTime.getAttribute('title'))!.endsWith(await firstTime.innerText()), 'the tooltip is the same format, with the date');

    // The chart: this minute's bars, a byte scale on the left that reaches above them, minutes below.
    assert.ok((await page.locator('#chart rect').count()) >= 1, 'the chart draws this minute\'s traffic');
    const scale = await page.locator('#chart text.axis.y').allTextContents();
    assert.ok(scale.length >= 2, `a byte scale: ${scale.join(', ')}`);
    assert.equal(scale[0], '0 B');
    const scaleBytes = scale.map(bytesOf);
    assert.deepEqual([...scaleBytes].sort((a, b) => a - b), scaleBytes, 'the scale rises');
    assert.ok(scaleBytes.at(-1)! >= 2 * imageBytes, `the top of the scale (${scale.at(-1)}) is above this minute's ${2 * imageBytes} bytes`);
    const minutes = await page.locator('#chart text.axis.x').allTextContents();
    assert.ok(minutes.length >= 3, `minutes below the chart: ${minutes.join(', ')}`);
    for (const minute of minutes) assert.match(minute, /^\d\d:\d\d$/);
    assert.equal(minutes.at(-1), (await text('updated')).slice(0, 5), 'the last minute shown is now');
    await shoot(page, 'status-overview');

    // The repository's tags: the TTL as people write it (proxy.ttl's default, 168h, is 7d), nouns that agree.
    const namespace = new URL(world.proxy.url).host;
    await page.evaluate((h) => (location.hash = h), `#/browse/${namespace}/team/web`);
    await page.waitForSelector('#view-browse[data-ready^="tags:"]', { timeout: 15_000 });
    assert.equal(await text('browse-total'), '1 tag · TTL 7d');
    // The manifest: its last pull as a distance and as a date in the page's one format.
    await page.locator('#browse-tags a').first().click();
    await page.waitForSelector('#view-browse[data-ready^="manifest:"]', { timeout: 15_000 });
    assert.match(await text('manifest-last-pulled'), /^(<1s|\d+s) ago \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)$/);
    assert.match(await page.locator('#manifest-blobs').innerText(), /layer 1\t\S+\t12\d(\.\d)? KiB\tstored/);
    await shoot(page, 'status-manifest');
    t.diagnostic(`screenshots in ${SCREENS}`);
    assert.deepEqual(errors, [], 'no script errors, no CSP refusal');
  });
});
