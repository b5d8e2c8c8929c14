import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import { parse as parseYaml } from 'yaml';
import { renderClientConfig } from '../../src/client-config/client-config.ts';
import { generateClientConfig, type ClientKind } from '../../src/client-config/generate.ts';
import { parseMirrorUrl, type MirrorUrl } from '../../src/client-config/mirror-url.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { clientConfigRouter } from '../../src/http/client-config-router.ts';
import { freePort } from '../support/processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A mirror of Docker Hub and three more registries: one with an alias, one over plain HTTP, one reached through an internal address. */
const config = loadConfig({
  env: {
    REGISTRY_PROXY_REMOTEURL: 'https://hub-proxy.corp.internal',
    REGISTRY_PROXY_NAMESPACE: 'docker.io',
    REGISTRY_PROXY_REMOTES: [
      '[{namespace: ghcr.io, prefix: ghcr},',
      ' {namespace: "registry.corp:5000", remoteurl: "http://registry.corp:5000"},',
      ' {namespace: quay.io, remoteurl: "https://quay-cache.corp.internal"}]',
    ].join(''),
  },
});

function mirror(text: string): MirrorUrl {
  const parsed = parseMirrorUrl(text);
  assert.ok(parsed.ok, `${text}: ${parsed.ok ? '' : parsed.error}`);
  return parsed.url;
}

const text = (kind: ClientKind, cfg: Config = config, url = 'http://mirror.example:5000') => renderClientConfig(generateClientConfig(kind, cfg, mirror(url)));

