/**
 * The fleet panel in a real browser: instances of the bundle on one store and one real
 * redis-server register heartbeats; the panel of one shows every instance, one that stops
 * shows as gone at once, one that is killed shows as gone after the heartbeat's expiry, and
 * a Redis outage neither breaks the page nor the mirror.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { requireBinary, skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { pushImage, randomLayer } from '../support/images.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { skopeoCopy } from '../support/skopeo.ts';
import { matchRequests } from '../support/upstream-proxy.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const SCREENS = process.env.PULLMIRROR_SCREENSHOTS || path.join(tmpdir(), `pullmirror-screens-${process.pid}`);

async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENS, `${name}.png`), fullPage: true });
}

/** The panel's rows: address → state. */
async function panel(page: Page): Promise<Record<string, string>> {
  const rows = await page.locator('#fleet-instances tbody tr').evaluateAll((trs) => trs.map((tr) => [(tr as HTMLElement).dataset.address, (tr as HTMLElement).dataset.state]));
  return Object.fromEntries(rows);
}

const addressOf = (mirror: RunningMirror) => new URL(mirror.url).host;

describe('fleet panel: every instance sharing the Redis, and the ones gone', { skip: missingBinaries || skipUnlessBinaries(['redis-server']) }, () => {
  let world: World;
  let redis: RedisServer;
  let browser: Browser | undefined;
  const store = tempDir('pullmirror-fleet-panel');

  before(async () => {
    world = await startWorld();
    redis = await startRedis();
  });

  after(async () => {
    await browser?.close();
    await world?.close();
    await redis?.close();
    await store.cleanup();
  });

  it('shows two instances, then one gone at once after the other stops; a killed one goes gone after the expiry', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const config = { redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s' } };
    const root = path.join(store.path, 'store');
    const [a, b] = await Promise.all([world.startMirror({ bundle: true, root, config }), world.startMirror({ bundle: true, root, config })]);
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1200, height: 600 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${a.url}/#/fleet`);
    await page.waitForSelector('#view-fleet[data-ready="alive:2,gone:0"]', { timeout: 15_000 });
    assert.deepEqual(await panel(page), { [addressOf(a)]: 'alive', [addressOf(b)]: 'alive' });
    assert.equal(await page.locator('#fleet-instances tr[data-self="true"]').getAttribute('data-address'), addressOf(a), 'the answering instance is marked');
    await shoot(page, 'fleet-1-two-instances');

    // A clean stop withdraws the heartbeat: gone on the next refresh (5 s), not after the expiry (15 s).
    const stoppedAt = performance.now();
    await b.stop();
    await page.waitForSelector('#view-fleet[data-ready="alive:1,gone:1"]', { timeout: 8_000 });
    assert.ok(performance.now() - stoppedAt < 8_000);
    assert.deepEqual(await panel(page), { [addressOf(a)]: 'alive', [addressOf(b)]: 'gone' });
    assert.match(await page.locator(`#fleet-instances tr[data-address="${addressOf(b)}"]`).innerText(), /stopped .* ago/);
    await shoot(page, 'fleet-2-one-stopped');

    // A killed instance cannot say goodbye: its key expires (15 s) and it shows as gone then.
    const c = await world.startMirror({ bundle: true, root, config });
    await page.waitForSelector('#view-fleet[data-ready="alive:2,gone:1"]', { timeout: 15_000 });
    const killedAt = performance.now();
    c.process.child.kill('SIGKILL');
    await page.waitForSelector('#view-fleet[data-ready="alive:1,gone:2"]', { timeout: 30_000 });
    const took = performance.now() - killedAt;
    assert.ok(took >= 9_000, `gone only after the expiry, not before (${took} ms)`);
    assert.match(await page.locator(`#fleet-instances tr[data-address="${addressOf(c)}"]`).innerText(), /last seen .* ago/);
    await shoot(page, 'fleet-3-one-killed');
    t.diagnostic(`killed instance shown gone after ${took} ms; screenshots in ${SCREENS}`);

    // Redis down: the panel says so and still lists this instance; the mirror answers as before.
    await redis.stop();
    await page.waitForSelector('#view-fleet[data-ready="alive:1,gone:0"]', { timeout: 15_000 });
    assert.match(await page.locator('#fleet-note').innerText(), /Redis unreachable/);
    assert.equal((await fetch(`${a.url}/v2/`)).status, 200);
    await shoot(page, 'fleet-4-redis-down');
    await redis.start();
    // Back (empty, as this test's Redis keeps nothing): the heartbeat registers again by itself.
    await page.waitForFunction(() => /^1 alive/.test(document.getElementById('fleet-note')!.textContent ?? ''), undefined, { timeout: 20_000 });
    assert.deepEqual(errors, [], 'no script errors');
  });

  it('with Redis, the overview is the fleet\'s: pulls through one instance show on the other; the panel breaks them down and shows downloads as they start and end', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const config = { redis: { addr: redis.addr, dialtimeout: '500ms', readtimeout: '1s', writetimeout: '1s' } };
    const root = path.join(store.path, 'fleet-overview');
    // From the sources, as the other e2e suites (the page's script is bundled at start).
    const [a, b] = await Promise.all([world.startMirror({ root, config }), world.startMirror({ root, config })]);
    const image = await pushImage(world.registry.url, PUSHER, { name: 'team/fleetwide', tag: '1', layers: [randomLayer('fleet-overview', 1024 * 1024)], format: 'docker' });
    const layer = JSON.parse(image.manifestBytes.toString()).layers[0].digest as string;
    // The layer comes slowly (about 4 s), so its download is seen in flight.
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 256 * 1024, match: matchRequests('GET', new RegExp(`/blobs/${layer}$`)) });

    // B's own count of its downloads (its /api/fleet row for itself is read live) against what A's panel says of B.
    const fillsOf = async (mirror: RunningMirror, address: string) => {
      const fleet = (await (await fetch(`${mirror.url}/api/fleet`)).json()) as { instances: { address: string; fillsInFlight: number }[] };
      return fleet.instances.find((instance) => instance.address === address)?.fillsInFlight ?? -1;
    };
    const seen: { local?: number; fromA?: number; localEnd?: number; fromAEnd?: number } = {};
    let pulled = false;
    const pull = skopeoCopy(`docker://127.0.0.1:${b.port}/team/fleetwide:1`, `dir:${path.join(store.path, 'fleetwide-b')}`).finally(() => (pulled = true));
    const deadline = performance.now() + 60_000;
    while (performance.now() < deadline && !(pulled && seen.fromAEnd !== undefined)) {
      const [local, fromA] = await Promise.all([fillsOf(b, addressOf(b)), fillsOf(a, addressOf(b))]);
      const now = performance.now();
      if (local > 0) seen.local ??= now;
      if (fromA > 0) seen.fromA ??= now;
      if (seen.local !== undefined && local === 0) seen.localEnd ??= now;
      if (seen.fromA !== undefined && fromA === 0) seen.fromAEnd ??= now;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await pull;
    world.proxy.setFault(undefined);
    assert.ok(seen.local !== undefined && seen.fromA !== undefined && seen.localEnd !== undefined && seen.fromAEnd !== undefined, `the download was seen on both: ${JSON.stringify(seen)}`);
    // The heartbeat beats every 5 s; a start and an end are published as they happen.
    t.diagnostic(`A saw B's download start ${seen.fromA - seen.local} ms and end ${seen.fromAEnd - seen.localEnd} ms after B did`);
    assert.ok(seen.fromA - seen.local < 2_000, `A's panel shows B's download within 2 s of its start (${seen.fromA - seen.local} ms), not at B's next heartbeat`);
    assert.ok(seen.fromAEnd - seen.localEnd < 2_000, `and its end within 2 s (${seen.fromAEnd - seen.localEnd} ms)`);

    // A's overview counts the pull B served, and says whose figures these are.
    browser ??= await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${a.url}/`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    await page.waitForFunction(() => document.getElementById('pulls')!.dataset.value === '1', undefined, { timeout: 15_000 });
    assert.equal(await page.locator('#scope').getAttribute('data-scope'), 'fleet');
    assert.match(await page.locator('#scope').innerText(), /fleet: 2 instances/);
    const recent = await page.locator('#recent tr').allInnerTexts();
    assert.equal(recent.length, 1);
    assert.match(recent[0], new RegExp(`team/fleetwide:1 via ${addressOf(b)}\\s+miss`));
    // The fleet's counters are written in batches (one a second at most): the pull (counted at
    // its manifest) and the bytes of its layer (counted when the layer's response ends) can land
    // in two batches, so the bytes may show a redraw later than the pull.
    await page.waitForFunction(() => Number(document.getElementById('bytes-upstream')!.dataset.value) >= 1024 * 1024, undefined, { timeout: 15_000 });
    assert.deepEqual((await page.locator('#top tr').allInnerTexts()).map((row) => row.split('\t').map((cell) => cell.trim())), [['team/fleetwide', '1']]);
    await shoot(page, 'fleet-5-overview-of-a-after-pull-through-b');

    // A pull through A: both overviews count two; A's panel gives each instance its own.
    await skopeoCopy(`docker://127.0.0.1:${a.port}/team/fleetwide:1`, `dir:${path.join(store.path, 'fleetwide-a')}`);
    await page.waitForFunction(() => document.getElementById('pulls')!.dataset.value === '2', undefined, { timeout: 15_000 });
    const pageB = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    pageB.on('pageerror', (error) => errors.push(error.message));
    await pageB.goto(`${b.url}/`);
    await pageB.waitForFunction(() => document.getElementById('pulls')!.dataset.value === '2', undefined, { timeout: 15_000 });
    assert.equal(await pageB.locator('#hit-ratio').innerText(), await page.locator('#hit-ratio').innerText(), 'the same figures on either instance');
    const recentB = await pageB.locator('#recent tr').allInnerTexts();
    assert.match(recentB[0], new RegExp(`via ${addressOf(a)}\\s+hit`));
    assert.match(recentB[1], new RegExp(`via ${addressOf(b)}\\s+miss`));
    await pageB.close();
    await page.evaluate(() => (location.hash = '#/fleet'));
    await page.waitForSelector('#view-fleet[data-ready="alive:2,gone:0"]', { timeout: 15_000 });
    const pulls = async () =>
      Object.fromEntries(await page.locator('#fleet-instances tbody tr').evaluateAll((trs) => trs.map((tr) => [(tr as HTMLElement).dataset.address, tr.querySelector<HTMLElement>('td[data-col="pulls"]')!.innerText])));
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLElement>('#fleet-instances td[data-col="pulls"]')].every((td) => td.innerText === '1'), undefined, { timeout: 10_000 });
    assert.deepEqual(await pulls(), { [addressOf(a)]: '1', [addressOf(b)]: '1' });
    await shoot(page, 'fleet-6-panel-per-instance');
    await page.close();
    assert.deepEqual(errors, [], 'no script errors');
  });

  it('without Redis, /api/fleet lists just this instance', async () => {
    const alone = await world.startMirror({ bundle: true });
    const answer = (await (await fetch(`${alone.url}/api/fleet`)).json()) as { redis: string; instances: { address: string; state: string; self: boolean; version: string }[] };
    assert.equal(answer.redis, 'none');
    assert.deepEqual(answer.instances.map((i) => [i.address, i.state, i.self]), [[addressOf(alone), 'alive', true]]);
    assert.match(answer.instances[0].version, /^\d+\.\d+\.\d+/);
  });
});
