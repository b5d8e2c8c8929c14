/**
 * Who may pull what, TLS and secrets, against the real upstream (docker-registry behind the
 * Docker-Hub-style token server, with a repository it grants only to accounts) and skopeo.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent, fetch as undiciFetch } from 'undici';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { makeTestCa, type TestCa } from '../support/tls.ts';
import { missingBinaries, MIRROR_ACCOUNT, PUSHER, startWorld, type World } from './fixtures.ts';

const ALICE = { username: 'alice', password: 'alice-pass-7f3c9a' };
/** What dockerd sends a mirror that challenges it: the user's Docker Hub login. */
const HUB_LOGIN = { username: 'hubuser', password: 'hub-pass-2b8e1d' };
const REALM = 'pullmirror-test';
const SECURITY_HEADERS = {
  'X-Content-Type-Options': ['nosniff'],
  'X-Frame-Options': ['DENY'],
  'Strict-Transport-Security': ['max-age=63072000'],
};

const basic = (user: { username: string; password: string }) =>
  `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;

function assertSecurityHeaders(response: { headers: { get(name: string): string | null } }, what: string): void {
  for (const [name, [value]] of Object.entries(SECURITY_HEADERS)) assert.equal(response.headers.get(name), value, `${what}: ${name}`);
}

describe('security: authentication, private repositories, TLS, secrets', { skip: missingBinaries }, () => {
  let world: World;
  let authed: RunningMirror;
  let open: RunningMirror;
  let ca: TestCa;
  const work = tempDir('pullmirror-security');
  const images: Record<string, PushedImage> = {};
  let htpasswdLine: string;

  before(async () => {
    world = await startWorld({ privateRepos: ['team/secret'] });
    images.public = await pushImage(world.registry.url, PUSHER, { name: 'library/public', tag: '1.0', layers: [randomLayer('public-0')], format: 'docker' });
    images.secret = await pushImage(world.registry.url, PUSHER, {
      name: 'team/secret',
      tag: '1.0',
      layers: [randomLayer('secret-0', 200 * 1024), randomLayer('secret-1')],
      format: 'oci',
    });
    // htpasswd -B writes $2y$ hashes: the same bcrypt, the prefix distribution's files carry.
    htpasswdLine = `${ALICE.username}:${bcrypt.hashSync(ALICE.password, 6).replace(/^\$2b\$/, '$2y$')}`;
    const htpasswd = path.join(work.path, 'htpasswd');
    writeFileSync(htpasswd, `# users of the test mirror\n${htpasswdLine}\nbroken-line-without-hash\n`);
    const passwordFile = path.join(work.path, 'upstream-password');
    writeFileSync(passwordFile, `${MIRROR_ACCOUNT.password}\n`);
    ca = await makeTestCa(mkdirp(path.join(work.path, 'ca')));
    // The upstream password from a file; the client-facing side with auth, anonymous pulls of
    // public images allowed, TLS, and the mirror logging at debug level.
    authed = await world.startMirror({
      password: undefined,
      config: {
        log: { level: 'debug' },
        proxy: { passwordfile: passwordFile },
        auth: { htpasswd: { realm: REALM, path: htpasswd, anonymouspull: true } },
        http: { headers: SECURITY_HEADERS, tls: { certificate: ca.serverCert, key: ca.serverKey } },
      },
    });
    // No auth at all; the upstream password from the environment.
    open = await world.startMirror({
      password: undefined,
      env: { REGISTRY_PROXY_PASSWORD: MIRROR_ACCOUNT.password },
      config: { log: { level: 'debug' }, http: { headers: SECURITY_HEADERS } },
    });
  });

  after(async () => {
    await world?.close();
    await work.cleanup();
  });

  const tlsAgent = () => new Agent({ connect: { ca: readFileSync(ca.caCert) } });
  /** A request to the TLS mirror, trusting the test CA. */
  async function get(mirror: RunningMirror, urlPath: string, init: { method?: string; headers?: Record<string, string> } = {}) {
    const response = await undiciFetch(`${mirror.url}${urlPath}`, { ...init, dispatcher: mirror.url.startsWith('https:') ? tlsAgent() : undefined });
    const body = Buffer.from(await response.arrayBuffer());
    return { status: response.status, headers: response.headers, body, json: () => JSON.parse(body.toString('utf8')) };
  }

  /** A skopeo pull over TLS, the test CA trusted through a certs dir (as /etc/containers/certs.d). */
  async function pull(mirror: RunningMirror, ref: string, creds?: { username: string; password: string }) {
    const certDir = mkdirp(path.join(work.path, 'certs'));
    copyFileSync(ca.caCert, path.join(certDir, 'ca.crt'));
    const dest = path.join(work.path, `pull-${Math.random().toString(36).slice(2)}`);
    const tls = mirror.url.startsWith('https:');
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${ref}`, `dir:${dest}`, {
      srcCreds: creds ? `${creds.username}:${creds.password}` : undefined,
      srcTlsVerify: tls,
      extraArgs: tls ? ['--src-cert-dir', certDir] : [],
    });
    return readDirImage(dest);
  }

  it('with anonymouspull, answers an anonymous GET /v2/ 200 (a dockerd without a login would fall back to Docker Hub), challenge included', async () => {
    const anonymous = await get(authed, '/v2/');
    assert.equal(anonymous.status, 200);
    assert.equal(anonymous.headers.get('www-authenticate'), `Basic realm="${REALM}"`, 'a client with credentials still learns to send them');
    assertSecurityHeaders(anonymous, '200');
    // Empty credentials (skopeo without any) are anonymous too.
    assert.equal((await get(authed, '/v2/', { headers: { authorization: 'Basic Og==' } })).status, 200);
    const alice = await get(authed, '/v2/', { headers: { authorization: basic(ALICE) } });
    assert.equal(alice.status, 200);
    assertSecurityHeaders(alice, '200');
  });

  it('answers wrong credentials 401 UNAUTHORIZED and never with content', async () => {
    const wrong = [
      { username: ALICE.username, password: 'not-her-password' },
      { username: 'mallory', password: ALICE.password },
      HUB_LOGIN,
    ];
    for (const user of wrong) {
      for (const urlPath of ['/v2/', '/v2/library/public/manifests/1.0', `/v2/library/public/blobs/${images.public.layerDigests[0]}`]) {
        const response = await get(authed, urlPath, { headers: { authorization: basic(user) } });
        assert.equal(response.status, 401, `${user.username} ${urlPath}`);
        assert.equal(response.json().errors[0].code, 'UNAUTHORIZED');
        assert.match(response.headers.get('www-authenticate') ?? '', /^Basic realm=/);
        assert.equal(response.headers.get('docker-content-digest'), null);
        assertSecurityHeaders(response, `401 for ${user.username}`);
      }
    }
  });

  it('lets an anonymous skopeo pull a public image over TLS (test CA in a certs dir)', async () => {
    const pulled = await pull(authed, 'library/public:1.0');
    assert.equal(pulled.manifest.digest, images.public.manifestDigest);
    assert.ok(pulled.blobs.has(images.public.layerDigests[0]));
  });

  it('refuses a private upstream repository to an anonymous client, skopeo included', async () => {
    await assert.rejects(pull(authed, 'team/secret:1.0'), /unauthorized|authentication required|401/i);
    for (const urlPath of ['/v2/team/secret/manifests/1.0', `/v2/team/secret/manifests/${images.secret.manifestDigest}`, `/v2/team/secret/blobs/${images.secret.layerDigests[0]}`, '/v2/team/secret/tags/list']) {
      const response = await get(authed, urlPath);
      assert.equal(response.status, 401, urlPath);
      assert.equal(response.json().errors[0].code, 'UNAUTHORIZED', urlPath);
      assert.equal(response.headers.get('www-authenticate'), `Basic realm="${REALM}"`);
      assertSecurityHeaders(response, urlPath);
    }
  });

  it('serves the private repository to an authenticated skopeo', async () => {
    const pulled = await pull(authed, 'team/secret:1.0', ALICE);
    assert.equal(pulled.manifest.digest, images.secret.manifestDigest);
    for (const digest of [images.secret.configDigest, ...images.secret.layerDigests]) assert.ok(pulled.blobs.has(digest), digest);
    // Now cached: still refused to anonymous clients.
    const again = await get(authed, `/v2/team/secret/manifests/${images.secret.manifestDigest}`);
    assert.equal(again.status, 401);
  });

  it('does not hand a cached private blob to an anonymous client through a public repository', async () => {
    for (const digest of [images.secret.configDigest, ...images.secret.layerDigests]) {
      for (const method of ['GET', 'HEAD']) {
        const response = await get(authed, `/v2/library/public/blobs/${digest}`, { method });
        assert.equal(response.status, 404, `${method} ${digest}`);
        assert.equal(response.headers.get('docker-content-digest'), null, 'no content');
        if (method === 'GET') assert.equal(response.json().errors[0].code, 'BLOB_UNKNOWN');
      }
    }
    // The public repository's own blobs are still served anonymously, from the cache.
    const own = await get(authed, `/v2/library/public/blobs/${images.public.layerDigests[0]}`);
    assert.equal(own.status, 200);
    assert.equal(own.headers.get('x-pullmirror-cache'), 'hit');
  });

  it('ignores credentials sent to a mirror without auth (dockerd sends its Docker Hub login)', async () => {
    const ping = await get(open, '/v2/', { headers: { authorization: basic(HUB_LOGIN) } });
    assert.equal(ping.status, 200);
    assert.equal(ping.headers.get('www-authenticate'), null);
    const manifest = await get(open, '/v2/library/public/manifests/1.0', { headers: { authorization: basic(HUB_LOGIN) } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), images.public.manifestDigest);
    assertSecurityHeaders(manifest, 'open mirror');
    // Nobody is authenticated on a mirror without auth, so private content goes to nobody.
    const secret = await get(open, '/v2/team/secret/manifests/1.0', { headers: { authorization: basic(HUB_LOGIN) } });
    assert.equal(secret.status, 403);
    assert.equal(secret.json().errors[0].code, 'DENIED');
    assertSecurityHeaders(secret, '403');
    const pulled = await pull(open, 'library/public:1.0');
    assert.equal(pulled.manifest.digest, images.public.manifestDigest);
  });

  it('without anonymouspull, refuses every request without credentials, as distribution does', async () => {
    const strict = await world.startMirror({ config: { auth: { htpasswd: { realm: REALM, path: path.join(work.path, 'htpasswd') } } } });
    try {
      for (const urlPath of ['/v2/', '/v2/library/public/manifests/1.0', '/v2/library/public/tags/list', '/v2/nowhere']) {
        const response = await get(strict, urlPath, { headers: { authorization: 'Basic Og==' } });
        assert.equal(response.status, 401, urlPath);
        assert.equal(response.json().errors[0].code, 'UNAUTHORIZED');
        assert.equal(response.headers.get('www-authenticate'), `Basic realm="${REALM}"`);
      }
      const pulled = await pull(strict, 'library/public:1.0', ALICE);
      assert.equal(pulled.manifest.digest, images.public.manifestDigest);
      await assert.rejects(pull(strict, 'library/public:1.0'), /unauthorized|401/i);
    } finally {
      await strict.stop();
    }
  });

  it('keeps the recorded verdicts when upstream cannot be asked: public stays pullable, private stays refused', async () => {
    const offline = await world.startMirror({ remoteurl: 'http://127.0.0.1:9', root: open.root, env: { REGISTRY_PROXY_PASSWORD: MIRROR_ACCOUNT.password } });
    try {
      const cached = await get(offline, '/v2/library/public/manifests/1.0');
      assert.equal(cached.status, 200);
      assert.equal(cached.headers.get('x-pullmirror-cache'), 'stale');
      const secret = await get(offline, '/v2/team/secret/manifests/1.0');
      assert.equal(secret.status, 403);
      assert.equal(secret.json().errors[0].code, 'DENIED');
      const unknown = await get(offline, '/v2/team/never-seen/manifests/1.0');
      assert.equal(unknown.status, 502, 'no verdict, no upstream: the upstream error');
      assert.equal(unknown.json().errors[0].code, 'UPSTREAM_UNAVAILABLE');
      // The outage is worth one warning per repository and window, not one per request.
      for (let i = 0; i < 5; i++) assert.equal((await get(offline, '/v2/library/public/manifests/1.0')).status, 200);
      const warnings = offline.logLines().filter((line) => line.message === 'repository privacy: upstream not asked');
      assert.deepEqual(warnings.map((line) => line.repository).sort(), ['library/public', 'team/never-seen', 'team/secret']);
    } finally {
      await offline.stop();
    }
  });

  it('serves private repositories to anyone when the operator turns protection off', async () => {
    const unprotected = await world.startMirror({ config: { proxy: { privaterepos: { protect: false } } } });
    const pulled = await pull(unprotected, 'team/secret:1.0');
    assert.equal(pulled.manifest.digest, images.secret.manifestDigest);
    await unprotected.stop();
  });

  it('requires a client certificate signed by http.tls.clientcas when set', async () => {
    const mutual = await world.startMirror({
      config: { http: { tls: { certificate: ca.serverCert, key: ca.serverKey, clientcas: [ca.caCert] } } },
    });
    try {
      await assert.rejects(get(mutual, '/v2/'), 'no client certificate: the handshake fails');
      const withCert = await undiciFetch(`${mutual.url}/v2/`, {
        dispatcher: new Agent({ connect: { ca: readFileSync(ca.caCert), cert: readFileSync(ca.clientCert), key: readFileSync(ca.clientKey) } }),
      });
      assert.equal(withCert.status, 200);
      await withCert.arrayBuffer();
      // skopeo takes client.cert / client.key from its certs dir.
      const certDir = mkdirp(path.join(work.path, 'mutual-certs'));
      copyFileSync(ca.caCert, path.join(certDir, 'ca.crt'));
      copyFileSync(ca.clientCert, path.join(certDir, 'client.cert'));
      copyFileSync(ca.clientKey, path.join(certDir, 'client.key'));
      const dest = path.join(work.path, 'mutual-pull');
      await skopeoCopy(`docker://127.0.0.1:${mutual.port}/library/public:1.0`, `dir:${dest}`, { srcTlsVerify: true, extraArgs: ['--src-cert-dir', certDir] });
      assert.equal((await readDirImage(dest)).manifest.digest, images.public.manifestDigest);
      // A verified client certificate authenticates: the private repository is served.
      const secretDest = path.join(work.path, 'mutual-secret');
      await skopeoCopy(`docker://127.0.0.1:${mutual.port}/team/secret:1.0`, `dir:${secretDest}`, { srcTlsVerify: true, extraArgs: ['--src-cert-dir', certDir] });
      assert.equal((await readDirImage(secretDest)).manifest.digest, images.secret.manifestDigest);
      assert.ok(mutual.logLines().some((line) => line.message === 'request' && line.user === 'cert:pullmirror test client'));
    } finally {
      await mutual.stop();
    }
  });

  it('sets the http.headers on the raw answer to a request Node cannot parse', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(open.port, '127.0.0.1', () => socket.write('GARBAGE / HTTP/9.9\r\n\r\n'));
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString('latin1')));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 400 /);
    for (const [name, [value]] of Object.entries(SECURITY_HEADERS)) assert.ok(raw.includes(`\r\n${name}: ${value}\r\n`), name);
  });

  it('answers plain HTTP sent to the TLS port with a 400 saying the port speaks TLS, and keeps serving TLS', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(authed.port, '127.0.0.1', () => socket.write('GET /v2/ HTTP/1.1\r\nHost: mirror\r\n\r\n'));
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString('latin1')));
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 400 Bad Request\r\n/);
    for (const [name, [value]] of Object.entries(SECURITY_HEADERS)) assert.ok(raw.includes(`\r\n${name}: ${value}\r\n`), name);
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
    assert.equal(body.errors[0].code, 'UNSUPPORTED');
    assert.match(body.errors[0].message, /this port speaks TLS/);
    assert.equal((await get(authed, '/v2/', { headers: { authorization: basic(ALICE) } })).status, 200, 'TLS clients unaffected');
  });

  it('never writes a password, a credential header, a hash or a token to its logs (debug level)', () => {
    const secrets = [
      MIRROR_ACCOUNT.password,
      ALICE.password,
      HUB_LOGIN.password,
      Buffer.from(`${ALICE.username}:${ALICE.password}`).toString('base64'),
      Buffer.from(`${MIRROR_ACCOUNT.username}:${MIRROR_ACCOUNT.password}`).toString('base64'),
      Buffer.from(`${HUB_LOGIN.username}:${HUB_LOGIN.password}`).toString('base64'),
      htpasswdLine.split(':')[1],
    ];
    for (const mirror of [authed, open]) {
      const log = readFileSync(mirror.process.logFile, 'utf8');
      assert.ok(log.includes('"level":"debug"'), 'the run logged at debug level');
      for (const secret of secrets) assert.ok(!log.includes(secret), `a secret in ${mirror.process.logFile}`);
      assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(log), 'no JWT in the log');
    }
    // The mirror did fetch tokens and did authenticate clients during this run.
    assert.ok(world.tokens.requests.some((r) => r.account === MIRROR_ACCOUNT.username && r.ok));
    assert.ok(authed.logLines().some((line) => line.message === 'request' && line.user === ALICE.username));
  });
});

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
