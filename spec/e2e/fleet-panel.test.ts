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
import { chromium, type Browser, type Page } from 'playwright-core';
import type { RunningMirror } from '../support/mirror.ts';
import { findBinary, requireBinary, skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { missingBinaries, startWorld, type World } from './fixtures.ts';

const CHROMIUM = findBinary('chromium') ?? '/usr/bin/chromium';
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
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const page = await browser.newPage({ viewport: { width: 1200, height: 600 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${a.url}/#/fleet`);
    await page.waitForSelector('#view-fleet[data-ready="alive:2,gone:0"]', { timeout: 15_000 });
    assert.deepEqual(await panel(page), { [addressOf(a)]: 'alive', [addressOf(b)]: 'alive' });
    assert.equal(await page.locator('#fleet-instances tr[data-self="true"]').getAttribute('data-address'), addressOf(a), 'the answering instance is marked');
    await shoot(page, 'fleet-1-two-instances');

    // A clean stop withdraws the heartbeat: gone on the next refresh (5 s), not after the expiry (15 s).
    const stoppedAt = Date.now();
    await b.stop();
    await page.waitForSelector('#view-fleet[data-ready="alive:1,gone:1"]', { timeout: 8_000 });
    assert.ok(Date.now() - stoppedAt < 8_000);
    assert.deepEqual(await panel(page), { [addressOf(a)]: 'alive', [addressOf(b)]: 'gone' });
    assert.match(await page.locator(`#fleet-instances tr[data-address="${addressOf(b)}"]`).innerText(), /stopped .* ago/);
    await shoot(page, 'fleet-2-one-stopped');

    // A killed instance cannot say goodbye: its key expires (15 s) and it shows as gone then.
    const c = await world.startMirror({ bundle: true, root, config });
    await page.waitForSelector('#view-fleet[data-ready="alive:2,gone:1"]', { timeout: 15_000 });
    const killedAt = Date.now();
    c.process.child.kill('SIGKILL');
    await page.waitForSelector('#view-fleet[data-ready="alive:1,gone:2"]', { timeout: 30_000 });
    const took = Date.now() - killedAt;
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

  it('without Redis, /api/fleet lists just this instance', async () => {
    const alone = await world.startMirror({ bundle: true });
    const answer = (await (await fetch(`${alone.url}/api/fleet`)).json()) as { redis: string; instances: { address: string; state: string; self: boolean; version: string }[] };
    assert.equal(answer.redis, 'none');
    assert.deepEqual(answer.instances.map((i) => [i.address, i.state, i.self]), [[addressOf(alone), 'alive', true]]);
    assert.match(answer.instances[0].version, /^\d+\.\d+\.\d+/);
  });
});
