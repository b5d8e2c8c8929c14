/**
 * Readiness during an upstream outage: with the real upstream (docker-registry, its token
 * server and the proxy the mirror dials) stopped, the mirror stays ready and a cached image
 * still pulls with skopeo, while the outage shows where an operator looks for it (/health's
 * details, /api/status, the status page, pullmirror_upstream_reachable). Only a store that
 * cannot be read makes the instance unready.
 */
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launchChromium, openLoadedPage } from '../support/chromium.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';


interface Readiness {
  status: number;
  body: { status: string; checks: Record<string, { ok: boolean; error?: string; advisory?: true }> };
}

describe('readiness in an upstream outage: cached images still pull, so the instance stays ready', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let image: PushedImage;
  const work = tempDir('pullmirror-outage');

  before(async () => {
    world = await startWorld();
    image = await pushImage(world.registry.url, PUSHER, { name: 'team/outage', tag: '1', layers: [randomLayer('outage-0', 64 * 1024), randomLayer('outage-1', 4 * 1024)], format: 'docker' });
    // Checks asked afresh at every request, so each answer below is the state of that moment.
    mirror = await world.startMirror({ config: { health: { upstream: { interval: '0s', timeout: '1s' }, storagedriver: { interval: '0s' } } } });
  });
  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  const ready = async (): Promise<Readiness> => {
    const response = await fetch(`${mirror.url}/health/ready`);
    return { status: response.status, body: await response.json() };
  };
  let pulls = 0;
  const pull = async () => {
    const dest = path.join(work.path, `pull-${pulls++}`);
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/outage:1`, `dir:${dest}`);
    return readDirImage(dest);
  };

  it('stays ready with the upstream stopped, serves the cached image, and says the upstream is unreachable', async (t) => {
    assert.equal((await pull()).manifest.digest, image.manifestDigest, 'cached while the upstream runs');
    const healthy = await ready();
    assert.equal(healthy.status, 200, JSON.stringify(healthy.body));
    assert.equal(healthy.body.checks.upstream.ok, true);

    // The outage: the registry, its token server and the address the mirror dials all stop.
    await world.proxy.close();
    await world.registry.stop();
    await world.tokens.close();

    const during = await ready();
    assert.equal(during.status, 200, `ready while the upstream is down: ${JSON.stringify(during.body)}`);
    assert.equal(during.body.status, 'ready');
    assert.equal(during.body.checks.upstream.ok, false, 'the upstream check reports the outage');
    assert.equal(during.body.checks.upstream.advisory, true, 'reported, not counted');
    assert.match(during.body.checks.upstream.error!, /unreachable/);
    assert.equal(during.body.checks.storage.ok, true);

    const again = await pull();
    assert.equal(again.manifest.digest, image.manifestDigest, 'the cached image pulls during the outage');
    assert.deepEqual([...again.blobs.keys()].sort(), [...(await readDirImage(path.join(work.path, 'pull-0'))).blobs.keys()].sort());

    // Where the outage shows: /health's details, the gauge, /api/status and the status page.
    const live = await fetch(`${mirror.url}/health`);
    assert.equal(live.status, 200, 'live');
    const details = await live.json();
    assert.equal(details.status, 'ok');
    const [state] = Object.values<any>(details.upstream);
    assert.equal(state.reachability.state, 'unreachable', JSON.stringify(details));
    assert.ok(state.reachability.error, 'with the reason');
    assert.equal(sample(await scrape(`${mirror.url}/metrics`), 'pullmirror_upstream_reachable', { registry: Object.keys(details.upstream)[0] }), 0);
    const status = await (await fetch(`${mirror.url}/api/status`)).json();
    assert.equal(status.upstream.reachability.state, 'unreachable');

    if (!requireBinary('chromium', t)) return;
    const browser = await launchChromium();
    try {
      const page = await openLoadedPage(browser, `${mirror.url}/`);
      assert.match(await page.locator('#upstream').innerText(), /unreachable since .*: serving cached images only/);
    } finally {
      await browser.close();
    }
  });

  it('turns unready when the store cannot be read, and ready again when it can', async () => {
    const moved = `${mirror.root}.gone`;
    renameSync(mirror.root, moved);
    try {
      const gone = await ready();
      assert.equal(gone.status, 503, JSON.stringify(gone.body));
      assert.equal(gone.body.status, 'unavailable');
      assert.equal(gone.body.checks.storage.ok, false);
      assert.match(gone.body.checks.storage.error!, /ENOENT/);
    } finally {
      renameSync(moved, mirror.root);
    }
    assert.ok(await eventually(async () => (await ready()).status === 200, 5_000), 'ready again with the store back');
  });
});
