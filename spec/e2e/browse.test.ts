/**
 * The store browser and the eviction view in a real browser (Debian's chromium through
 * playwright-core): images pulled through the mirror with skopeo from the real upstream,
 * browsed from the registry down to a multi-platform index, searched, one pinned by
 * storage.eviction.keep, and a preview of the next pass compared with `pullmirror gc --dry-run`
 * (the bundle in dist/) on the same store and config.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/chromium.ts';
import { pushImage, pushIndex, randomLayer, type PushedImage, type PushedIndex } from '../support/images.ts';
import { BUNDLE, runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { skopeoCopy } from '../support/skopeo.ts';
import { MIRROR_ACCOUNT, missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const TTL_S = 3;
const OTHER = 'registry.k8s.io';

/** Where screenshots go: $PULLMIRROR_SCREENSHOTS, else a temp dir (named in the test's output). */
const SCREENS = process.env.PULLMIRROR_SCREENSHOTS || path.join(tmpdir(), `pullmirror-screens-${process.pid}`);

/** `pullmirror gc ARGS config.yml` from the bundle; resolves with stdout. */
async function gc(mirror: RunningMirror, ...args: string[]): Promise<string> {
  const run = await runPullmirror(['gc', ...args, mirror.configFile], { entry: BUNDLE });
  if (run.code !== 0) throw new Error(`pullmirror gc failed: ${run.stderr || run.stdout}`);
  return run.stdout;
}

/** The items of a gc report: `tag R:T`, `manifest R@D`, `blob D`. */
function gcItems(report: string): string[] {
  const items: string[] = [];
  for (const line of report.split('\n')) {
    const match = /^would remove (tag|manifest|blob) (\S+)/.exec(line);
    if (match) items.push(`${match[1]} ${match[2]}`);
  }
  return items.sort();
}

async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENS, `${name}.png`), fullPage: true });
}

/** Opens a hash and waits until its view says it is drawn (`data-ready` = what). */
async function open(page: Page, view: string, hash: string, ready: string | RegExp): Promise<void> {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForFunction(
    ([v, r, isRegExp]) => {
      const state = document.getElementById(`view-${v}`)?.dataset.ready ?? '';
      if (state === 'error') throw new Error(document.getElementById(`view-${v}`)!.dataset.error);
      return isRegExp ? new RegExp(r).test(state) : state === r;
    },
    [view, typeof ready === 'string' ? ready : ready.source, typeof ready !== 'string'] as const,
    { timeout: 15_000 },
  );
}

/** What an image weighs in the store: its manifest, config and layers. */
const weight = (image: PushedImage) =>
  image.manifestBytes.length + image.configBytes.length + JSON.parse(image.manifestBytes.toString()).layers.reduce((n: number, l: { size: number }) => n + l.size, 0);

const cells = async (page: Page, selector: string) => (await page.locator(selector).allInnerTexts()).map((row) => row.split('\t').map((cell) => cell.trim()));