describe('client configs: the generators', () => {
  it('containerd: one hosts.toml per registry, the mirror first, the registry the image names as server', () => {
    assert.equal(
      text('containerd'),
      [
        '# /etc/containerd/certs.d/docker.io/hosts.toml',
        'server = "https://registry-1.docker.io"',
        '',
        '[host."http://mirror.example:5000"]',
        '  capabilities = ["pull", "resolve"]',
        '',
        '# /etc/containerd/certs.d/ghcr.io/hosts.toml',
        'server = "https://ghcr.io"',
        '',
        '[host."http://mirror.example:5000"]',
        '  capabilities = ["pull", "resolve"]',
        '',
        '# /etc/containerd/certs.d/registry.corp:5000/hosts.toml',
        'server = "http://registry.corp:5000"',
        '',
        '[host."http://mirror.example:5000"]',
        '  capabilities = ["pull", "resolve"]',
        '',
        // The mirror reaches quay.io through a cache the clients need not know: their fallback is quay.io itself.
        '# /etc/containerd/certs.d/quay.io/hosts.toml',
        'server = "https://quay.io"',
        '',
        '[host."http://mirror.example:5000"]',
        '  capabilities = ["pull", "resolve"]',
        '',
      ].join('\n'),
    );
    const generated = generateClientConfig('containerd', config, mirror('https://mirror.example'), { containerdConfigPath: '/etc/containerd/certs.d/' });
    assert.deepEqual(
      generated.files.map((file) => [file.path, file.relative]),
      [
        ['/etc/containerd/certs.d/docker.io/hosts.toml', 'docker.io/hosts.toml'],
        ['/etc/containerd/certs.d/ghcr.io/hosts.toml', 'ghcr.io/hosts.toml'],
        ['/etc/containerd/certs.d/registry.corp:5000/hosts.toml', 'registry.corp:5000/hosts.toml'],
        ['/etc/containerd/certs.d/quay.io/hosts.toml', 'quay.io/hosts.toml'],
      ],
    );
    assert.match(generated.files[0].content, /^\[host\."https:\/\/mirror\.example"\]$/m, 'an https mirror on its default port');
    for (const file of generated.files) assertTomlShape(file.content);
  });

  it('podman: a [[registry]] per registry, the mirror location naming the registry by its path, insecure only over HTTP', () => {
    assert.equal(
      text('podman'),
      [
        '# /etc/containers/registries.conf.d/pullmirror.conf',
        '[[registry]]',
        'prefix = "docker.io"',
        'location = "registry-1.docker.io"',
        '',
        '[[registry.mirror]]',
        'location = "mirror.example:5000"',
        'insecure = true',
        '',
        '[[registry]]',
        'prefix = "ghcr.io"',
        'location = "ghcr.io"',
        '',
        '[[registry.mirror]]',
        'location = "mirror.example:5000/ghcr.io"',
        'insecure = true',
        '',
        '[[registry]]',
        'prefix = "registry.corp:5000"',
        'location = "registry.corp:5000"',
        'insecure = true',
        '',
        '[[registry.mirror]]',
        'location = "mirror.example:5000/registry.corp:5000"',
        'insecure = true',
        '',
        '[[registry]]',
        'prefix = "quay.io"',
        'location = "quay.io"',
        '',
        '[[registry.mirror]]',
        'location = "mirror.example:5000/quay.io"',
        'insecure = true',
        '',
        '# /etc/containers/registries.d/mirror.example:5000.yaml',
        'docker:',
        '  "mirror.example:5000":',
        '    use-sigstore-attachments: true',
        '',
      ].join('\n'),
    );
    const secure = generateClientConfig('podman', config, mirror('https://mirror.example:8443'));
    const [conf, attachments] = secure.files;
    assert.doesNotMatch(conf.content.split('[[registry]]')[2], /insecure/, 'an https mirror is not insecure');
    assert.match(conf.content, /^location = "mirror\.example:8443\/ghcr\.io"$/m);
    assertTomlShape(conf.content);
    assert.deepEqual(
      secure.files.map((file) => [file.path, file.relative]),
      [
        ['/etc/containers/registries.conf.d/pullmirror.conf', 'registries.conf.d/pullmirror.conf'],
        ['/etc/containers/registries.d/mirror.example:8443.yaml', 'registries.d/mirror.example:8443.yaml'],
      ],
      '--out /etc/containers writes both where podman reads them',
    );
    // containers/image looks registries.d up by the host it pulls from: the mirror's, port included.
    assert.deepEqual(parseYaml(attachments.content), { docker: { 'mirror.example:8443': { 'use-sigstore-attachments': true } } });
    assert.deepEqual(parseYaml(generateClientConfig('podman', config, mirror('https://mirror.example')).files[1].content), { docker: { 'mirror.example': { 'use-sigstore-attachments': true } } });
  });

  it('docker: registry-mirrors for Docker Hub, insecure-registries for pulls by name over HTTP, the rest said in notes', () => {
    const generated = generateClientConfig('docker', config, mirror('http://mirror.example:5000'));
    assert.equal(renderClientConfig(generated), generated.files[0].content, 'daemon.json alone: JSON has no comments');
    assert.deepEqual(JSON.parse(renderClientConfig(generated)), { 'registry-mirrors': ['http://mirror.example:5000'], 'insecure-registries': ['mirror.example:5000'] });
    const notes = generated.notes.join('\n');
    assert.match(notes, /registry-mirrors to docker\.io only/);
    assert.match(notes, /docker pull mirror\.example:5000\/ghcr\.io\/OWNER\/IMAGE:TAG \(or mirror\.example:5000\/ghcr\/OWNER\/IMAGE:TAG\)/);
    assert.match(notes, /docker pull mirror\.example:5000\/registry\.corp:5000\/OWNER\/IMAGE:TAG/);
    assert.match(notes, /docker pull mirror\.example:5000\/quay\.io\/OWNER\/IMAGE:TAG/);

    const secure = generateClientConfig('docker', config, mirror('https://mirror.example'));
    assert.deepEqual(JSON.parse(renderClientConfig(secure)), { 'registry-mirrors': ['https://mirror.example'] }, 'an https mirror needs no insecure-registries');

    const hubOnly = loadConfig({ env: {} });
    const plain = generateClientConfig('docker', hubOnly, mirror('http://mirror.example:5000'));
    assert.equal(renderClientConfig(plain), '{\n  "registry-mirrors": [\n    "http://mirror.example:5000"\n  ]\n}\n');
    assert.deepEqual(plain.notes, [], 'nothing to add for a mirror of Docker Hub alone');
  });

  it('docker: no registry-mirrors when the mirror root serves another registry (Docker Hub names would get its images)', () => {
    const ghcrRoot = loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'https://ghcr.io', REGISTRY_PROXY_REMOTES: '[{namespace: docker.io, remoteurl: "https://registry-1.docker.io"}]' } });
    const generated = generateClientConfig('docker', ghcrRoot, mirror('https://mirror.example'));
    assert.deepEqual(JSON.parse(renderClientConfig(generated)), {});
    assert.match(generated.notes[0], /no registry-mirrors.*serves ghcr\.io here/);
    assert.match(generated.notes.join('\n'), /docker pull mirror\.example\/docker\.io\/OWNER\/IMAGE:TAG/);
    // containerd and podman still reach Docker Hub through the mirror: by ?ns= and by path.
    assert.match(text('containerd', ghcrRoot), /^# \/etc\/containerd\/certs\.d\/docker\.io\/hosts\.toml\nserver = "https:\/\/registry-1\.docker\.io"$/m);
    assert.match(text('podman', ghcrRoot), /prefix = "docker\.io"\nlocation = "registry-1\.docker\.io"\n\n\[\[registry\.mirror\]\]\nlocation = "mirror\.example:5000\/docker\.io"/);
  });

  it('deploy/daemon.json, deploy/containerd-hosts.toml, deploy/registries.conf and deploy/registries.d.yaml are what it prints for deploy/config.yml', () => {
    const shipped = loadConfig({ file: path.join(ROOT, 'deploy/config.yml'), env: {} });
    const url = 'http://pullmirror.example.internal:5000';
    const regenerate = 'regenerate with: pullmirror client-config KIND --mirror http://pullmirror.example.internal:5000 deploy/config.yml';
    assert.equal(readFileSync(path.join(ROOT, 'deploy/daemon.json'), 'utf8'), text('docker', shipped, url), regenerate);
    assert.equal(readFileSync(path.join(ROOT, 'deploy/containerd-hosts.toml'), 'utf8'), text('containerd', shipped, url), regenerate);
    // podman's two files in two formats: one sample each, as it prints each (after the line naming its path).
    const [conf, attachments] = generateClientConfig('podman', shipped, mirror(url)).files;
    assert.equal(
      readFileSync(path.join(ROOT, 'deploy/registries.conf'), 'utf8') + '\n' + readFileSync(path.join(ROOT, 'deploy/registries.d.yaml'), 'utf8'),
      text('podman', shipped, url),
      regenerate,
    );
    assert.equal(readFileSync(path.join(ROOT, 'deploy/registries.conf'), 'utf8'), `# ${conf.path}\n${conf.content}`);
    assert.equal(readFileSync(path.join(ROOT, 'deploy/registries.d.yaml'), 'utf8'), `# ${attachments.path}\n${attachments.content}`);
  });
});

