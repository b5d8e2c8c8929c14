/**
 * auth.token, distribution's token authentication, as a registry:2 config has it: a second
 * Docker-Hub-style token server (its own key and self-signed certificate, which the mirror gets
 * as rootcertbundle) issues the client tokens; skopeo follows the mirror's Bearer challenge to
 * it. The upstream is the usual world (docker-registry behind its own token server).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { startOpenRegistry, type RegistryServer } from '../support/registry.ts';
import { tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { startTokenServer, type AccessEntry, type TokenServer } from '../support/token-server.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const CAROL = { username: 'carol', password: 'carol-pass-61d0' };
const SERVICE = 'pullmirror.test';
const ISSUER = 'pullmirror-client-token-issuer';
const pull = (name: string): AccessEntry[] => [{ type: 'repository', name, actions: ['pull'] }];

describe('auth.token: Bearer tokens from a token server, as registry:2 takes them', { skip: missingBinaries }, () => {
  let world: World;
  let clientTokens: TokenServer;
  /** Same issuer and service, another key: what a forged or misconfigured server signs. */
  let impostor: TokenServer;
  let mirror: RunningMirror;
  const images: Record<string, PushedImage> = {};
  const work = tempDir('pullmirror-token-auth');

  before(async () => {
    world = await startWorld({ privateRepos: ['team/secret'] });
    for (const name of ['library/app', 'library/other', 'team/secret']) {
      images[name] = await pushImage(world.registry.url, PUSHER, { name, tag: '1.0', layers: [randomLayer(`${name}-0`, 64 * 1024)], format: 'oci' });
    }
    // Pull of library/* needs an account at this server: anonymous tokens carry no pull.
    clientTokens = await startTokenServer({ users: { [CAROL.username]: CAROL.password }, privateRepos: ['library/app', 'library/other'], service: SERVICE, issuer: ISSUER });
    impostor = await startTokenServer({ service: SERVICE, issuer: ISSUER });
    mirror = await world.startMirror({
      config: { auth: { token: { realm: clientTokens.realm, service: SERVICE, issuer: ISSUER, rootcertbundle: clientTokens.certPath, autoredirect: false } } },
    });
  });

  after(async () => {
    await world?.close();
    await clientTokens?.close();
    await impostor?.close();
    await work.cleanup();
  });

  const manifestUrl = (name: string) => `${mirror.url}/v2/${name}/manifests/${images[name].manifestDigest}`;
  const get = (url: string, token?: string) =>
    fetch(url, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  const assertRefused = async (response: Response, error: string | undefined, scope: string | undefined, what: string) => {
    assert.equal(response.status, 401, what);
    const challenge = response.headers.get('www-authenticate') ?? '';
    let expected = `Bearer realm="${clientTokens.realm}",service="${SERVICE}"`;
    if (scope) expected += `,scope="${scope}"`;
    if (error) expected += `,error="${error}"`;
    assert.equal(challenge, expected, `${what}: the challenge`);
    const body = await response.json();
    assert.equal(body.errors[0].code, 'UNAUTHORIZED', `${what}: OCI error body`);
  };

  it('challenges a client without a token as distribution does: the ping without scope, a repository with its pull scope', async () => {
    await assertRefused(await get(`${mirror.url}/v2/`), undefined, undefined, 'GET /v2/');
    await assertRefused(await get(manifestUrl('library/app')), undefined, 'repository:library/app:pull', 'a manifest');
    const basic = await fetch(manifestUrl('library/app'), { headers: { authorization: `Basic ${Buffer.from(`${CAROL.username}:${CAROL.password}`).toString('base64')}` } });
    await assertRefused(basic, undefined, 'repository:library/app:pull', 'Basic credentials are no token');
    const ping = await get(`${mirror.url}/v2/`, clientTokens.issueToken(CAROL.username, []));
    assert.equal(ping.status, 200, 'GET /v2/ with any valid token');
  });

  it('lets skopeo with credentials pull through the mirror: challenge, token from the realm, image', async () => {
    clientTokens.requests.length = 0;
    const dest = path.join(work.path, 'with-creds');
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/library/app:1.0`, `dir:${dest}`, { srcCreds: `${CAROL.username}:${CAROL.password}` });
    const pulled = await readDirImage(dest);
    assert.equal(pulled.manifest.digest, images['library/app'].manifestDigest);
    assert.ok(
      clientTokens.requests.some((r) => r.ok && r.account === CAROL.username && r.scopes.includes('repository:library/app:pull')),
      'skopeo asked the realm for a pull token with its credentials',
    );
  });

  it('refuses skopeo without credentials (its anonymous token grants no pull)', async () => {
    await assert.rejects(
      skopeoCopy(`docker://127.0.0.1:${mirror.port}/library/app:1.0`, `dir:${path.join(work.path, 'no-creds')}`),
      /unauthorized|authentication required|401/i,
    );
  });

  it('refuses a token for another repository, an expired one, one signed by another key, and a tampered one', async () => {
    const other = clientTokens.issueToken(CAROL.username, pull('library/other'));
    await assertRefused(await get(manifestUrl('library/app'), other), 'insufficient_scope', 'repository:library/app:pull', 'a token for library/other');
    assert.equal((await get(manifestUrl('library/other'), other)).status, 200, 'the same token pulls library/other');

    const expired = clientTokens.issueToken(CAROL.username, pull('library/app'), { expiresIn: 300, now: Date.now() - 3_600_000 });
    await assertRefused(await get(manifestUrl('library/app'), expired), 'invalid_token', 'repository:library/app:pull', 'an expired token');

    const forged = impostor.issueToken(CAROL.username, pull('library/app'));
    await assertRefused(await get(manifestUrl('library/app'), forged), 'invalid_token', 'repository:library/app:pull', 'a token signed by another key');

    const [header, , signature] = other.split('.');
    const claims = JSON.parse(Buffer.from(other.split('.')[1], 'base64url').toString('utf8'));
    claims.access = pull('library/app');
    const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    await assertRefused(await get(manifestUrl('library/app'), tampered), 'invalid_token', 'repository:library/app:pull', 'a tampered token');

    const good = clientTokens.issueToken(CAROL.username, pull('library/app'));
    assert.equal((await get(manifestUrl('library/app'), good)).status, 200, 'a good token still works');

    const lines = mirror.logLines();
    const reasons = lines.filter((line) => line.message === 'token refused').map((line) => line.reason);
    assert.deepEqual(reasons.sort(), ['bad signature', 'expired', 'x5c chain not signed by rootcertbundle'], 'each refusal logged with its reason');
    const log = JSON.stringify(lines);
    for (const token of [other, expired, forged, tampered, good]) assert.ok(!log.includes(token.split('.')[2]), 'no token in the logs');
  });

  it('keeps the privacy rule: a repository private upstream only for a token with a subject', async () => {
    const url = manifestUrl('team/secret');
    const anonymous = clientTokens.issueToken(undefined, pull('team/secret'));
    await assertRefused(await get(url, anonymous), 'insufficient_scope', 'repository:team/secret:pull', "an anonymous client's token");
    assert.equal((await get(url, clientTokens.issueToken(CAROL.username, pull('team/secret')))).status, 200, "carol's token");
  });
});

