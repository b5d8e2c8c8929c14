import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startContainerd, type Containerd } from '../support/containerd.ts';
import { pushImage, randomLayer, sha256OfBody, type PushedImage } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { cleanEnv, requireBinary, tempDir } from '../support/processes.ts';
import { startOpenRegistry, type RegistryServer } from '../support/registry.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { startUpstreamProxy, type UpstreamProxy } from '../support/upstream-proxy.ts';
import { MIRROR_ACCOUNT, missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.ts');
/** The second registry's namespace: an upstream without auth, as registry.k8s.io is (served here from 127.0.0.1). */
const K8S = 'registry.k8s.io';
const K8S_ACCOUNT = { username: 'k8s-account', password: 'k8s-secret-2468' };

/**
 * Two real upstreams: the Docker-Hub-like one of every e2e test (token server, standing for
 * docker.io) and a second docker-registry without auth standing for registry.k8s.io. Both hold
 * `team/tool:1` with different content; each pull must get its own registry's image.
 */
/** `pullmirror ARGS`; resolves with stdout. */
function pullmirror(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MAIN, ...args], { env: cleanEnv(['REGISTRY_']) }, (error, stdout, stderr) => (error ? reject(new Error(`pullmirror ${args[0]}: ${stderr || stdout}`)) : resolve(stdout)));
  });
}