describe('client configs: the mirror URL', () => {
  it('takes an http or https origin, written as clients write it', () => {
    assert.deepEqual(mirror('http://Mirror.Example:5000'), { origin: 'http://mirror.example:5000', host: 'mirror.example:5000', insecure: true });
    assert.deepEqual(mirror('https://mirror.example:443/'), { origin: 'https://mirror.example', host: 'mirror.example', insecure: false });
    assert.deepEqual(mirror('http://[::1]:5000'), { origin: 'http://[::1]:5000', host: '[::1]:5000', insecure: true });
  });

  it('says exactly what is wrong, and never repeats credentials', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['mirror.example:5000', /no scheme; write http:\/\/mirror\.example:5000 or https:\/\/mirror\.example:5000/],
      ['not a url', /no scheme/],
      ['http://mirror example', /not a URL/],
      ['ftp://mirror.example', /scheme ftp is not http or https/],
      ['http://mirror.example:5000/v2', /has a path \(\/v2\)/],
      ['http://mirror.example:5000/ghcr.io', /has a path \(\/ghcr\.io\)/],
      ['http://mirror.example:5000?ns=docker.io', /has a query/],
      ['http://mirror.example:5000/?', /has a query/],
      ['http://mirror.example:5000#top', /has a fragment/],
      ['http://user:s3cret-pw@mirror.example:5000', /has credentials in it/],
      ['http://user:s3cret-pw?@mirror.example:5000', /not a URL/],
      ['http://user:s3cret-pw@mirror.example:5000/x', /"http:\/\/…@mirror\.example:5000\/x": has credentials in it/],
    ];
    for (const [input, expected] of cases) {
      const parsed = parseMirrorUrl(input);
      assert.equal(parsed.ok, false, input);
      if (parsed.ok) continue;
      assert.match(parsed.error, expected, input);
      assert.doesNotMatch(parsed.error, /s3cret-pw|user:/, 'no credentials in the message');
    }
  });
});

