/**
 * Client configs the mirror generates, used as they are by real clients: containerd reads the
 * hosts.toml tree `client-config containerd --out` wrote, skopeo the registries.conf and
 * registries.d `client-config podman --out` wrote, dockerd the daemon.json `client-config
 * docker` printed. The mirror serves two registries: docker.io (its default remote, the Docker-Hub-like upstream of
 * every e2e test) and ghcr.io (a second docker-registry, without auth). Both hold `team/tool:1`
 * with different content, so a digest tells which registry an image came from. The real
 * registries do not resolve here (no internet; containerd and dockerd have a closed proxy), so a
 * pull that succeeds came through the mirror, and the mirror's access log shows it did.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { startContainerd, type Containerd } from '../support/containerd.ts';
import { startDockerd, type Dockerd } from '../support/dockerd.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import { runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { startOpenRegistry, type RegistryServer } from '../support/registry.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GHCR = 'ghcr.io';
const KINDS = ['docker', 'containerd', 'podman'] as const;

/** `pullmirror ARGS`, whatever its exit status. */
const pullmirror = (...args: string[]) => runPullmirror(args);

/** `pullmirror client-config ARGS`, which must succeed: its stdout. */
async function generate(...args: string[]): Promise<string> {
  const run = await pullmirror('client-config', ...args);
  assert.equal(run.code, 0, `client-config ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

describe('client-config command', () => {
  const config = path.join(ROOT, 'deploy/config.yml');

  it('exits 2 with one line naming the mistake: unknown kind (listing the kinds), no or a bad --mirror', async () => {
    const unknown = await pullmirror('client-config', 'kubernetes', '--mirror', 'http://mirror.example:5000', config);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr, 'pullmirror client-config: unknown client kind "kubernetes": one of docker, containerd, podman (see pullmirror client-config --help)\n');
    const none = await pullmirror('client-config', 'docker', config);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--mirror URL is required/);
    const withPath = await pullmirror('client-config', 'podman', '--mirror', 'http://mirror.example:5000/v2/', config);
    assert.equal(withPath.code, 2);
    assert.match(withPath.stderr, /^pullmirror client-config: --mirror: mirror URL "http:\/\/mirror\.example:5000\/v2\/": has a path \(\/v2\/\)/);
    const secret = await pullmirror('client-config', 'podman', '--mirror', 'https://ops:hunter2@mirror.example', config);
    assert.equal(secret.code, 2);
    assert.ok(!secret.stderr.includes('hunter2'), secret.stderr);
    assert.equal((await pullmirror('client-config', 'docker', '--mirror', 'http://m:5000', '--bogus')).code, 2);
    const help = await pullmirror('client-config', '--help');
    assert.equal(help.code, 0);
    assert.equal(help.stderr, '', '--help reads no config');
    assert.match(help.stdout, /^usage: pullmirror client-config docker\|containerd\|podman --mirror URL/);
    assert.match(help.stdout, /--config-path DIR .*\(default: the --out DIR, else \/etc\/containerd\/certs\.d\)/);
    assert.match((await pullmirror('--help')).stdout, /client-config KIND --mirror URL/);
  });

  it('--out writes each file below DIR, the same bytes it prints', async () => {
    const out = tempDir('pullmirror-client-config-out');
    try {
      const printed = await generate('containerd', '--mirror', 'http://mirror.example:5000', config);
      const run = await pullmirror('client-config', 'containerd', '--mirror', 'http://mirror.example:5000', '--out', out.path, config);
      assert.equal(run.code, 0, run.stderr);
      const file = path.join(out.path, 'docker.io', 'hosts.toml');
      assert.equal(run.stdout, `${file}\n`, 'it says what it wrote');
      // The same bytes as printed with --config-path DIR: the files name the DIR they are in.
      const printedForOut = await generate('containerd', '--mirror', 'http://mirror.example:5000', '--config-path', out.path, config);
      assert.equal(`# ${file}\n${readFileSync(file, 'utf8')}`, printedForOut);
      assert.notEqual(printedForOut, printed);
      // The note says where containerd must look: DIR, not the default /etc/containerd/certs.d.
      assert.match(run.stderr, new RegExp(`config_path = "${out.path}".*--hosts-dir ${out.path}$`, 'm'));
      assert.doesNotMatch(run.stderr, /\/etc\/containerd\/certs\.d/);
      assert.deepEqual(readdirSync(path.join(out.path, 'docker.io')), ['hosts.toml'], 'no temporary file left beside it');
    } finally {
      await out.cleanup();
    }
  });
});

