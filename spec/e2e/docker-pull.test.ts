/**
 * The main use, end to end: a real dockerd started with `--registry-mirror=<pullmirror>` pulls
 * Docker Hub style names (`alpine:3.20`, `team/app` — docker.io images) and gets them from the
 * mirror. There is no internet here, so a pull that succeeds went through the mirror; the
 * counting proxy in front of the upstream shows what the mirror fetched.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDockerd, type Dockerd } from '../support/dockerd.ts';
import { pushImage, pushIndex, randomLayer, type PushedImage, type PushedIndex } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries } from '../support/processes.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const missing = missingBinaries || skipUnlessBinaries(['dockerd', 'docker']);

describe('docker pull through pullmirror as a registry mirror (real dockerd)', { skip: missing }, () => {
  let world: World;
  let mirror: RunningMirror;
  let dockerd: Dockerd;
  let alpine: PushedIndex;
  let amd64: PushedImage;
  let app: PushedImage;

  before(async () => {
    world = await startWorld();
    const reg = world.registry.url;
    // Official images live under library/ upstream; docker asks the mirror for library/alpine.
    const platforms = [
      (amd64 = await pushImage(reg, PUSHER, { name: 'library/alpine', layers: [randomLayer('alpine-amd64-0', 300_000), randomLayer('alpine-amd64-1', 5_000)], platform: { os: 'linux', architecture: 'amd64' }, format: 'docker' })),
      await pushImage(reg, PUSHER, { name: 'library/alpine', layers: [randomLayer('alpine-arm64-0', 300_000)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, format: 'docker' }),
    ];
    alpine = await pushIndex(reg, PUSHER, { name: 'library/alpine', tag: '3.20', images: platforms, format: 'docker-list' });
    app = await pushImage(reg, PUSHER, { name: 'team/app', tag: 'v1', layers: [randomLayer('team-app-0', 1_000_000)], format: 'oci' });
    mirror = await world.startMirror();
    dockerd = await startDockerd({ registryMirror: mirror.url });
  });

  after(async () => {
    await dockerd?.stop();
    await world?.close();
  });

  it('pulls a multi-platform official image: the amd64 manifest, its config and layers, via the mirror', async () => {
    world.proxy.reset();
    const { stdout } = await dockerd.docker(['pull', 'alpine:3.20']);
    assert.match(stdout, new RegExp(`Digest: ${alpine.digest}`), stdout);
    const id = (await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'alpine:3.20'])).stdout.trim();
    assert.equal(id, amd64.configDigest, 'the image id is the amd64 config digest');
    for (const digest of [amd64.configDigest, ...amd64.layerDigests]) {
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${digest}$`)), 1, `fetched once: ${digest}`);
    }
    assert.ok(mirror.logLines().some((line) => line.message === 'blob cached' && line.digest === amd64.layerDigests[0]));
  });

  it('pulls a user image in OCI format, then serves a pull after `docker rmi` without any upstream blob GET', async () => {
    await dockerd.docker(['pull', 'team/app:v1']);
    const id = (await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'team/app:v1'])).stdout.trim();
    assert.equal(id, app.configDigest);
    await dockerd.docker(['rmi', 'team/app:v1', 'alpine:3.20']);
    world.proxy.reset();
    await dockerd.docker(['pull', 'team/app:v1']);
    await dockerd.docker(['pull', 'alpine:3.20']);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'every blob came from the mirror’s disk');
    const again = (await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'alpine:3.20'])).stdout.trim();
    assert.equal(again, amd64.configDigest, 'the same image, pulled again from the mirror');
    assert.equal(world.proxy.count('GET', /\/manifests\/sha256:/), 0, 'manifests by digest too');
  });

  it('answers 404 for an image upstream does not have; dockerd then tries Docker Hub itself (unreachable here)', async () => {
    await assert.rejects(dockerd.docker(['pull', 'library/nothing-here:1'], 60_000));
    const asked = mirror.logLines().filter((line) => line.message === 'request' && String(line.path).startsWith('/v2/library/nothing-here/manifests/1'));
    assert.ok(asked.length > 0, 'dockerd asked the mirror first');
    assert.ok(asked.every((line) => line.status === 404), JSON.stringify(asked));
  });
});
