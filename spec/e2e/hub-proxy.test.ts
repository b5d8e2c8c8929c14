/**
 * A company's Docker Hub proxy as the upstream: the test hub (token server, docker-registry)
 * reached under a host name that is not Docker Hub's, as an Artifactory or Nexus in front of
 * Docker Hub would be. Without proxy.namespace the mirror serves it as the registry its host
 * names, and says so at start with what to set; with `proxy.namespace: docker.io` short names,
 * containerd's `?ns=docker.io` and the generated containerd config all mean Docker Hub.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MT, pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import { runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

describe("a company's Docker Hub proxy as the upstream", { skip: missingBinaries }, () => {
  let world: World;
  let image: PushedImage;
  /** The test hub under a name of its own: what a company proxy's URL looks like to the mirror. */
  let companyProxy: string;
  let proxyHost: string;

  before(async () => {
    world = await startWorld();
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/hello-world', tag: 'latest', layers: [randomLayer('hello-0', 8 * 1024)], format: 'docker' });
    const url = new URL(world.proxy.url);
    url.hostname = 'localhost';
    companyProxy = url.origin;
    proxyHost = url.host;
  });

  after(async () => {
    await world?.close();
  });

  const servingLines = (mirror: RunningMirror) => mirror.logLines().filter((line) => line.message === 'serving registry');
  const configWarnings = (mirror: RunningMirror) => mirror.logLines().filter((line) => line.message === 'configuration').map((line) => String(line.warning));

  it('without proxy.namespace: start-up names the registry it serves it as, and says to set proxy.namespace: docker.io for a Hub proxy', async () => {
    const mirror = await world.startMirror({ remoteurl: companyProxy });
    try {
      assert.deepEqual(
        servingLines(mirror).map(({ namespace, upstream, default: isDefault }) => ({ namespace, upstream, isDefault })),
        [{ namespace: proxyHost, upstream: companyProxy, isDefault: true }],
      );
      const warning = configWarnings(mirror).find((line) => line.includes('proxy.namespace'));
      assert.ok(warning, JSON.stringify(configWarnings(mirror)));
      assert.match(warning, new RegExp(`proxy\\.remoteurl ${companyProxy.replaceAll('.', '\\.')} is not Docker Hub and proxy\\.namespace is not set: it is served as the registry ${proxyHost}`));
      assert.match(warning, /If it is a Docker Hub proxy, set proxy\.namespace: docker\.io/);
      assert.ok(!warning.includes(PUSHER.password) && !warning.includes('mirror-secret'), 'no credentials');
      // The trap the warning is about: a Docker Hub short name is not Docker Hub's here.
      const warm = await runPullmirror(['warm', '--mirror', mirror.url, 'hello-world:latest']);
      assert.equal(warm.code, 1, warm.stdout + warm.stderr);
      const check = await runPullmirror(['config', 'check', mirror.configFile]);
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stderr, /warning: proxy\.remoteurl .* is not Docker Hub and proxy\.namespace is not set/, 'config check says it too');
    } finally {
      await mirror.stop();
    }
  });

  it('with proxy.namespace: docker.io: no warning; warm hello-world:latest, ?ns=docker.io and client-config containerd mean Docker Hub', async () => {
    const mirror = await world.startMirror({ remoteurl: companyProxy, config: { proxy: { namespace: 'docker.io' } } });
    try {
      assert.deepEqual(servingLines(mirror).map(({ namespace, upstream }) => ({ namespace, upstream })), [{ namespace: 'docker.io', upstream: companyProxy }]);
      assert.equal(configWarnings(mirror).filter((line) => line.includes('proxy.namespace')).length, 0);

      const warm = await runPullmirror(['warm', '--mirror', mirror.url, 'hello-world:latest']);
      assert.equal(warm.code, 0, warm.stdout + warm.stderr);
      assert.match(warm.stdout, /warmed 1 of 1 image/);

      // What containerd sends for docker.io/library/hello-world:latest with the mirror in hosts.toml.
      const manifest = await fetch(`${mirror.url}/v2/library/hello-world/manifests/latest?ns=docker.io`, { headers: { accept: MT.dockerManifest } });
      assert.equal(manifest.status, 200);
      assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest);
      const otherNs = await fetch(`${mirror.url}/v2/library/hello-world/manifests/latest?ns=${proxyHost}`, { headers: { accept: MT.dockerManifest } });
      assert.equal(otherNs.status, 404, "the proxy's own host is no registry of this mirror");
      await otherNs.arrayBuffer();

      const hosts = await runPullmirror(['client-config', 'containerd', '--mirror', mirror.url, mirror.configFile]);
      assert.equal(hosts.code, 0, hosts.stderr);
      assert.match(hosts.stdout, /certs\.d\/docker\.io\/hosts\.toml/);
      assert.ok(!hosts.stdout.includes(`certs.d/${proxyHost}`), hosts.stdout);
    } finally {
      await mirror.stop();
    }
  });
});
