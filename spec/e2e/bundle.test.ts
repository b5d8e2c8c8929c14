/**
 * The artifact users run: `npm start` runs the esbuild bundle (dist/pullmirror.mjs, built by
 * `npm test` first) with its Node flags. The other e2e suites run src/main.ts; this one makes
 * sure the bundle is whole (every module and dependency inside it) and pulls through it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { after, before, describe, it } from 'node:test';
import { pushImage, pushIndex, randomLayer, type PushedIndex } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

describe('the built bundle, started as npm start does', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let index: PushedIndex;
  const work = tempDir('pullmirror-bundle');

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    const platforms = [
      await pushImage(reg, PUSHER, { name: 'library/bundled', layers: [randomLayer('bundle-amd64', 200_000)], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(reg, PUSHER, { name: 'library/bundled', layers: [randomLayer('bundle-arm64', 200_000)], platform: { os: 'linux', architecture: 'arm64' }, format: 'oci' }),
    ];
    index = await pushIndex(reg, PUSHER, { name: 'library/bundled', tag: 'v1', images: platforms, format: 'oci-index' });
    mirror = await world.startMirror({ bundle: true });
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  it('pulls an OCI index with both platforms through the bundle, then serves it warm', async () => {
    for (const round of ['cold', 'warm']) {
      world.proxy.reset();
      const dest = path.join(work.path, round);
      await skopeoCopy(`docker://127.0.0.1:${mirror.port}/library/bundled:v1`, `dir:${dest}`, { all: true });
      const pulled = await readDirImage(dest);
      assert.equal(pulled.manifest.digest, index.digest, `${round}: index digest`);
      assert.equal(pulled.instances.size, 2, `${round}: both platform manifests`);
      const blobGets = world.proxy.count('GET', /\/blobs\//);
      if (round === 'cold') assert.equal(blobGets, 4, 'cold: two configs and two layers, once each');
      else assert.equal(blobGets, 0, 'warm: no upstream blob GET');
    }
    assert.ok(mirror.process.child.spawnargs.some((arg) => arg.endsWith('dist/pullmirror.mjs')), 'the bundle served, not src/main.ts');
    assert.ok(!mirror.process.child.spawnargs.some((arg) => arg.endsWith('src/main.ts')));
  });

  it('checks passwords on its bcrypt worker threads (dist/bcrypt-worker.mjs, the build\'s second entry)', async () => {
    const file = path.join(work.path, 'htpasswd');
    writeFileSync(file, `carl:${bcrypt.hashSync('carls-pass', 6)}\n`);
    const guarded = await world.startMirror({ bundle: true, config: { auth: { htpasswd: { path: file } } } });
    const url = `${guarded.url}/v2/library/bundled/manifests/${index.digest}`;
    const as = (password: string) => ({ headers: { authorization: `Basic ${Buffer.from(`carl:${password}`).toString('base64')}` } });
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await fetch(url, as('wrong'))).status, 401);
    assert.equal((await fetch(url, as('carls-pass'))).status, 200);
  });

  it('carries the status page, its figures, readiness and metrics', async () => {
    const page = await fetch(`${mirror.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>pullmirror<\/title>/);
    const status = await (await fetch(`${mirror.url}/api/status`)).json();
    assert.ok(status.totals.pulls >= 2, 'the pulls above are counted');
    assert.notEqual(status.version, 'unknown');
    assert.equal((await fetch(`${mirror.url}/health/ready`)).status, 200);
    assert.match(await (await fetch(`${mirror.url}/metrics`)).text(), /pullmirror_cache_requests_total\{kind="blob",result="hit",registry="[^"]*"\}/);
  });
});