describe('auth.token with several registries: the scope names the registry\'s repository', { skip: missingBinaries }, () => {
  /** The second registry's namespace: an upstream without auth, as registry.k8s.io is (served here from 127.0.0.1). */
  const K8S = 'registry.k8s.io';
  let world: World;
  let k8s: RegistryServer;
  let clientTokens: TokenServer;
  let mirror: RunningMirror;
  const hub: Record<string, PushedImage> = {};
  const second: Record<string, PushedImage> = {};
  const work = tempDir('pullmirror-token-scopes');

  before(async () => {
    world = await startWorld();
    k8s = await startOpenRegistry();
    // `acme/app` on both registries, with different content.
    hub.app = await pushImage(world.registry.url, PUSHER, { name: 'acme/app', tag: '1', layers: [randomLayer('scope-hub-app', 16 * 1024)], format: 'oci' });
    hub.library = await pushImage(world.registry.url, PUSHER, { name: 'library/tool', tag: '1', layers: [randomLayer('scope-hub-tool', 8 * 1024)], format: 'oci' });
    second.app = await pushImage(k8s.url, undefined, { name: 'acme/app', tag: '1', layers: [randomLayer('scope-k8s-app', 16 * 1024)], format: 'oci' });
    assert.notEqual(hub.app.manifestDigest, second.app.manifestDigest);
    // Every pull needs an account at this server: anonymous tokens carry none.
    clientTokens = await startTokenServer({
      users: { [CAROL.username]: CAROL.password },
      privateRepos: ['acme/app', 'library/tool', `${K8S}/acme/app`, 'k8s/acme/app'],
      service: SERVICE,
      issuer: ISSUER,
    });
    mirror = await world.startMirror({
      config: {
        proxy: { namespace: 'docker.io', remotes: [{ namespace: K8S, remoteurl: k8s.url, prefix: 'k8s' }] },
        auth: { token: { realm: clientTokens.realm, service: SERVICE, issuer: ISSUER, rootcertbundle: clientTokens.certPath, autoredirect: false } },
      },
    });
  });

  after(async () => {
    await world?.close();
    await k8s?.stop();
    await clientTokens?.close();
    await work.cleanup();
  });

  /** The scope of the challenge a request without a token gets. */
  async function challengedScope(path: string): Promise<string | undefined> {
    const response = await fetch(`${mirror.url}${path}`);
    assert.equal(response.status, 401, path);
    await response.arrayBuffer();
    return /scope="([^"]*)"/.exec(response.headers.get('www-authenticate') ?? '')?.[1];
  }

  it('asks for the repository with its registry: the same name on two registries is two scopes, however the registry is chosen', async () => {
    const asked = {
      '/v2/acme/app/manifests/1': 'repository:acme/app:pull',
      '/v2/acme/app/manifests/1?ns=docker.io': 'repository:acme/app:pull',
      '/v2/tool/manifests/1': 'repository:library/tool:pull',
      '/v2/acme/app/manifests/1?ns=registry.k8s.io': `repository:${K8S}/acme/app:pull`,
      [`/v2/${K8S}/acme/app/manifests/1`]: `repository:${K8S}/acme/app:pull`,
      '/v2/k8s/acme/app/manifests/1': `repository:${K8S}/acme/app:pull`,
      [`/v2/k8s/acme/app/blobs/${second.app.configDigest}`]: `repository:${K8S}/acme/app:pull`,
    };
    for (const [path, scope] of Object.entries(asked)) assert.equal(await challengedScope(path), scope, path);
  });

  it("a token for one registry's repository pulls nothing of the other's", async () => {
    const manifest = (path: string, token: string) =>
      fetch(`${mirror.url}${path}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json', authorization: `Bearer ${token}` } });
    const hubToken = clientTokens.issueToken(CAROL.username, pull('acme/app'));
    const k8sToken = clientTokens.issueToken(CAROL.username, pull(`${K8S}/acme/app`));
    for (const path of ['/v2/acme/app/manifests/1?ns=registry.k8s.io', '/v2/k8s/acme/app/manifests/1', `/v2/${K8S}/acme/app/manifests/1`]) {
      const refused = await manifest(path, hubToken);
      assert.equal(refused.status, 401, `${path} with a token for Docker Hub's acme/app`);
      assert.match(refused.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
      await refused.arrayBuffer();
      const served = await manifest(path, k8sToken);
      assert.equal(served.status, 200, path);
      assert.equal(served.headers.get('docker-content-digest'), second.app.manifestDigest);
      await served.arrayBuffer();
    }
    const refused = await manifest('/v2/acme/app/manifests/1', k8sToken);
    assert.equal(refused.status, 401, "Docker Hub's acme/app with a token for registry.k8s.io's");
    await refused.arrayBuffer();
    const served = await manifest('/v2/acme/app/manifests/1', hubToken);
    assert.equal(served.headers.get('docker-content-digest'), hub.app.manifestDigest);
    await served.arrayBuffer();
  });

  it('skopeo pulling through the alias asks the token server for the registry\'s repository', async () => {
    clientTokens.requests.length = 0;
    const dest = path.join(work.path, 'alias');
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/k8s/acme/app:1`, `dir:${dest}`, { srcCreds: `${CAROL.username}:${CAROL.password}` });
    assert.equal((await readDirImage(dest)).manifest.digest, second.app.manifestDigest);
    const scopes = clientTokens.requests.filter((r) => r.ok).flatMap((r) => r.scopes);
    // skopeo first asks for the scope it guesses from its own reference (`k8s/acme/app`, a
    // Docker Hub name: that token pulls nothing here), then for the one the challenge names.
    assert.ok(scopes.includes(`repository:${K8S}/acme/app:pull`), `asked: ${JSON.stringify(scopes)}`);
  });
});