describe('client configs: /api/client-config/<kind>', () => {
  const servers: Server[] = [];
  let plain: string;
  let behindProxy: string;

  async function serve(cfg: Config): Promise<string> {
    const app = express();
    app.set('query parser', 'simple');
    app.use(clientConfigRouter(cfg));
    const port = await freePort();
    const server = await new Promise<Server>((resolve) => {
      const listening = app.listen(port, '127.0.0.1', () => resolve(listening));
    });
    servers.push(server);
    return `http://127.0.0.1:${port}`;
  }

  before(async () => {
    plain = await serve(config);
    behindProxy = await serve({ ...config, http: { ...config.http, trustedproxies: ['127.0.0.1'] } });
  });
  after(() => Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve)))));

  it('answers what the CLI prints, typed per kind; the mirror URL from ?mirror=', async () => {
    const types = { docker: 'application/json', containerd: 'text/plain', podman: 'text/plain' };
    for (const kind of ['docker', 'containerd', 'podman'] as const) {
      const response = await fetch(`${plain}/api/client-config/${kind}?mirror=${encodeURIComponent('http://mirror.example:5000')}`);
      assert.equal(response.status, 200, kind);
      assert.equal(response.headers.get('content-type')?.split(';')[0], types[kind], kind);
      assert.equal(await response.text(), text(kind), kind);
    }
  });

  it('derives the mirror URL from the Host header, and the scheme from X-Forwarded-Proto of a trusted proxy only', async () => {
    const ask = async (base: string, headers: Record<string, string>) => (await get(`${base}/api/client-config/podman`, headers)).body;
    assert.equal(await ask(plain, { host: 'mirror.example:5000' }), text('podman'));
    assert.equal(await ask(plain, { host: 'mirror.example:5000', 'x-forwarded-proto': 'https' }), text('podman'), 'an untrusted peer cannot make it https');
    assert.equal(await ask(behindProxy, { host: 'mirror.example', 'x-forwarded-proto': 'https' }), text('podman', config, 'https://mirror.example'));
    const bad = await get(`${plain}/api/client-config/podman`, { host: 'mirror.example:5000:1' });
    assert.equal(bad.status, 400);
    assert.match(JSON.parse(bad.body).error, /Host header: give the mirror URL as \?mirror=/);
  });

  it('lists its files as JSON with ?format=json', async () => {
    const response = await fetch(`${plain}/api/client-config/containerd?format=json&mirror=http://mirror.example:5000`);
    const body = await response.json();
    const generated = generateClientConfig('containerd', config, mirror('http://mirror.example:5000'));
    assert.deepEqual(body, { files: generated.files.map(({ path: file, content }) => ({ path: file, content })), notes: generated.notes });
  });

  it('refuses an unknown kind (404 naming the kinds), a bad ?mirror= or ?format= (400 saying what is wrong)', async () => {
    const unknown = await fetch(`${plain}/api/client-config/kubernetes?mirror=http://mirror.example`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: 'unknown client kind "kubernetes"; kinds: docker, containerd, podman' });
    const badMirror = await fetch(`${plain}/api/client-config/docker?mirror=${encodeURIComponent('http://mirror.example/v2')}`);
    assert.equal(badMirror.status, 400);
    assert.match((await badMirror.json()).error, /has a path \(\/v2\)/);
    const badFormat = await fetch(`${plain}/api/client-config/docker?format=yaml&mirror=http://mirror.example`);
    assert.equal(badFormat.status, 400);
    assert.match((await badFormat.json()).error, /format: expected text/);
  });
});

/** A GET with headers fetch may not set (Host). */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
}

/**
 * The TOML written here is a small subset (comments, [tables] and [[arrays]] of quoted keys,
 * `key = "string"`, `key = true`, `key = ["a", "b"]`): a line outside it is a generator bug.
 */
function assertTomlShape(toml: string): void {
  const str = '"(?:[^"\\\\\\n]|\\\\.)*"';
  const line = new RegExp(`^(|#.*|\\[\\[?[a-z.]+(?:\\.${str})?\\]\\]?|\\s*[a-z_]+ = (?:${str}|true|false|\\[(?:${str}(?:, ${str})*)?\\]))$`);
  for (const row of toml.split('\n')) assert.match(row, line, `not TOML of the generated shape: ${JSON.stringify(row)}`);
}
