import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { accessLogCounter } from '../support/access-log.ts';
import { makeSigningKey, signImage, type SigningKey } from '../support/cosign.ts';
import { pushImage, pushIndex, randomLayer, type PushedImage } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { launchChromium, openLoadedPage } from '../support/chromium.ts';
import { requireBinary, tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { blobPath } from '../support/store.ts';
import { missingBinaries, MIRROR_ACCOUNT, PUSHER, startWorld, type World } from './fixtures.ts';

/*
 * proxy.signatures with real parts only: keys and cosign-format signatures made by openssl and
 * pushed by skopeo to the token-authenticated docker-registry (spec/support/cosign.ts), and
 * skopeo pulling through the mirror. What reached the upstream is read from its access log.
 */

describe('signature policy: only images signed with a trusted key pull through the mirror', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  /** The registry as the mirror names it (proxy.remoteurl's host): what a signature's identity must say. */
  let namespace: string;
  const work = tempDir('pullmirror-signatures');
  const keys: Record<'trusted' | 'untrusted' | 'rsa' | 'ed25519' | 'p384', SigningKey> = {} as never;
  const images: Record<string, PushedImage> = {};
  let index: { digest: string };
  let platforms: PushedImage[];

  async function push(name: string, label: string): Promise<PushedImage> {
    images[name] = await pushImage(world.registry.url, PUSHER, { name, tag: '1', layers: [randomLayer(`sig-${label}-0`), randomLayer(`sig-${label}-1`)], format: 'oci' });
    return images[name];
  }

  async function sign(name: string, subject: string, key: SigningKey, identity = `${namespace}/${name}`) {
    await signImage({ registry: new URL(world.registry.url).host, creds: `${PUSHER.username}:${PUSHER.password}`, name, subject, key, reference: identity });
  }

  before(async () => {
    world = await startWorld();
    namespace = new URL(world.proxy.url).host;
    for (const [name, kind] of [['trusted', 'ecdsa-p256'], ['untrusted', 'ecdsa-p256'], ['rsa', 'rsa'], ['ed25519', 'ed25519'], ['p384', 'ecdsa-p384']] as const) {
      keys[name] = await makeSigningKey(path.join(work.path, 'keys'), name, kind);
    }
    await sign('signed/good', (await push('signed/good', 'good')).manifestDigest, keys.trusted);
    await push('signed/unsigned', 'unsigned');
    await sign('signed/wrongkey', (await push('signed/wrongkey', 'wrongkey')).manifestDigest, keys.untrusted);
    await sign('signed/otherid', (await push('signed/otherid', 'otherid')).manifestDigest, keys.trusted, `${namespace}/signed/good`);
    for (const kind of ['rsa', 'ed25519', 'p384'] as const) await sign(`signed/${kind}`, (await push(`signed/${kind}`, kind)).manifestDigest, keys[kind]);
    await push('warned/unsigned', 'warned');
    await push('open/unsigned', 'open');
    // An index signed by its own digest only (cosign sign without --recursive).
    platforms = [
      await pushImage(world.registry.url, PUSHER, { name: 'signed/multi', layers: [randomLayer('sig-multi-amd64')], platform: { os: 'linux', architecture: 'amd64' }, format: 'oci' }),
      await pushImage(world.registry.url, PUSHER, { name: 'signed/multi', layers: [randomLayer('sig-multi-arm64')], platform: { os: 'linux', architecture: 'arm64' }, format: 'oci' }),
    ];
    index = await pushIndex(world.registry.url, PUSHER, { name: 'signed/multi', tag: '1', images: platforms, format: 'oci-index' });
    await sign('signed/multi', index.digest, keys.trusted);
    mirror = await world.startMirror({
      config: {
        proxy: {
          tagfreshness: '0',
          signatures: [
            { repositories: [`${namespace}/signed/**`], keys: [keys.trusted.publicKeyPath, keys.rsa.publicKeyPath, keys.ed25519.publicKeyPem, keys.p384.publicKeyPath] },
            { repositories: [`${namespace}/warned/*`], keys: [keys.trusted.publicKeyPath], mode: 'warn' },
          ],
        },
      },
    });
  });

  after(async () => {
    world?.proxy.setFault(undefined);
    await world?.close();
    await work.cleanup();
  });

  async function pull(target: RunningMirror, ref: string, options: { all?: boolean } = {}) {
    const dest = path.join(work.path, `${ref.replace(/[^a-z0-9]/gi, '_')}-${Math.random().toString(36).slice(2)}`);
    await skopeoCopy(`docker://127.0.0.1:${target.port}/${ref}`, `dir:${dest}`, { all: options.all });
    return readDirImage(dest);
  }

  /** skopeo's error for a pull the mirror refuses. */
  async function refusedPull(target: RunningMirror, ref: string): Promise<string> {
    const error = await pull(target, ref).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(error, `${ref} must not pull`);
    return error.message;
  }

  /** What a user sees of the image in the mirror's store: its tag, its manifest, its blobs. */
  function storedOf(target: RunningMirror, image: PushedImage) {
    const repo = path.join(target.root, 'repositories', image.name);
    return {
      tag: existsSync(path.join(repo, '_tags', '1')),
      manifestLink: existsSync(path.join(repo, '_manifests', 'sha256', image.manifestDigest.slice(7))),
      blobs: [image.manifestDigest, image.configDigest, ...image.layerDigests].filter((digest) => existsSync(blobPath(target.root, digest))),
    };
  }

  async function manifestStatus(target: RunningMirror, name: string, reference: string) {
    const response = await fetch(`${target.url}/v2/${name}/manifests/${reference}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    return { status: response.status, body: (await response.json()) as { errors?: { code: string; message: string }[] } };
  }

  it('pulls an image signed with a trusted key, by tag and by digest', async () => {
    const pulled = await pull(mirror, 'signed/good:1');
    assert.equal(pulled.manifest.digest, images['signed/good'].manifestDigest);
    const byDigest = await pull(mirror, `signed/good@${images['signed/good'].manifestDigest}`);
    assert.equal(byDigest.manifest.digest, images['signed/good'].manifestDigest);
  });

  it('verifies RSA, Ed25519 (key given as PEM text) and P-384 signatures', async () => {
    for (const kind of ['rsa', 'ed25519', 'p384']) {
      const pulled = await pull(mirror, `signed/${kind}:1`);
      assert.equal(pulled.manifest.digest, images[`signed/${kind}`].manifestDigest, kind);
    }
  });

  it('refuses an unsigned image with 403 DENIED, stores nothing of it and fetches no blob of it upstream', async () => {
    const upstream = accessLogCounter(world.registry.logFile);
    const message = await refusedPull(mirror, 'signed/unsigned:1');
    assert.match(message, /denied/i);
    assert.match(message, /no signature/);
    const byDigest = await manifestStatus(mirror, 'signed/unsigned', images['signed/unsigned'].manifestDigest);
    assert.equal(byDigest.status, 403);
    assert.equal(byDigest.body.errors?.[0].code, 'DENIED');
    assert.match(byDigest.body.errors?.[0].message ?? '', /no signature/);
    // Only the repository's public/private verdict (proxy.privaterepos): no tag, manifest or layer link.
    const repo = path.join(mirror.root, 'repositories', 'signed', 'unsigned');
    assert.deepEqual(existsSync(repo) ? readdirSync(repo) : [], existsSync(repo) ? ['_access'] : []);
    assert.deepEqual(storedOf(mirror, images['signed/unsigned']).blobs, []);
    assert.equal(upstream.count('GET', /\/v2\/signed\/unsigned\/blobs\//), 0, 'no blob of a refused image is fetched upstream');
    assert.equal(upstream.count('GET', new RegExp(`/v2/signed/unsigned/manifests/${images['signed/unsigned'].manifestDigest}`)) >= 1, true, 'the manifest was read to be judged');
    const refusals = () => mirror.logLines().filter((line) => line.message === 'signature policy refused a manifest');
    const seen = refusals();
    assert.ok(seen.length > 0);
    assert.equal(seen.at(-1)!.repository, `${namespace}/signed/unsigned`);
    assert.equal(seen.at(-1)!.reason, 'no signature');
    assert.equal((await manifestStatus(mirror, 'signed/unsigned', '1')).status, 403);
    assert.equal(refusals().length, seen.length + 1, 'one log line per refusal');
  });

  it('refuses an image signed with a key the rule does not trust, storing nothing of the image', async () => {
    const upstream = accessLogCounter(world.registry.logFile);
    const message = await refusedPull(mirror, 'signed/wrongkey:1');
    assert.match(message, /wrong key/);
    assert.deepEqual(storedOf(mirror, images['signed/wrongkey']), { tag: false, manifestLink: false, blobs: [] });
    for (const digest of [images['signed/wrongkey'].configDigest, ...images['signed/wrongkey'].layerDigests]) {
      assert.equal(upstream.count('GET', new RegExp(`/blobs/${digest}`)), 0, `no GET of ${digest}`);
    }
  });

  it('refuses an image whose trusted signature names another image', async () => {
    const message = await refusedPull(mirror, 'signed/otherid:1');
    assert.match(message, /other identity/);
    assert.deepEqual(storedOf(mirror, images['signed/otherid']), { tag: false, manifestLink: false, blobs: [] });
  });

  it('lets the platform manifests of a signed index through', async () => {
    const pulled = await pull(mirror, 'signed/multi:1', { all: true });
    assert.equal(pulled.manifest.digest, index.digest);
    assert.equal(pulled.instances.size, 2);
  });

  it('lets a platform manifest through by its signed index in the store, after a restart (or on another instance of the store)', async () => {
    const store = path.join(work.path, 'index-store');
    const policy = { proxy: { tagfreshness: '0', signatures: [{ repositories: [`${namespace}/signed/**`], keys: [keys.trusted.publicKeyPath] }] } };
    const first = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: store, config: policy });
    const listed = await fetch(`${first.url}/v2/signed/multi/manifests/1`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(listed.status, 200);
    await listed.arrayBuffer();
    await first.stop();
    const second = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: store, config: policy });
    try {
      const child = await manifestStatus(second, 'signed/multi', platforms[1].manifestDigest);
      assert.equal(child.status, 200, JSON.stringify(child.body));
    } finally {
      await second.stop();
    }
  });

  it('serves an unsigned image under a warn rule, with a log line; leaves repositories under no rule alone', async () => {
    const logged = mirror.logLines().length;
    const pulled = await pull(mirror, 'warned/unsigned:1');
    assert.equal(pulled.manifest.digest, images['warned/unsigned'].manifestDigest);
    const warned = mirror.logLines().slice(logged).filter((line) => line.message === 'signature policy (warn): serving a manifest enforce would refuse');
    assert.ok(warned.length >= 1);
    assert.equal(warned[0].reason, 'no signature');
    assert.equal((await pull(mirror, 'open/unsigned:1')).manifest.digest, images['open/unsigned'].manifestDigest);
  });

  it('counts what it verified and refused in the metrics, on the status JSON and on the status page', async (t) => {
    const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
    const figure = (result: string) => Number(new RegExp(`pullmirror_signature_checks_total\\{registry="${namespace.replace(/\./g, '\\.')}",result="${result}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    assert.ok(figure('verified') >= 5, metrics.split('\n').filter((l) => l.includes('signature')).join('\n'));
    assert.ok(figure('refused') >= 3);
    assert.ok(figure('warned') >= 1);
    const status = (await (await fetch(`${mirror.url}/api/status`)).json()) as { registries: { signatures: any }[] };
    const signatures = status.registries[0].signatures;
    assert.equal(signatures.rules.length, 2);
    assert.deepEqual(signatures.rules[1], { name: 'proxy.signatures.1', repositories: [`${namespace}/warned/*`], mode: 'warn', keys: [`proxy.signatures.1.keys.0 (${keys.trusted.publicKeyPath})`] });
    assert.ok(signatures.refused >= 3);
    assert.match(signatures.lastRefusal.reason, /no signature|wrong key|other identity/);

    if (!requireBinary('chromium', t)) return;
    const browser = await launchChromium();
    try {
      const page = await openLoadedPage(browser, `${mirror.url}/`);
      const rules = await page.locator('#signature-rules tr').allInnerTexts();
      assert.equal(rules.length, 2, rules.join('\n'));
      assert.match(rules[1], new RegExp(`${namespace.replace(/\./g, '\\.')}\\s+${namespace.replace(/\./g, '\\.')}/warned/\\*\\s+warn\\s+proxy\\.signatures\\.1\\.keys\\.0`));
      const figures = await page.locator('#signature-figures').innerText();
      assert.match(figures, new RegExp(`${signatures.verified} verified, ${signatures.refused} refused, ${signatures.warned} served in warn mode; last (refused|warned): `));
    } finally {
      await browser.close();
    }
  });

  it('while upstream is down serves a digest verified earlier and refuses a cached one never verified', async () => {
    // A mirror without the policy caches an unsigned image; the same store then gets the policy.
    const store = path.join(work.path, 'outage-store');
    const open = await startMirror({ remoteurl: world.proxy.url, ...MIRROR_ACCOUNT, root: store });
    await pull(open, 'signed/unsigned:1');
    await pull(open, 'signed/good:1');
    await open.stop();
    const policed = await startMirror({
      remoteurl: world.proxy.url,
      ...MIRROR_ACCOUNT,
      root: store,
      config: { proxy: { tagfreshness: '0', signatures: [{ repositories: [`${namespace}/signed/**`], keys: [keys.trusted.publicKeyPath] }] } },
    });
    try {
      await pull(policed, 'signed/good:1'); // verified (and its signature cached) while upstream is up
      world.proxy.setFault({ kind: 'reset', match: () => true });
      const pulled = await pull(policed, 'signed/good:1');
      assert.equal(pulled.manifest.digest, images['signed/good'].manifestDigest);
      const message = await refusedPull(policed, 'signed/unsigned:1');
      assert.match(message, /denied/i);
      assert.ok(readdirSync(path.join(store, 'repositories', 'signed', 'unsigned', '_tags')).includes('1'), 'the unverified image is in the store');
    } finally {
      world.proxy.setFault(undefined);
      await policed.stop();
    }
  });
});