describe('many registries: one mirror for docker.io and registry.k8s.io', { skip: missingBinaries }, () => {
  let world: World;
  let k8s: RegistryServer;
  let k8sProxy: UpstreamProxy;
  let mirror: RunningMirror;
  let host: string;
  const work = tempDir('pullmirror-many');
  const hub: Record<string, PushedImage> = {};
  const second: Record<string, PushedImage> = {};
  const shared = randomLayer('shared-by-both', 8 * 1024);

  before(async () => {
    world = await startWorld();
    k8s = await startOpenRegistry();
    k8sProxy = await startUpstreamProxy(k8s.url);
    hub.tool = await pushImage(world.registry.url, PUSHER, { name: 'team/tool', tag: '1', layers: [randomLayer('hub-tool', 32 * 1024), shared], format: 'docker' });
    hub.app = await pushImage(world.registry.url, PUSHER, { name: 'library/app', tag: '1', layers: [randomLayer('hub-app', 16 * 1024)], format: 'docker' });
    second.tool = await pushImage(k8s.url, undefined, { name: 'team/tool', tag: '1', layers: [randomLayer('k8s-tool', 24 * 1024), shared], format: 'oci' });
    second.pause = await pushImage(k8s.url, undefined, { name: 'pause', tag: '3.9', layers: [randomLayer('k8s-pause', 4 * 1024)], format: 'docker' });
    second.cold = await pushImage(k8s.url, undefined, { name: 'team/cold', tag: '1', layers: [randomLayer('k8s-cold', 20 * 1024)], format: 'docker' });
    hub.fresh = await pushImage(world.registry.url, PUSHER, { name: 'team/fresh', tag: '1', layers: [randomLayer('hub-fresh', 256 * 1024)], format: 'docker' });
    second.fresh = await pushImage(k8s.url, undefined, { name: 'team/fresh', tag: '1', layers: [randomLayer('k8s-fresh', 256 * 1024)], format: 'docker' });
    second.warmed = await pushImage(k8s.url, undefined, { name: 'team/warmed', tag: '1', layers: [randomLayer('k8s-warmed', 12 * 1024)], format: 'docker' });
    assert.notEqual(hub.tool.manifestDigest, second.tool.manifestDigest);
    mirror = await world.startMirror({
      config: {
        proxy: {
          namespace: 'docker.io',
          tagfreshness: '0',
          // The second registry gives up an interrupted blob download at once (its own proxy.resume).
          remotes: [{ namespace: K8S, remoteurl: k8sProxy.url, prefix: 'k8s', tagfreshness: '0', ttl: '1h', resume: { retries: 0 }, ...K8S_ACCOUNT }],
        },
        storage: { eviction: { grace: '0s' } },
        // Readiness asks on every request, so a test sees an outage at once.
        health: { upstream: { interval: '0s' } },
      },
    });
    host = `127.0.0.1:${mirror.port}`;
  });

  after(async () => {
    await world?.close();
    await k8sProxy?.close();
    await k8s?.stop();
    await work.cleanup();
  });

  async function pull(ref: string, options: { registriesConf?: string } = {}) {
    const dest = path.join(work.path, `${ref.replace(/[^a-z0-9]/gi, '_')}-${Math.random().toString(36).slice(2)}`);
    await skopeoCopy(ref, `dir:${dest}`, { registriesConf: options.registriesConf });
    return readDirImage(dest);
  }

  it('skopeo: the root is the default registry, /registry.k8s.io/… and the alias /k8s/… the second', async () => {
    assert.equal((await pull(`docker://${host}/team/tool:1`)).manifest.digest, hub.tool.manifestDigest);
    assert.equal((await pull(`docker://${host}/${K8S}/team/tool:1`)).manifest.digest, second.tool.manifestDigest);
    assert.equal((await pull(`docker://${host}/k8s/team/tool:1`)).manifest.digest, second.tool.manifestDigest);
    assert.equal((await pull(`docker://${host}/docker.io/team/tool:1`)).manifest.digest, hub.tool.manifestDigest, 'the default namespace works as a prefix too');
    // library/ is Docker Hub's rule only: `pause` on the second registry is `pause`.
    assert.equal((await pull(`docker://${host}/${K8S}/pause:3.9`)).manifest.digest, second.pause.manifestDigest);
    assert.equal((await pull(`docker://${host}/app:1`)).manifest.digest, hub.app.manifestDigest, 'app is library/app on docker.io');
  });

  it('skopeo with registries.conf mirrors: a location with the prefix for registry.k8s.io, the bare host for docker.io', async () => {
    const registriesConf = [
      '[[registry]]',
      'prefix = "docker.io"',
      'location = "docker.io"',
      '[[registry.mirror]]',
      `location = "${host}"`,
      'insecure = true',
      '',
      '[[registry]]',
      `prefix = "${K8S}"`,
      `location = "${K8S}"`,
      '[[registry.mirror]]',
      `location = "${host}/${K8S}"`,
      'insecure = true',
      '',
    ].join('\n');
    // No internet here: a pull that succeeds came through the mirror.
    assert.equal((await pull(`docker://${K8S}/team/tool:1`, { registriesConf })).manifest.digest, second.tool.manifestDigest);
    assert.equal((await pull('docker://docker.io/team/tool:1', { registriesConf })).manifest.digest, hub.tool.manifestDigest);
    const paths = mirror.logLines().map((line) => line.path);
    assert.ok(paths.includes(`/v2/${K8S}/team/tool/manifests/1`), "the mirror location's path was prepended");
  });

  it('containerd (ctr images pull --hosts-dir) through ?ns=docker.io and ?ns=registry.k8s.io', async (t) => {
    if (!requireBinary('containerd', t) || !requireBinary('ctr', t)) return;
    let containerd: Containerd | undefined;
    try {
      containerd = await startContainerd();
      const hosts = { 'docker.io': `http://${host}`, [K8S]: `http://${host}` };
      world.proxy.reset();
      assert.equal(await containerd.pull(`${K8S}/team/tool:1`, hosts), second.tool.manifestDigest);
      assert.equal(await containerd.pull('docker.io/team/tool:1', hosts), hub.tool.manifestDigest);
      assert.equal(await containerd.pull('docker.io/library/app:1', hosts), hub.app.manifestDigest);
      const asked = mirror.logLines().filter((line) => typeof line.path === 'string' && line.userAgent?.startsWith('containerd'));
      assert.ok(asked.some((line) => line.path === `/v2/team/tool/manifests/1?ns=${K8S}` && line.status === 200), 'containerd asked with ?ns=registry.k8s.io');
      assert.ok(asked.some((line) => line.path.endsWith('?ns=docker.io') && line.status === 200), 'and with ?ns=docker.io');
    } finally {
      await containerd?.stop();
    }
  });

  it('answers an unknown ns or registry with 404 NAME_UNKNOWN at once, no content; echoes OCI-Namespace', async () => {
    for (const url of [`/v2/team/tool/manifests/1?ns=quay.io`, `/v2/quay.io/team/tool/manifests/1`, `/v2/team/tool/blobs/${hub.tool.layerDigests[0]}?ns=ghcr.io`]) {
      const response = await fetch(`http://${host}${url}`);
      assert.equal(response.status, 404, url);
      assert.equal((await response.json()).errors[0].code, 'NAME_UNKNOWN', url);
      assert.equal(response.headers.get('docker-content-digest'), null, url);
    }
    const k8sNs = await fetch(`http://${host}/v2/team/tool/manifests/1?ns=${K8S}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(k8sNs.status, 200);
    assert.equal(k8sNs.headers.get('docker-content-digest'), second.tool.manifestDigest);
    assert.equal(k8sNs.headers.get('oci-namespace'), K8S);
    for (const alias of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      const hubNs = await fetch(`http://${host}/v2/team/tool/manifests/1?ns=${alias}`, { method: 'HEAD' });
      assert.equal(hubNs.headers.get('docker-content-digest'), hub.tool.manifestDigest, alias);
    }
  });

  it('keeps everything named per registry on disk; a blob both serve is stored once', async () => {
    const root = mirror.root;
    const tag = (dir: string) => readFileSync(path.join(root, dir, 'team/tool/_tags/1'), 'utf8').trim();
    assert.equal(tag('repositories'), hub.tool.manifestDigest);
    assert.equal(tag(`registries/${K8S}/repositories`), second.tool.manifestDigest);
    const [algorithm, hex] = shared.digest.split(':');
    assert.ok(existsSync(path.join(root, 'blobs', algorithm, hex.slice(0, 2), hex)));
    assert.ok(existsSync(path.join(root, 'repositories/team/tool/_layers', algorithm, hex)));
    assert.ok(existsSync(path.join(root, `registries/${K8S}/repositories/team/tool/_layers`, algorithm, hex)));
  });

  it("never sends one remote's credentials to another (Authorization headers counted per upstream)", () => {
    const hubAuthorized = world.proxy.requests.filter((request) => request.authorization).length;
    assert.ok(hubAuthorized > 0, 'the Docker-Hub-like upstream gets its Bearer tokens');
    assert.deepEqual(k8sProxy.requests.filter((request) => request.authorization), [], 'the registry without auth never sees an Authorization header');
    const log = readFileSync(mirror.process.logFile, 'utf8');
    assert.ok(!log.includes(K8S_ACCOUNT.password) && !log.includes(MIRROR_ACCOUNT.password), 'no password in the log');
  });

  it("with the first upstream down, the second's images still pull, warm and cold", async () => {
    world.proxy.setFault({ kind: 'reset', match: () => true });
    try {
      assert.equal((await pull(`docker://${host}/${K8S}/team/tool:1`)).manifest.digest, second.tool.manifestDigest, 'warm');
      assert.equal((await pull(`docker://${host}/k8s/team/cold:1`)).manifest.digest, second.cold.manifestDigest, 'cold');
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it("resumes an interrupted blob download by each registry's own proxy.resume", async () => {
    const [hubLayer] = hub.fresh.layerDigests;
    const [k8sLayer] = second.fresh.layerDigests;
    world.proxy.setFault({ kind: 'drop-after', bytes: 4096, match: (method, p) => method === 'GET' && p.includes(hubLayer), times: 1 });
    k8sProxy.setFault({ kind: 'drop-after', bytes: 4096, match: (method, p) => method === 'GET' && p.includes(k8sLayer), times: 1 });
    try {
      const resumed = await fetch(`http://${host}/v2/team/fresh/blobs/${hubLayer}`);
      assert.equal(resumed.status, 200);
      assert.equal(await sha256OfBody(resumed), hubLayer, 'the default remote resumes (3 retries)');
      // The second registry gives up at once (retries: 0): a broken transfer, never a clean end.
      await assert.rejects(async () => {
        const broken = await fetch(`http://${host}/v2/k8s/team/fresh/blobs/${k8sLayer}`);
        await broken.arrayBuffer();
      });
      assert.equal(mirror.logLines().filter((line) => line.message === 'upstream transfer interrupted; resuming' && line.digest === k8sLayer).length, 0);
      assert.equal(mirror.logLines().filter((line) => line.message === 'upstream transfer interrupted; resuming' && line.digest === hubLayer).length, 1);
    } finally {
      world.proxy.setFault(undefined);
      k8sProxy.setFault(undefined);
    }
  });

  it("readiness: any registry's upstream down is reported, advisory; the instance stays ready (cached images still pull)", async () => {
    const ready = async () => {
      const response = await fetch(`http://${host}/health/ready`);
      return { status: response.status, body: (await response.json()) as { checks: Record<string, { ok: boolean; advisory?: true }> } };
    };
    const healthy = await ready();
    assert.equal(healthy.status, 200);
    assert.deepEqual(healthy.body.checks[`upstream:${K8S}`], { ...healthy.body.checks[`upstream:${K8S}`], ok: true, advisory: true });
    k8sProxy.setFault({ kind: 'reset', match: () => true });
    try {
      const degraded = await ready();
      assert.equal(degraded.status, 200, 'still ready: only the second registry\'s images are affected');
      assert.equal(degraded.body.checks[`upstream:${K8S}`].ok, false);
      assert.equal(degraded.body.checks.upstream.ok, true);
    } finally {
      k8sProxy.setFault(undefined);
    }
    world.proxy.setFault({ kind: 'reset', match: () => true });
    try {
      const hubDown = await ready();
      assert.equal(hubDown.status, 200, 'the default remote down: still ready, its cached images pull');
      assert.deepEqual(hubDown.body.checks.upstream, { ...hubDown.body.checks.upstream, ok: false, advisory: true });
    } finally {
      world.proxy.setFault(undefined);
    }
  });

  it('/api/status and `pullmirror stats` give figures per registry', async () => {
    const status = (await (await fetch(`http://${host}/api/status`)).json()) as { registries: { namespace: string; default: boolean; prefix?: string; url: string; store: { repositories: number } }[] };
    const byName = new Map(status.registries.map((registry) => [registry.namespace, registry]));
    assert.equal(byName.get('docker.io')?.default, true);
    assert.equal(byName.get(K8S)?.prefix, 'k8s');
    assert.equal(byName.get(K8S)?.url, k8sProxy.url);
    const stats = JSON.parse(await pullmirror('stats', '--json', mirror.configFile)) as { repositories: number; registries: Record<string, { repositories: number; tags: number }> };
    assert.ok(stats.registries[K8S].repositories >= 3, JSON.stringify(stats.registries));
    const metrics = await (await fetch(`http://${host}/metrics`)).text();
    for (const registry of ['docker.io', K8S]) {
      assert.match(metrics, new RegExp(`pullmirror_cache_requests_total\\{kind="manifest",result="(hit|miss)",registry="${registry.replaceAll('.', '\\.')}"\\} [1-9]`), registry);
      assert.match(metrics, new RegExp(`pullmirror_upstream_request_duration_seconds_count\\{registry="${registry.replaceAll('.', '\\.')}",method="(GET|HEAD)"`), registry);
    }
    assert.ok(stats.registries[''].repositories >= 2, JSON.stringify(stats.registries));
    assert.equal(stats.repositories, stats.registries[''].repositories + stats.registries[K8S].repositories);
  });

  it('`pullmirror warm registry.k8s.io/team/warmed:1` warms the second registry through the mirror', async () => {
    await pullmirror('warm', '--mirror', `http://${host}`, `${K8S}/team/warmed:1`);
    const tagFile = path.join(mirror.root, `registries/${K8S}/repositories/team/warmed/_tags/1`);
    assert.equal(readFileSync(tagFile, 'utf8').trim(), second.warmed.manifestDigest);
  });

  it("evicts by each registry's ttl: gc walks registries/ too", async () => {
    // proxy.ttl is 168h, the second registry's 1h: two hours on, only the second's images expire.
    const out = await pullmirror('gc', '--dry-run', '--now', '+2h', mirror.configFile);
    const manifests = out.split('\n').filter((line) => line.startsWith('would remove manifest '));
    assert.ok(manifests.length >= 3, out);
    assert.ok(manifests.every((line) => line.startsWith(`would remove manifest ${K8S}/`)), out);
    assert.ok(manifests.some((line) => line.startsWith(`would remove manifest ${K8S}/team/tool@${second.tool.manifestDigest}`)), out);
  });
});

describe('many registries: a store written before several registries is served after the upgrade', { skip: missingBinaries }, () => {
  let world: World;
  const work = tempDir('pullmirror-upgrade');

  before(async () => {
    world = await startWorld();
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  it('serves the old repositories/<name> tree with no upstream request, and adds remotes beside it', async () => {
    const image = await pushImage(world.registry.url, PUSHER, { name: 'library/old', tag: '1', layers: [randomLayer('old-0', 16 * 1024)], format: 'docker' });
    const root = path.join(work.path, 'store');
    // The release before: one upstream, no namespace, no remotes.
    const before = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root });
    const dest = path.join(work.path, 'first');
    await skopeoCopy(`docker://127.0.0.1:${before.port}/library/old:1`, `dir:${dest}`);
    await before.stop();
    const [, hex] = image.manifestDigest.split(':');
    assert.ok(existsSync(path.join(root, 'repositories/library/old/_manifests/sha256', hex)), 'the layout the release wrote');
    assert.ok(existsSync(path.join(root, 'repositories/library/old/_tags/1')));
    // After the upgrade, with remotes and docker.io as the namespace, the upstream down: all from the store.
    const upgraded = await startMirror({
      remoteurl: world.proxy.url,
      ...MIRROR_ACCOUNT,
      root,
      config: { proxy: { namespace: 'docker.io', remotes: [{ namespace: 'quay.io', remoteurl: 'http://127.0.0.1:9' }] } },
    });
    try {
      world.proxy.reset();
      world.proxy.setFault({ kind: 'reset', match: () => true });
      const again = await readDirImage(await (async () => {
        const out = path.join(work.path, 'again');
        await skopeoCopy(`docker://127.0.0.1:${upgraded.port}/library/old:1`, `dir:${out}`);
        return out;
      })());
      assert.equal(again.manifest.digest, image.manifestDigest);
      const downloads = world.proxy.requests.filter((request) => request.method === 'GET' && /\/(blobs|manifests)\//.test(request.path));
      assert.deepEqual(downloads, [], 'nothing downloaded again (not even tried)');
    } finally {
      world.proxy.setFault(undefined);
      await upgraded.stop();
    }
  });
});
