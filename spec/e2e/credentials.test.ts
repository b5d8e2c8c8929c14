/**
 * A wrong proxy.password against the real token server: said at start-up (which keys, which
 * realm), shown by readiness, /api/status and a metric, and public images still served
 * anonymously instead of every pull failing with 502.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { sample, scrape } from '../support/prometheus.ts';
import { missingBinaries, MIRROR_ACCOUNT, PUSHER, startWorld, type World } from './fixtures.ts';

const WRONG = 'not-the-mirror-password-42';

async function logLine(mirror: RunningMirror, pattern: RegExp): Promise<Record<string, any>> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const line = mirror.logLines().find((entry) => pattern.test(String(entry.message)));
    if (line) return line;
    if (performance.now() > deadline) throw new Error(`no log line matching ${pattern}:\n${mirror.process.readLog()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('refused upstream credentials', { skip: missingBinaries }, () => {
  let world: World;
  let image: PushedImage;
  before(async () => {
    world = await startWorld({ privateRepos: ['team/secret'] });
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/pub', tag: '1', layers: [randomLayer('credentials-pub', 8 * 1024)], format: 'docker' });
    await pushImage(world.registry.url, PUSHER, { name: 'team/secret', tag: '1', layers: [randomLayer('credentials-secret', 4 * 1024)], format: 'docker' });
  });
  after(() => world?.close());

  it('are named at start, reported by readiness (advisory: the instance stays ready), the status page and a metric; public images still pull', async () => {
    const mirror = await world.startMirror({ password: WRONG, config: { health: { upstream: { interval: '0s' } } } });
    const refused = await logLine(mirror, /^upstream credentials refused/);
    assert.equal(refused.keys, 'proxy.username, proxy.password');
    assert.equal(refused.realm, world.tokens.realm, 'the realm that refused them');
    assert.equal(refused.status, 401);
    assert.ok(!JSON.stringify(mirror.logLines()).includes(WRONG), 'the password is never logged');

    const ready = await fetch(`${mirror.url}/health/ready`);
    assert.equal(ready.status, 200, 'public and cached images still pull: readiness reports it, the alert says it');
    const checks = (await ready.json()).checks;
    assert.equal(checks['upstream-credentials'].ok, false);
    assert.equal(checks['upstream-credentials'].advisory, true);
    assert.equal(Object.values<any>((await (await fetch(`${mirror.url}/health`)).json()).upstream)[0].credentials, 'refused', '/health details say it too');
    assert.match(checks['upstream-credentials'].error, /credentials were refused by .* \(401\); pulling anonymously/);
    assert.equal(checks.upstream.ok, true, 'the upstream itself is reachable');

    const status = await (await fetch(`${mirror.url}/api/status`)).json();
    assert.equal(status.upstream.credentials.state, 'refused');
    assert.equal(sample(await scrape(`${mirror.url}/metrics`), 'pullmirror_upstream_credentials_refused'), 1);

    const manifest = await fetch(`${mirror.url}/v2/library/pub/manifests/1`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(manifest.status, 200, 'a public image is served anonymously');
    assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest);
    await manifest.arrayBuffer();
    const blob = await fetch(`${mirror.url}/v2/library/pub/blobs/${image.layerDigests[0]}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
    const secret = await fetch(`${mirror.url}/v2/team/secret/manifests/1`);
    assert.ok(secret.status >= 400, 'a private one is not');
    await secret.arrayBuffer();
    await mirror.stop();
  });

  it('accepted credentials: said once, ready, metric 0', async () => {
    const mirror = await world.startMirror({ password: MIRROR_ACCOUNT.password });
    const accepted = await logLine(mirror, /^upstream credentials accepted/);
    assert.equal(accepted.keys, 'proxy.username, proxy.password');
    const ready = await fetch(`${mirror.url}/health/ready`);
    const body = await ready.json();
    assert.equal(ready.status, 200, JSON.stringify(body));
    assert.equal(body.checks['upstream-credentials'].ok, true);
    assert.equal(sample(await scrape(`${mirror.url}/metrics`), 'pullmirror_upstream_credentials_refused'), 0);
    assert.equal((await (await fetch(`${mirror.url}/api/status`)).json()).upstream.credentials.state, 'accepted');
    await mirror.stop();
  });
});
