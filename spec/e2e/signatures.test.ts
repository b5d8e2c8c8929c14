/**
 * Cosign-style signatures through the mirror, with real clients: skopeo with registries.d
 * `use-sigstore-attachments: true` looks up `sha256-<hex>.sig` for every image it copies and
 * saves what it finds as `signature-N`. Signatures are made with openssl and pushed with skopeo
 * (spec/support/cosign.ts); what skopeo saved is verified with openssl again.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { makeSigningKey, opensslVerifies, readSavedSignature, readSignatureBlob, SIGSTORE_ATTACHMENTS_EVERYWHERE, signImage, type SigningKey } from '../support/cosign.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import { runPullmirror, type RunningMirror } from '../support/mirror.ts';
import { requireBinary, tempDir, type TempDir } from '../support/processes.ts';
import { startPodman } from '../support/podman.ts';
import { readDirImage, skopeoCopy, type SkopeoCopyOptions } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const PUSH_CREDS = `${PUSHER.username}:${PUSHER.password}`;

describe('signatures: cosign attachments through the mirror', { skip: missingBinaries }, () => {
  let world: World;
  let work: TempDir;
  let key: SigningKey;
  let signed: PushedImage;
  let unsigned: PushedImage;
  let upstreamHost: string;
  /** What skopeo saves of the signature when it copies straight from the upstream. */
  let upstreamSignature: Buffer;

  before(async () => {
    world = await startWorld();
    work = tempDir('pullmirror-signatures');
    upstreamHost = new URL(world.registry.url).host;
    key = await makeSigningKey(work.path);
    signed = await pushImage(world.registry.url, PUSHER, { name: 'library/signed', tag: '1', layers: [randomLayer('signed-0', 20_000)], format: 'oci' });
    unsigned = await pushImage(world.registry.url, PUSHER, { name: 'library/unsigned', tag: '1', layers: [randomLayer('unsigned-0', 20_000)], format: 'oci' });
    await signImage({ registry: upstreamHost, creds: PUSH_CREDS, name: 'library/signed', subject: signed.manifestDigest, key, reference: `${upstreamHost}/library/signed` });
    const direct = await copy(`docker://${upstreamHost}/library/signed:1`, 'direct', { registriesD: { 'all.yaml': SIGSTORE_ATTACHMENTS_EVERYWHERE } });
    upstreamSignature = readFileSync(path.join(direct, 'signature-1'));
  });

  after(async () => {
    await world?.close();
    await work?.cleanup();
  });

  let copies = 0;
  /** skopeo copy SRC dir:…, anonymous for the mirror's sake; the directory it wrote. */
  async function copy(source: string, label: string, options: SkopeoCopyOptions = {}): Promise<string> {
    const dest = path.join(work.path, `copy-${copies++}-${label}`);
    await skopeoCopy(source, `dir:${dest}`, options);
    return dest;
  }

  /** Whether `dir` holds a signature-1 byte for byte the upstream's, that openssl verifies and that names the copied manifest. */
  async function assertUpstreamSignature(dir: string): Promise<void> {
    const saved = readFileSync(path.join(dir, 'signature-1'));
    assert.deepEqual(saved, upstreamSignature, 'signature-1 is byte for byte what skopeo saves from the upstream itself');
    const signature = readSavedSignature(path.join(dir, 'signature-1'));
    assert.equal(await opensslVerifies(key.publicKeyPath, signature.payload, signature.signature), true, 'openssl verifies it with the public key');
    const manifest = (await readDirImage(dir)).manifest;
    assert.equal(JSON.parse(signature.payload.toString('utf8')).critical.image['docker-manifest-digest'], manifest.digest, 'and it signs the manifest copied');
    assert.ok(!existsSync(path.join(dir, 'signature-2')));
  }

  describe('a mirror that remembers tag answers for a while (proxy.tagfreshness 2s)', () => {
    let mirror: RunningMirror;
    before(async () => {
      mirror = await world.startMirror({ config: { proxy: { tagfreshness: '2s' } } });
    });

    it('remembers a 404 for the freshness window, and sees a signature added upstream after it', async () => {
      const sigTag = `sha256-${unsigned.manifestDigest.slice('sha256:'.length)}.sig`;
      const url = `${mirror.url}/v2/library/unsigned/manifests/${sigTag}`;
      const asked = () => world.proxy.count('*', new RegExp(`/manifests/${sigTag}$`));
      const first = await fetch(url);
      assert.equal(first.status, 404);
      assert.equal((await first.json()).errors[0].code, 'MANIFEST_UNKNOWN');
      assert.equal(asked(), 1);
      const again = await fetch(url);
      assert.equal(again.status, 404);
      assert.equal((await again.json()).errors[0].code, 'MANIFEST_UNKNOWN');
      assert.equal(asked(), 1, 'the 404 was remembered: upstream was not asked again within the window');
      const signature = await signImage({ registry: upstreamHost, creds: PUSH_CREDS, name: 'library/unsigned', subject: unsigned.manifestDigest, key, reference: `${upstreamHost}/library/unsigned` });
      const deadline = performance.now() + 15_000;
      let status = 0;
      while (performance.now() < deadline) {
        const response = await fetch(url);
        status = response.status;
        await response.arrayBuffer();
        if (status === 200) {
          assert.equal(response.headers.get('docker-content-digest'), signature.digest);
          break;
        }
        await sleep(250);
      }
      assert.equal(status, 200, 'once the window is over, the signature added upstream is served');
    });
  });

  describe('eviction follows trust', () => {
    it('storage.eviction.keep naming an image keeps its signature; without it the signature goes with the image', async () => {
      const sigTag = `sha256-${signed.manifestDigest.slice(7)}.sig`;
      const config = (keep: string[]) => ({ proxy: { tagfreshness: '0', ttl: '120s' }, storage: { eviction: { grace: '0s', keep } } });
      const attachments = { registriesD: { 'all.yaml': SIGSTORE_ATTACHMENTS_EVERYWHERE } };
      // The default remote is named by its host: the upstream proxy the mirror pulls through.
      const kept = await world.startMirror({ config: config([`${new URL(world.proxy.url).host}/library/signed:1`]) });
      const plain = await world.startMirror({ config: config([]) });
      for (const mirror of [kept, plain]) await copy(`docker://${new URL(mirror.url).host}/library/signed:1`, 'evict', attachments);
      const gc = async (mirror: RunningMirror) => {
        const run = await runPullmirror(['gc', '--dry-run', '--now', '+130s', mirror.configFile]);
        assert.equal(run.code, 0, run.stderr);
        return run.stdout;
      };
      const keptPlan = await gc(kept);
      assert.doesNotMatch(keptPlan, /would remove (tag|manifest) library\/signed/, keptPlan);
      assert.match(keptPlan, /storage\.eviction\.keep holds 2 tags and 2 manifests/, 'the tag and its signature tag, the image and its signature');
      const plainPlan = await gc(plain);
      assert.match(plainPlan, new RegExp(`would remove tag library/signed:${sigTag.replace('.', '\\.')} \\(subject evicted\\)`), plainPlan);
      assert.match(plainPlan, /would remove tag library\/signed:1 \(manifest evicted\)/);
      assert.match(plainPlan, new RegExp(`would remove manifest library/signed@${signed.manifestDigest} \\(ttl`));
    });
  });

  describe('a mirror that asks upstream about every tag (proxy.tagfreshness 0), then loses it', () => {
    let mirror: RunningMirror;
    let mirrorHost: string;
    const attachments = { registriesD: { 'all.yaml': SIGSTORE_ATTACHMENTS_EVERYWHERE } };

    before(async () => {
      mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
      mirrorHost = new URL(mirror.url).host;
    });

    it('skopeo copy by the mirror’s name keeps the signature: byte-identical to the upstream’s, verified by openssl', async () => {
      await assertUpstreamSignature(await copy(`docker://${mirrorHost}/library/signed:1`, 'by-name', attachments));
      assert.ok(world.proxy.count('*', new RegExp(`/library/signed/manifests/sha256-${signed.manifestDigest.slice(7)}\\.sig$`)) > 0, 'the signature came through the mirror');
    });

    /** The files `client-config podman --out` writes for this mirror: the registries.conf drop-in, and registries.d. */
    async function generatedPodmanFiles(): Promise<{ registriesConf: string; registriesD: Record<string, string> }> {
      const containers = path.join(work.path, `containers-${copies++}`);
      const generated = await runPullmirror(['client-config', 'podman', '--mirror', mirror.url, '--out', containers, mirror.configFile]);
      assert.equal(generated.code, 0, generated.stderr);
      return {
        registriesConf: readFileSync(path.join(containers, 'registries.conf.d', 'pullmirror.conf'), 'utf8'),
        registriesD: { [`${mirrorHost}.yaml`]: readFileSync(path.join(containers, 'registries.d', `${mirrorHost}.yaml`), 'utf8') },
      };
    }

    it('skopeo through the registries.conf mirror `client-config podman --out` wrote keeps the signature too; registries.d for the registry alone gets none', async () => {
      const { registriesConf, registriesD } = await generatedPodmanFiles();
      // The image by the name of the registry the mirror stands for (its default remote: the upstream proxy's host).
      const named = `docker://${new URL(world.proxy.url).host}/library/signed:1`;
      const sigPath = `/v2/library/signed/manifests/sha256-${signed.manifestDigest.slice(7)}.sig`;
      const sigServed = () => mirror.logLines().filter((line) => line.message === 'request' && line.path === sigPath && line.status === 200 && /^skopeo/.test(String(line.userAgent))).length;
      const served = sigServed();
      await assertUpstreamSignature(await copy(named, 'registries-conf', { registriesConf, registriesD }));
      assert.ok(sigServed() > served, 'the signature came from the mirror');
      // containers/image looks registries.d up by the host it pulls from, the mirror: an entry for the registry alone is not read.
      const registryOnly = { 'registry.yaml': `docker:\n  "${new URL(world.proxy.url).host}":\n    use-sigstore-attachments: true\n` };
      const unsignedCopy = await copy(named, 'registry-only', { registriesConf, registriesD: registryOnly });
      assert.equal((await readDirImage(unsignedCopy)).manifest.digest, signed.manifestDigest);
      assert.ok(!existsSync(path.join(unsignedCopy, 'signature-1')), 'no signature without the entry for the mirror');
    });

    it('podman pull, by the mirror’s name and through the generated registries.conf mirror, stores the signature: byte-identical, verified by openssl', async (t) => {
      if (!requireBinary('podman', t)) return;
      if (process.getuid?.() !== 0) {
        t.skip('podman runs here as root only (a rootless podman needs subordinate uids)');
        return;
      }
      const { registriesConf, registriesD } = await generatedPodmanFiles();
      for (const [label, ref, options] of [
        ['by name', `${mirrorHost}/library/signed:1`, { registriesD: { 'all.yaml': SIGSTORE_ATTACHMENTS_EVERYWHERE } }],
        ['through the registries.conf mirror', `${new URL(world.proxy.url).host}/library/signed:1`, { registriesConf, registriesD }],
      ] as const) {
        const podman = startPodman(options);
        try {
          const image = await podman.pull(ref);
          assert.equal(image.digest, signed.manifestDigest, label);
          assert.equal(image.signatures.length, 1, `${label}: podman stored one signature`);
          assert.deepEqual(image.signatures[0], upstreamSignature, `${label}: byte for byte what skopeo saves from the upstream`);
          const signature = readSignatureBlob(image.signatures[0]);
          assert.equal(await opensslVerifies(key.publicKeyPath, signature.payload, signature.signature), true, `${label}: openssl verifies it`);
          assert.equal(JSON.parse(signature.payload.toString('utf8')).critical.image['docker-manifest-digest'], image.digest);
        } finally {
          await podman.cleanup();
        }
      }
      const sigPath = `/v2/library/signed/manifests/sha256-${signed.manifestDigest.slice(7)}.sig`;
      // podman says it is containers/image (skopeo says skopeo): both pulls asked the mirror for the signature.
      const byPodman = mirror.logLines().filter((line) => line.message === 'request' && line.path === sigPath && line.status === 200 && /^containers\//.test(String(line.userAgent)));
      assert.ok(byPodman.length >= 2, `${byPodman.length} signature requests from podman`);
    });

    it('upstream stopped: an attachment tag never seen is 404, so skopeo still pulls a cached unsigned image; a cached signature is served stale', async () => {
      // Cached without its attachments: a client that does not look for them pulled it.
      await copy(`docker://${mirrorHost}/library/unsigned:1`, 'unsigned-warm');
      await world.proxy.close();

      const never = await fetch(`${mirror.url}/v2/library/unsigned/manifests/sha256-${unsigned.manifestDigest.slice(7)}.sig`);
      assert.equal(never.status, 404);
      assert.equal((await never.json()).errors[0].code, 'MANIFEST_UNKNOWN');
      for (const suffix of ['', '.att', '.sbom']) {
        const other = await fetch(`${mirror.url}/v2/library/unsigned/manifests/sha256-${unsigned.manifestDigest.slice(7)}${suffix}`);
        assert.equal(other.status, 404, `sha256-<hex>${suffix}`);
        assert.equal((await other.json()).errors[0].code, 'MANIFEST_UNKNOWN');
      }
      const image = await fetch(`${mirror.url}/v2/library/never-pulled/manifests/1`);
      assert.equal(image.status, 502, 'a tag naming an image is still an upstream error');
      await image.arrayBuffer();

      const unsignedCopy = await copy(`docker://${mirrorHost}/library/unsigned:1`, 'unsigned-outage', attachments);
      assert.equal((await readDirImage(unsignedCopy)).manifest.digest, unsigned.manifestDigest);
      assert.ok(!existsSync(path.join(unsignedCopy, 'signature-1')));

      await assertUpstreamSignature(await copy(`docker://${mirrorHost}/library/signed:1`, 'signed-outage', attachments));
      assert.ok(mirror.logLines().some((line) => line.message === 'serving stale tag' && line.tag === `sha256-${signed.manifestDigest.slice(7)}.sig`));
    });
  });
});