describe('status page: browse the cache, see a pin and the next eviction pass', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let namespace: string;
  let browser: Browser | undefined;
  const work = tempDir('pullmirror-browse');
  const images: Record<string, PushedImage> = {};
  let index: PushedIndex;
  let platforms: PushedImage[];

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    platforms = [
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('browse-amd64', 64 * 1024)], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(reg, PUSHER, { name: 'team/multi', layers: [randomLayer('browse-arm64', 48 * 1024)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, format: 'oci' }),
    ];
    index = await pushIndex(reg, PUSHER, { name: 'team/multi', tag: 'latest', images: platforms, format: 'oci-index' });
    images.web = await pushImage(reg, PUSHER, { name: 'team/web', tag: '1.0', layers: [randomLayer('browse-web', 20 * 1024)], format: 'docker' });
    images.pinned = await pushImage(reg, PUSHER, { name: 'library/pinned', tag: '1', layers: [randomLayer('browse-pinned', 30 * 1024)], format: 'docker' });
    images.old = await pushImage(reg, PUSHER, { name: 'library/old', tag: '1', layers: [randomLayer('browse-old', 40 * 1024)], format: 'docker' });
    namespace = new URL(world.proxy.url).host;
    mirror = await world.startMirror({
      bundle: true,
      config: {
        // A second registry (the same upstream under another namespace): its repositories live under registries/.
        proxy: { ttl: `${TTL_S}s`, tagfreshness: '0', remotes: [{ namespace: OTHER, remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, ttl: `${TTL_S}s`, tagfreshness: '0' }] },
        // No grace period, so what the TTL names is due at once; deletes stay off (nothing scheduled).
        // A cap far above what the test stores: the page draws it, no pass evicts by size.
        storage: { eviction: { grace: '0s', maxsize: '1MiB', keep: [`${namespace}/library/pinned:*`] } },
      },
    });
  });

  after(async () => {
    await browser?.close();
    await world?.close();
    await work.cleanup();
  });

  it('browses registries → repositories → tags → a multi-platform index, searches, shows a pin, and previews what gc --dry-run would remove', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const pull = (ref: string, all = false) => skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${path.join(work.path, ref.replace(/\W/g, '_'))}`, { all });
    await pull('team/multi:latest', true);
    await pull('team/web:1.0');
    await pull('library/pinned:1');
    await pull('library/old:1');
    await pull(`${OTHER}/team/web:1.0`);
    const pulledAt = Date.now();

    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    await page.goto(`${mirror.url}/`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    await page.waitForFunction(() => document.getElementById('cap-used')!.dataset.value !== '', undefined, { timeout: 15_000 });
    assert.match(await page.locator('#cap-detail').innerText(), /^\d+(\.\d)? KiB of 1 MiB\nevicts past 90 % down to 80 %$/);
    await shoot(page, 'overview');
    await open(page, 'browse', '#/browse', 'registries');

    // Registries, with the store against its (absent) cap and the disk's free space.
    const registries = await cells(page, '#browse-registries tbody tr');
    assert.deepEqual(registries.map((row) => [row[0], row[2]]), [[`${namespace} (default)`, '4'], [OTHER, '1']]);
    assert.equal(Number(await page.locator('#browse-capacity dd').nth(1).getAttribute('data-value')), 1024 * 1024);
    assert.equal(await page.locator('#browse-store .bar .mark').count(), 2, 'the cap bar marks both watermarks');
    const disk = await page.locator('#browse-capacity dd').nth(2).getAttribute('data-value');
    assert.ok(Number(disk) > 0, 'the disk\'s free space is shown');
    await shoot(page, 'browse-1-registries');

    // Repositories of the registry, then a search by part of a name.
    await page.locator(`#browse-registries a:text-is("${namespace}")`).click();
    await page.waitForFunction(() => document.getElementById('view-browse')!.dataset.ready?.startsWith('repositories:'));
    assert.deepEqual((await cells(page, '#browse-repositories tbody tr')).map((row) => row[0]), ['library/old', 'library/pinned', 'team/multi', 'team/web']);
    await shoot(page, 'browse-2-repositories');
    await page.fill('#browse-search', 'we');
    await page.press('#browse-search', 'Enter');
    await page.waitForFunction(() => /^repositories:[^:]+:\d+:we:$/.test(document.getElementById('view-browse')!.dataset.ready ?? '') || document.getElementById('view-browse')!.dataset.ready?.endsWith(':we:'));
    assert.deepEqual((await cells(page, '#browse-repositories tbody tr')).map((row) => row[0]), ['team/web']);
    assert.match(await page.locator('#browse-total').innerText(), /^1 repository matching/);
    await shoot(page, 'browse-3-search');

    // The index's tag: both platforms, and its size = index + each platform's manifest, config and layers.
    await open(page, 'browse', `#/browse/${namespace}`, `repositories:${namespace}::`);
    await page.locator('#browse-repositories a:text-is("team/multi")').click();
    await page.waitForFunction(() => document.getElementById('view-browse')!.dataset.ready?.startsWith('tags:'));
    const tagRow = page.locator('#browse-tags tr[data-tag="latest"]');
    assert.match(await tagRow.innerText(), /index: linux\/amd64, linux\/arm64\/v8/);
    assert.equal(await page.locator('#browse-total').innerText(), `1 tag · TTL ${TTL_S}s`);
    assert.equal(Number(await tagRow.locator('td').nth(3).getAttribute('data-value')), index.bytes.length + weight(platforms[0]) + weight(platforms[1]));
    const expiry = Number(await tagRow.locator('td').nth(6).getAttribute('data-expiry'));
    assert.ok(expiry >= pulledAt - 60_000 + TTL_S * 1000 && expiry <= Date.now() + TTL_S * 1000, 'the manifest expires its TTL after the last pull');
    await shoot(page, 'browse-4-tags');

    await tagRow.locator('a').click();
    await page.waitForFunction(() => document.getElementById('view-browse')!.dataset.ready?.startsWith('manifest:'));
    assert.equal(await page.locator('#manifest-tags').innerText(), 'latest');
    const platformRows = await cells(page, '#manifest-platforms tbody tr');
    assert.deepEqual(platformRows.map((row) => row[0]), ['linux/amd64', 'linux/arm64/v8']);
    const sizes = await page.locator('#manifest-platforms tbody tr td:nth-child(3)').evaluateAll((tds) => tds.map((td) => Number((td as HTMLElement).dataset.value)));
    assert.deepEqual(sizes, [weight(platforms[0]), weight(platforms[1])]);
    await shoot(page, 'browse-5-index');
    // A platform's own manifest: its config and layers, all stored.
    await page.locator('#manifest-platforms a').first().click();
    await page.waitForFunction((d) => document.getElementById('view-browse')!.dataset.ready?.endsWith('@' + d), platforms[0].manifestDigest);
    assert.equal(await page.locator('#manifest-platform').innerText(), 'platform linux/amd64');
    assert.deepEqual((await cells(page, '#manifest-blobs tbody tr')).map((row) => [row[0], row[3]]), [['config', 'stored'], ['layer 1', 'stored']]);
    await shoot(page, 'browse-6-platform');

    // The pinned image: its tag and manifest are held by the pattern, they never expire.
    await open(page, 'browse', `#/browse/${namespace}/library/pinned`, `tags:${namespace}/library/pinned:`);
    const pinRow = page.locator('#browse-tags tr[data-tag="1"]');
    assert.equal(await pinRow.locator('td[data-pinned]').getAttribute('data-pinned'), `${namespace}/library/pinned:*`);
    assert.equal(await pinRow.locator('td').nth(6).getAttribute('data-expiry'), 'pinned');
    await shoot(page, 'browse-7-pinned');

    // Eviction: nothing scheduled (deletes are off); the preview matches gc --dry-run on the same store.
    await sleep(Math.max(0, pulledAt + TTL_S * 1000 + 1500 - Date.now()));
    await open(page, 'eviction', '#/eviction', 'passes:0');
    assert.equal(await page.locator('#eviction-next').innerText(), 'no scheduled eviction (storage.delete.enabled is false)');
    await page.click('#preview-run');
    await page.waitForSelector('#view-eviction[data-preview]', { timeout: 30_000 });
    const preview = (await page.locator('#preview-items tr[data-kind]').evaluateAll((rows) => rows.map((row) => `${(row as HTMLElement).dataset.kind} ${(row as HTMLElement).dataset.item}`))).sort();
    const report = await gc(mirror, '--dry-run');
    assert.deepEqual(preview, gcItems(report), 'the preview names exactly what gc --dry-run would remove');
    assert.ok(preview.includes('manifest library/old@' + images.old.manifestDigest), 'the unused image is due');
    assert.ok(preview.includes(`manifest team/multi@${index.digest}`), 'the index is due');
    assert.ok(!preview.some((item) => item.includes('library/pinned') || item.endsWith(images.pinned.manifestDigest)), 'nothing pinned is in the preview');
    const pinned = await cells(page, '#preview-pinned tbody tr');
    assert.deepEqual(pinned, [['pinned', 'library/pinned:1', `${namespace}/library/pinned:*`]]);
    assert.match(report, /storage\.eviction\.keep holds 1 tag and 1 manifest/);
    assert.equal(await page.locator('#preview-summary').getAttribute('data-manifests'), String(preview.filter((item) => item.startsWith('manifest ')).length));
    await shoot(page, 'eviction-preview');
    assert.deepEqual(errors, [], 'no script errors');
    t.diagnostic(`screenshots in ${SCREENS}`);
  });

  it('shows the scheduled passes: when, what they removed, bytes freed, and the next pass', async (t) => {
    if (!requireBinary('chromium', t)) return;
    const scheduled = await world.startMirror({
      bundle: true,
      config: {
        proxy: { ttl: `${TTL_S}s`, tagfreshness: '0' },
        storage: { delete: { enabled: true }, eviction: { grace: '0s', schedule: '*/2 * * * * *' } },
      },
    });
    await skopeoCopy(`docker://127.0.0.1:${scheduled.port}/library/old:1`, `dir:${path.join(work.path, 'scheduled-old')}`);
    const page = await browser!.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(`${scheduled.url}/#/eviction`);
    // The image goes with the first pass past its TTL; the view redraws every 5 s.
    const removing = page.locator('#eviction-passes tbody tr[data-outcome="done"]', { hasText: /1 manifest\b/ });
    await removing.first().waitFor({ timeout: 30_000 });
    const row = await removing.first().innerText();
    assert.match(row, /1 tag, 1 manifest, 3 blobs/, 'the tag, the manifest, its config and layer went');
    const freed = Number(await removing.first().locator('td').nth(3).getAttribute('data-value'));
    assert.equal(freed, weight(images.old), 'bytes freed = the image: manifest, config and layer');
    await removing.first().locator('summary').click();
    assert.match(await removing.first().innerText(), new RegExp(`library/old@${images.old.manifestDigest}`));
    const next = Number(await page.locator('#eviction-next').getAttribute('data-time'));
    assert.ok(next > Date.now() - 5_000 && next <= Date.now() + 5_000, 'the next pass is at most one schedule step away');
    await shoot(page, 'eviction-passes');
    await page.close();
  });

  it('pages through repositories and tags with a cursor, and refuses bad parameters with a clear error', async () => {
    const get = async (query: string) => {
      const response = await fetch(`${mirror.url}/api/browse/${query}`);
      return { status: response.status, body: (await response.json()) };
    };
    const first = await get('repositories?limit=3');
    assert.equal(first.status, 200);
    assert.equal(first.body.total, 4);
    assert.equal(first.body.items.length, 3);
    const second = await get(`repositories?limit=3&cursor=${encodeURIComponent(first.body.next)}`);
    assert.equal(second.body.next, null);
    assert.deepEqual([...first.body.items, ...second.body.items].map((r: { name: string }) => r.name), ['library/old', 'library/pinned', 'team/multi', 'team/web']);
    // The other registry's repositories, tags and manifests, apart from the default's.
    const other = await get(`repositories?registry=${OTHER}`);
    assert.deepEqual(other.body.items.map((r: { name: string; tags: number }) => [r.name, r.tags]), [['team/web', 1]]);
    const otherTags = await get(`tags?registry=${OTHER}&repository=team/web`);
    assert.deepEqual(otherTags.body.items.map((row: { tag: string; digest: string }) => [row.tag, row.digest]), [['1.0', images.web.manifestDigest]]);
    const otherManifest = await get(`manifest?registry=${OTHER}&repository=team/web&digest=${images.web.manifestDigest}`);
    assert.deepEqual([otherManifest.status, otherManifest.body.summary.size, otherManifest.body.tags], [200, weight(images.web), ['1.0']]);
    assert.equal((await get(`tags?registry=${OTHER}&repository=team/multi`)).status, 404, 'a repository of the default registry is not the other one\'s');
    const tags = await get('tags?repository=team/multi&limit=1');
    assert.deepEqual([tags.status, tags.body.total, tags.body.items[0].tag, tags.body.next], [200, 1, 'latest', null]);

    for (const [query, status, message] of [
      ['repositories?limit=0', 400, /limit/],
      ['repositories?limit=abc', 400, /limit/],
      ['repositories?q=%3Cscript%3E', 400, /^q:/],
      ['repositories?registry=nowhere.example', 404, /serves no registry/],
      ['tags', 400, /repository: required/],
      ['tags?repository=..%2Fetc', 400, /not a repository name/],
      ['tags?repository=team/absent', 404, /holds no repository/],
      ['manifest?repository=team/multi&digest=sha256:abc', 400, /digest/],
      [`manifest?repository=team/multi&digest=sha256:${'0'.repeat(64)}`, 404, /holds no manifest/],
      ['tags?repository=a&repository=b', 400, /once/],
    ] as const) {
      const answer = await get(query);
      assert.equal(answer.status, status, query);
      assert.match(answer.body.error, message, query);
    }
  });

  it('with auth.htpasswd, every new route answers 401 to a client without credentials and 200 with them', async () => {
    const file = path.join(work.path, 'htpasswd');
    writeFileSync(file, `ops:${bcrypt.hashSync('ops-pass-2026', 6)}\n`);
    const guarded = await world.startMirror({ bundle: true, config: { auth: { htpasswd: { realm: 'browse-test', path: file } } } });
    const routes = ['/api/browse/registries', '/api/browse/repositories', '/api/browse/tags?repository=team/multi', `/api/browse/manifest?repository=team/multi&digest=${index.digest}`, '/api/eviction', '/api/eviction/preview', '/api/fleet', '/api/status', '/', '/status-page.js', '/status-page.css'];
    const basic = { authorization: `Basic ${Buffer.from('ops:ops-pass-2026').toString('base64')}` };
    for (const route of routes) {
      const anonymous = await fetch(`${guarded.url}${route}`);
      await anonymous.arrayBuffer();
      assert.equal(anonymous.status, 401, `${route} without credentials`);
      const wrong = await fetch(`${guarded.url}${route}`, { headers: { authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` } });
      await wrong.arrayBuffer();
      assert.equal(wrong.status, 401, `${route} with a wrong password`);
    }
    for (const route of ['/api/browse/registries', '/api/eviction', '/api/fleet']) {
      const allowed = await fetch(`${guarded.url}${route}`, { headers: basic });
      assert.equal(allowed.status, 200, `${route} with credentials`);
      await allowed.arrayBuffer();
    }
  });
});
