import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isAttachmentContent } from '../../src/signatures/attachment-content.ts';
import { payloadMismatch, signatureLayers, signingKey } from '../../src/signatures/cosign-signature.ts';
import { makeSigningKey, signatureManifest, signPayload, simpleSigningPayload } from '../support/cosign.ts';
import { tempDir } from '../support/processes.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** The signature policy's reading of cosign's format, against payloads and signatures made by openssl. */
describe("cosign's signature format", () => {
  const dir = tempDir('pullmirror-cosign-unit');
  after(() => dir.cleanup());

  it('takes Docker Hub hosts as one registry and ignores a tag after the repository, as cosign does', () => {
    for (const reference of ['index.docker.io/library/alpine', 'docker.io/library/alpine', 'registry-1.docker.io/library/alpine:3.20']) {
      assert.equal(payloadMismatch(simpleSigningPayload(reference, DIGEST), DIGEST, 'docker.io/library/alpine'), undefined, reference);
    }
    assert.match(payloadMismatch(simpleSigningPayload('index.docker.io/library/busybox', DIGEST), DIGEST, 'docker.io/library/alpine') ?? '', /repository index\.docker\.io\/library\/busybox/);
    assert.match(payloadMismatch(simpleSigningPayload('ghcr.io/library/alpine', DIGEST), DIGEST, 'docker.io/library/alpine') ?? '', /repository/);
    assert.match(payloadMismatch(simpleSigningPayload('docker.io/library/alpine', `sha256:${'b'.repeat(64)}`), DIGEST, 'docker.io/library/alpine') ?? '', /manifest sha256:b/);
    assert.ok(payloadMismatch(Buffer.from('{"critical":{"type":"something else"}}'), DIGEST, 'docker.io/library/alpine'));
  });

  it('finds the signing key among several, for every key type openssl signs with', async () => {
    const keys = await Promise.all((['ecdsa-p256', 'ecdsa-p384', 'rsa', 'ed25519'] as const).map((kind) => makeSigningKey(path.join(dir.path, kind), kind, kind)));
    const trusted = keys.map((key) => ({ name: key.kind, key: createPublicKey(key.publicKeyPem) }));
    const payload = simpleSigningPayload('docker.io/library/alpine', DIGEST);
    for (const key of keys) {
      const signature = await signPayload(key, payload);
      assert.equal(signingKey(payload, signature, trusted)?.name, key.kind);
      assert.equal(signingKey(Buffer.concat([payload, Buffer.from(' ')]), signature, trusted), undefined, `${key.kind}: another payload`);
      assert.equal(signingKey(payload, signature, trusted.filter((t) => t.name !== key.kind)), undefined, `${key.kind}: no other key verifies it`);
    }
    const manifest = signatureManifest(DIGEST, [{ payload, signature: await signPayload(keys[0], payload) }]);
    const [layer] = signatureLayers(manifest.bytes);
    assert.equal(layer.size, payload.length);
    assert.equal(signingKey(payload, layer.signature, trusted)?.name, 'ecdsa-p256');
  });

  it('tells attachments (exempt from the policy) from runnable images', () => {
    const payload = simpleSigningPayload('docker.io/library/alpine', DIGEST);
    assert.equal(isAttachmentContent(signatureManifest(DIGEST, [{ payload, signature: Buffer.from('x') }]).bytes), true, "cosign's .sig");
    const descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: DIGEST, size: 1 };
    assert.equal(isAttachmentContent(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...descriptor, artifactType: 'application/spdx+json' }] }))), true, 'a referrers index');
    const image = { schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json' }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }] };
    assert.equal(isAttachmentContent(Buffer.from(JSON.stringify(image))), false, 'an image');
    assert.equal(isAttachmentContent(Buffer.from(JSON.stringify({ ...image, artifactType: 'application/x-anything' }))), false, 'an image calling itself an artifact');
    assert.equal(isAttachmentContent(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...descriptor, platform: { os: 'linux', architecture: 'amd64' } }] }))), false, 'an image index');
    assert.equal(isAttachmentContent(Buffer.from('not json')), false);
  });
});
