import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { attachArtifactToImage } from '@sigstore/oci';
import { RegistryClient } from '@sigstore/oci/dist/registry.js';
import { pushBlob, pushImage, randomLayer, registryFetch, sha256Digest, type PushedImage } from '../support/images.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const INDEX = 'application/vnd.oci.image.index.v1+json';
const SBOM = 'application/vnd.example.sbom.v1+json';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }[];
}

/*
 * The OCI 1.1 referrers API through the mirror, with a real OCI 1.1 client (@sigstore/oci, the
 * library npm's provenance uses) seeding referrers and probing the API. distribution 2.8 (the
 * test hub) has no referrers API, so @sigstore/oci keeps the referrers tag schema there; a second
 * mirror whose upstream is the first sees an upstream that has the API.
 */
describe('referrers API: an OCI 1.1 index of what refers to a manifest', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let image: PushedImage;
  let lonely: PushedImage;
  const attached: { digest: string; artifactType: string }[] = [];
  const work = tempDir('pullmirror-referrers');

  async function attach(artifactType: string, content: string) {
    const descriptor = await attachArtifactToImage({
      imageName: `${new URL(world.registry.url).host}/${image.name}`,
      imageDigest: image.manifestDigest,
      artifact: Buffer.from(content),
      mediaType: artifactType,
      annotations: { 'org.example.note': content },
      credentials: PUSHER,
    });
    attached.push({ digest: descriptor.digest, artifactType });
  }

  async function referrers(target: RunningMirror, name: string, digest: string, query = '') {
    const response = await fetch(`${target.url}/v2/${name}/referrers/${digest}${query}`);
    const body = await response.text();
    return { status: response.status, headers: response.headers, body, index: response.status === 200 ? (JSON.parse(body) as Index) : undefined };
  }

  before(async () => {
    world = await startWorld();
    image = await pushImage(world.registry.url, PUSHER, { name: 'library/app', tag: '1', layers: [randomLayer('referred-0')], format: 'oci' });
    lonely = await pushImage(world.registry.url, PUSHER, { name: 'library/lonely', tag: '1', layers: [randomLayer('lonely-0')], format: 'oci' });
    await attach(SBOM, 'sbom one');
    await attach(BUNDLE, 'bundle one');
    mirror = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
  });

  after(async () => {
    world?.proxy.setFault(undefined);
    await world?.close();
    await work.cleanup();
  });

  it('answers 200 with an index built from the referrers tag schema when upstream has no API; @sigstore/oci sees the API', async () => {
    const answer = await referrers(mirror, image.name, image.manifestDigest);
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers.get('content-type'), INDEX);
    assert.equal(answer.index!.mediaType, INDEX);
    assert.equal(answer.index!.schemaVersion, 2);
    assert.deepEqual(
      answer.index!.manifests.map((m) => ({ digest: m.digest, artifactType: m.artifactType })),
      attached.map(({ digest, artifactType }) => ({ digest, artifactType })),
    );
    assert.equal(answer.index!.manifests[0].annotations?.['org.example.note'], 'sbom one');
    assert.equal(await new RegistryClient(`127.0.0.1:${mirror.port}`, image.name).pingReferrers(), true, 'the probe @sigstore/oci makes');
    assert.equal(await new RegistryClient(new URL(world.registry.url).host, image.name).pingReferrers(), false, 'the hub itself has no API');
  });

  it('lists what the tag schema holds, and a real client fetches each referrer it names through the mirror', async () => {
    const tagSchema = `sha256-${image.manifestDigest.slice('sha256:'.length)}`;
    const dest = `${work.path}/tag-schema`;
    // skopeo reads the tag-schema index through the mirror as any tag (its raw manifest is the index).
    await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${image.name}:${tagSchema}`, `dir:${dest}`, { extraArgs: ['--multi-arch', 'index-only'] }).then(
      async () => {
        const saved = await readDirImage(dest);
        const listed = (JSON.parse(saved.manifest.bytes.toString('utf8')) as Index).manifests.map((m) => m.digest);
        assert.deepEqual(listed, (await referrers(mirror, image.name, image.manifestDigest)).index!.manifests.map((m) => m.digest));
      },
      (error: Error) => assert.fail(`skopeo could not read the tag schema through the mirror: ${error.message}`),
    );
    for (const { digest } of attached) {
      const response = await fetch(`${mirror.url}/v2/${image.name}/manifests/${digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      const manifest = (await response.json()) as { subject?: { digest: string } };
      assert.equal(response.status, 200);
      assert.equal(manifest.subject?.digest, image.manifestDigest, 'each referrer names the subject');
    }
  });

  it('filters by artifactType and says so in OCI-Filters-Applied', async () => {
    const answer = await referrers(mirror, image.name, image.manifestDigest, `?artifactType=${encodeURIComponent(BUNDLE)}`);
    assert.equal(answer.status, 200);
    assert.equal(answer.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(answer.index!.manifests.map((m) => m.artifactType), [BUNDLE]);
    const unfiltered = await referrers(mirror, image.name, image.manifestDigest);
    assert.equal(unfiltered.headers.get('oci-filters-applied'), null);
  });

  it('answers an empty index when nothing refers, and 400 DIGEST_INVALID for a bad digest', async () => {
    for (const digest of [lonely.manifestDigest, `sha256:${'0'.repeat(64)}`]) {
      const answer = await referrers(mirror, lonely.name, digest);
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(answer.index!.manifests, []);
    }
    for (const digest of ['sha256:xyz', `sha256:${'A'.repeat(64)}`, 'md5:abc', 'nodigest']) {
      const answer = await referrers(mirror, image.name, digest);
      assert.equal(answer.status, 400, digest);
      assert.equal(JSON.parse(answer.body).errors[0].code, 'DIGEST_INVALID', digest);
    }
    const badName = await referrers(mirror, 'Bad/Name', image.manifestDigest);
    assert.equal(badName.status, 400);
    assert.equal(JSON.parse(badName.body).errors[0].code, 'NAME_INVALID');
  });

  it('pages a long list with Link: rel="next", each referrer once', async () => {
    for (const n of [2, 3, 4]) await attach(SBOM, `sbom ${n}`);
    const seen: string[] = [];
    let next: string | undefined = `/v2/${image.name}/referrers/${image.manifestDigest}?n=2`;
    let pages = 0;
    while (next) {
      const response: Response = await fetch(`${mirror.url}${next}`);
      assert.equal(response.status, 200);
      const index = (await response.json()) as Index;
      assert.ok(index.manifests.length <= 2);
      seen.push(...index.manifests.map((m) => m.digest));
      next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get('link') ?? '')?.[1];
      assert.ok(++pages <= 5, 'the pages end');
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen, attached.map((a) => a.digest));
  });

  it('pages a list longer than 256 by default, and a mirror of the mirror follows the pages', async () => {
    // 300 referrers: artifact manifests with a subject, listed in the tag schema's index as
    // @sigstore/oci would list them (pushed directly: 300 attaches would only be slower).
    const many = await pushImage(world.registry.url, PUSHER, { name: 'library/many', tag: '1', layers: [randomLayer('many-0')], format: 'oci' });
    const empty = await pushBlob(world.registry.url, PUSHER, many.name, Buffer.from('{}'));
    const put = async (reference: string, mediaType: string, bytes: Buffer) => {
      const response = await registryFetch(world.registry.url, PUSHER, many.name, `/v2/${many.name}/manifests/${reference}`, { method: 'PUT', headers: { 'content-type': mediaType }, body: bytes as Uint8Array<ArrayBuffer> });
      assert.equal(response.status, 201, await response.text());
    };
    const descriptors: Index['manifests'] = [];
    for (let i = 0; i < 300; i++) {
      const artifact = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          artifactType: SBOM,
          config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size },
          layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size }],
          subject: { mediaType: many.mediaType, digest: many.manifestDigest, size: many.manifestBytes.length },
          annotations: { 'org.example.index': String(i) },
        }),
      );
      await put(sha256Digest(artifact), 'application/vnd.oci.image.manifest.v1+json', artifact);
      descriptors.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Digest(artifact), size: artifact.length, artifactType: SBOM, annotations: { 'org.example.index': String(i) } });
    }
    await put(`sha256-${many.manifestDigest.slice(7)}`, INDEX, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: descriptors })));

    const collect = async (target: RunningMirror) => {
      const pages: number[] = [];
      const seen: string[] = [];
      let next: string | undefined = `/v2/${many.name}/referrers/${many.manifestDigest}`;
      while (next && pages.length < 10) {
        const response: Response = await fetch(`${target.url}${next}`);
        assert.equal(response.status, 200);
        const index = (await response.json()) as Index;
        pages.push(index.manifests.length);
        seen.push(...index.manifests.map((m) => m.digest));
        next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get('link') ?? '')?.[1];
      }
      return { pages, seen };
    };
    const direct = await collect(mirror);
    assert.deepEqual(direct.pages, [256, 44]);
    assert.deepEqual(direct.seen, descriptors.map((d) => d.digest));
    const front = await startMirror({ remoteurl: mirror.url, config: { proxy: { tagfreshness: '0' } } });
    try {
      const logged = mirror.logLines().length;
      const through = await collect(front);
      assert.deepEqual(through.pages, [256, 44]);
      assert.deepEqual(through.seen, descriptors.map((d) => d.digest));
      const asked = mirror.logLines().slice(logged).map((line) => String(line.path ?? '')).filter((p) => p.includes('/referrers/'));
      assert.ok(asked.some((p) => p.includes('last=')), `the front mirror followed the Link of its upstream: ${asked.join(' ')}`);
    } finally {
      await front.stop();
    }
  });

  it('passes through and caches an upstream that has the API (a mirror of the mirror), and serves it while that upstream is down', async () => {
    const front = await startMirror({ remoteurl: mirror.url, config: { proxy: { tagfreshness: '0' } } });
    try {
      const direct = await referrers(mirror, image.name, image.manifestDigest);
      const logged = mirror.logLines().length;
      const through = await referrers(front, image.name, image.manifestDigest);
      assert.equal(through.status, 200, through.body);
      assert.deepEqual(through.index, direct.index);
      const asked = mirror.logLines().slice(logged).map((line) => String(line.path ?? ''));
      assert.ok(asked.some((p) => p.includes(`/referrers/${image.manifestDigest}`)), `the front mirror used the API: ${asked.join(' ')}`);
      assert.ok(!asked.some((p) => p.includes(`/manifests/sha256-`)), 'and not the tag schema');
      const filtered = await referrers(front, image.name, image.manifestDigest, `?artifactType=${encodeURIComponent(BUNDLE)}`);
      assert.deepEqual(filtered.index!.manifests.map((m) => m.artifactType), [BUNDLE]);
      // The first mirror goes away: the front one answers from what it kept.
      await mirror.process.stop();
      const stale = await referrers(front, image.name, image.manifestDigest);
      assert.equal(stale.status, 200, stale.body);
      assert.deepEqual(stale.index, direct.index);
      assert.equal(stale.headers.get('x-pullmirror-cache'), 'stale');
    } finally {
      await front.stop();
    }
  });

  it('serves the list it kept while the hub is down', async () => {
    // A fresh mirror on the hub, to keep this apart from the chained one stopped above.
    const again = await world.startMirror({ config: { proxy: { tagfreshness: '0' } } });
    const before = await referrers(again, image.name, image.manifestDigest);
    world.proxy.setFault({ kind: 'reset', match: () => true });
    try {
      const during = await referrers(again, image.name, image.manifestDigest);
      assert.equal(during.status, 200, during.body);
      assert.deepEqual(during.index, before.index);
    } finally {
      world.proxy.setFault(undefined);
    }
  });
});