describe('client configs generated by the mirror, used by real clients', { skip: missingBinaries }, () => {
  let world: World;
  let second: RegistryServer;
  let mirror: RunningMirror;
  let host: string;
  const work = tempDir('pullmirror-client-config');
  const hub: Record<string, PushedImage> = {};
  const ghcr: Record<string, PushedImage> = {};

  before(async () => {
    world = await startWorld();
    second = await startOpenRegistry();
    hub.tool = await pushImage(world.registry.url, PUSHER, { name: 'team/tool', tag: '1', layers: [randomLayer('cc-hub-tool', 24 * 1024)], format: 'docker' });
    hub.app = await pushImage(world.registry.url, PUSHER, { name: 'library/app', tag: '1', layers: [randomLayer('cc-hub-app', 16 * 1024)], format: 'docker' });
    ghcr.tool = await pushImage(second.url, undefined, { name: 'team/tool', tag: '1', layers: [randomLayer('cc-ghcr-tool', 20 * 1024)], format: 'oci' });
    assert.notEqual(hub.tool.manifestDigest, ghcr.tool.manifestDigest);
    mirror = await world.startMirror({
      config: { proxy: { namespace: 'docker.io', remotes: [{ namespace: GHCR, remoteurl: second.url, prefix: 'ghcr' }] } },
    });
    host = `127.0.0.1:${mirror.port}`;
  });

  after(async () => {
    await world?.close();
    await second?.stop();
    await work.cleanup();
  });

  /** The mirror's access lines for `path` (exactly) that a client whose user agent starts with `agent` sent. */
  const served = (agent: RegExp, predicate: (path: string) => boolean) =>
    mirror.logLines().filter((line) => line.message === 'request' && typeof line.path === 'string' && agent.test(String(line.userAgent)) && predicate(line.path) && line.status === 200);

  it('/api/client-config/<kind> answers byte for byte what the CLI prints for the same config and URL', async () => {
    const types = { docker: 'application/json', containerd: 'text/plain', podman: 'text/plain' };
    for (const kind of KINDS) {
      const cli = await generate(kind, '--mirror', mirror.url, mirror.configFile);
      // Without ?mirror= the URL is the one this request reached the mirror by.
      const derived = await fetch(`${mirror.url}/api/client-config/${kind}`);
      assert.equal(derived.status, 200, kind);
      assert.equal(derived.headers.get('content-type')?.split(';')[0], types[kind], kind);
      assert.equal(await derived.text(), cli, `${kind}: derived from the request`);
      const other = 'https://mirror.example.internal';
      const given = await fetch(`${mirror.url}/api/client-config/${kind}?mirror=${encodeURIComponent(other)}`);
      assert.equal(await given.text(), await generate(kind, '--mirror', other, mirror.configFile), `${kind}: ?mirror=`);
    }
    const unknown = await fetch(`${mirror.url}/api/client-config/kubernetes`);
    assert.equal(unknown.status, 404);
    assert.match((await unknown.json()).error, /kinds: docker, containerd, podman/);
  });

  it('with auth.htpasswd, answers authenticated clients only, as /api/status (anonymous pulls or not)', async () => {
    const user = { username: 'ops', password: 'ops-secret-1357' };
    const htpasswd = path.join(work.path, 'htpasswd');
    writeFileSync(htpasswd, `${user.username}:${bcrypt.hashSync(user.password, 4)}\n`);
    const guarded = await world.startMirror({ config: { auth: { htpasswd: { path: htpasswd, anonymouspull: true } } } });
    const url = `${guarded.url}/api/client-config/podman`;
    const anonymous = await fetch(url);
    assert.equal(anonymous.status, 401);
    assert.equal((await fetch(`${guarded.url}/api/status`)).status, 401, 'the same as the status figures');
    const authorization = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;
    const wrong = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`${user.username}:nope`).toString('base64')}` } });
    assert.equal(wrong.status, 401);
    const allowed = await fetch(url, { headers: { authorization } });
    assert.equal(allowed.status, 200);
    assert.equal(await allowed.text(), await generate('podman', '--mirror', guarded.url, guarded.configFile));
  });

  it('names every registry the mirror serves', async () => {
    const containerd = await generate('containerd', '--mirror', mirror.url, mirror.configFile);
    assert.deepEqual(
      [...containerd.matchAll(/^# (.*)$/gm)].map((match) => match[1]),
      ['/etc/containerd/certs.d/docker.io/hosts.toml', `/etc/containerd/certs.d/${GHCR}/hosts.toml`],
    );
    const podman = await generate('podman', '--mirror', mirror.url, mirror.configFile);
    assert.deepEqual([...podman.matchAll(/^prefix = "(.*)"$/gm)].map((match) => match[1]), ['docker.io', GHCR]);
  });

  it('containerd: ctr images pull --hosts-dir with the tree `client-config containerd --out` wrote, for each registry', async (t) => {
    if (!requireBinary('containerd', t) || !requireBinary('ctr', t)) return;
    const hostsDir = path.join(work.path, 'certs.d');
    await generate('containerd', '--mirror', mirror.url, '--out', hostsDir, mirror.configFile);
    let containerd: Containerd | undefined;
    try {
      containerd = await startContainerd();
      assert.equal(await containerd.pullWithHostsDir('docker.io/team/tool:1', hostsDir), hub.tool.manifestDigest);
      assert.equal(await containerd.pullWithHostsDir('docker.io/library/app:1', hostsDir), hub.app.manifestDigest);
      assert.equal(await containerd.pullWithHostsDir(`${GHCR}/team/tool:1`, hostsDir), ghcr.tool.manifestDigest);
      assert.ok(served(/^containerd/, (p) => p === '/v2/team/tool/manifests/1?ns=docker.io').length > 0, 'docker.io through the mirror, by ?ns=docker.io');
      assert.ok(served(/^containerd/, (p) => p === `/v2/team/tool/manifests/1?ns=${GHCR}`).length > 0, `${GHCR} through the mirror, by ?ns=${GHCR}`);
      assert.ok(served(/^containerd/, (p) => p.startsWith(`/v2/team/tool/blobs/${ghcr.tool.layerDigests[0]}?ns=${GHCR}`)).length > 0, 'and its layer');
    } finally {
      await containerd?.stop();
    }
  });

  it('skopeo: copies docker.io and ghcr.io names with the files `client-config podman --out` wrote', async () => {
    const containers = path.join(work.path, 'containers');
    await generate('podman', '--mirror', mirror.url, '--out', containers, mirror.configFile);
    const registriesConf = readFileSync(path.join(containers, 'registries.conf.d', 'pullmirror.conf'), 'utf8');
    const registriesD = Object.fromEntries(readdirSync(path.join(containers, 'registries.d')).map((file) => [file, readFileSync(path.join(containers, 'registries.d', file), 'utf8')]));
    assert.deepEqual(Object.keys(registriesD), [`${host}.yaml`]);
    const pull = async (ref: string) => {
      const dest = path.join(work.path, `skopeo-${ref.replace(/[^a-z0-9]/gi, '_')}`);
      await skopeoCopy(`docker://${ref}`, `dir:${dest}`, { registriesConf, registriesD });
      return (await readDirImage(dest)).manifest.digest;
    };
    assert.equal(await pull('docker.io/library/app:1'), hub.app.manifestDigest);
    assert.equal(await pull('docker.io/team/tool:1'), hub.tool.manifestDigest);
    assert.equal(await pull(`${GHCR}/team/tool:1`), ghcr.tool.manifestDigest);
    // The mirror's root for docker.io, its /ghcr.io/ path for the other registry: what the generated locations say.
    assert.ok(served(/^skopeo/, (p) => p === '/v2/library/app/manifests/1').length > 0, 'docker.io/library/app through the mirror');
    assert.ok(served(/^skopeo/, (p) => p === `/v2/${GHCR}/team/tool/manifests/1`).length > 0, `${GHCR} through the mirror, by its path`);
    assert.ok(served(/^skopeo/, (p) => p === `/v2/${GHCR}/team/tool/blobs/${ghcr.tool.layerDigests[0]}`).length > 0, 'and its layer');
  });

  it('dockerd: started with the daemon.json `client-config docker` printed, pulls a docker.io image, and the other registry by name', async (t) => {
    if (!requireBinary('dockerd', t) || !requireBinary('docker', t)) return;
    const generated = await pullmirror('client-config', 'docker', '--mirror', mirror.url, mirror.configFile);
    assert.equal(generated.code, 0, generated.stderr);
    assert.deepEqual(JSON.parse(generated.stdout), { 'registry-mirrors': [mirror.url], 'insecure-registries': [host] });
    const pullByName = `${host}/${GHCR}/team/tool:1`;
    assert.ok(generated.stderr.includes(`docker pull ${host}/${GHCR}/OWNER/IMAGE:TAG`), generated.stderr);
    let dockerd: Dockerd | undefined;
    try {
      dockerd = await startDockerd({ daemonJson: generated.stdout });
      const { stdout } = await dockerd.docker(['pull', 'team/tool:1']);
      assert.match(stdout, new RegExp(`Digest: ${hub.tool.manifestDigest}`), stdout);
      assert.ok(served(/^docker\//, (p) => p === `/v2/team/tool/manifests/${hub.tool.manifestDigest}` || p === '/v2/team/tool/manifests/1').length > 0, 'through the mirror');
      // What the notes say for a registry dockerd does not mirror.
      const byName = await dockerd.docker(['pull', pullByName]);
      assert.match(byName.stdout, new RegExp(`Digest: ${ghcr.tool.manifestDigest}`), byName.stdout);
    } finally {
      await dockerd?.stop();
    }
  });
});
