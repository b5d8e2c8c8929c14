import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDigest } from '../../src/registry/digest.ts';
import { validateName, validateTag } from '../../src/registry/names.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { resolveRange } from '../../src/http/range.ts';
import { parseChallenge } from '../../src/upstream/challenge.ts';
import { matchRoute } from '../../src/http/route.ts';
import { attachesTo, attachmentTag, attachmentTagsOf, isAttachmentTag, parseAttachmentTag } from '../../src/registry/attachment-tags.ts';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as RegistryError).code;
  }
  return 'ok';
};

describe('names, tags and digests', () => {
  it('accepts the spec grammar and refuses anything that could escape the store', () => {
    for (const good of ['library/alpine', 'a', 'my-org/my_repo/sub.name', 'a__b', 'x--y']) assert.equal(code(() => validateName(good)), 'ok', good);
    for (const bad of ['..', 'a/../b', '%2e%2e/x', 'Library/alpine', 'a//b', '/a', 'a/', '_a', 'a/.b', 'a'.repeat(256), '']) {
      assert.equal(code(() => validateName(bad)), 'NAME_INVALID', bad);
    }
    assert.equal(code(() => validateTag('v1.2_rc-3')), 'ok');
    for (const bad of ['.hidden', '-x', 'a/b', 'x'.repeat(129)]) assert.equal(code(() => validateTag(bad)), 'TAG_INVALID', bad);
  });

  it('accepts sha256 and sha512 digests in lowercase hex only', () => {
    assert.equal(parseDigest(`sha256:${'a'.repeat(64)}`).hex, 'a'.repeat(64));
    assert.equal(parseDigest(`sha512:${'0'.repeat(128)}`).algorithm, 'sha512');
    assert.equal(code(() => parseDigest(`sha256:${'A'.repeat(64)}`)), 'DIGEST_INVALID');
    assert.equal(code(() => parseDigest(`sha256:${'a'.repeat(63)}`)), 'DIGEST_INVALID');
    // Names of Object.prototype members are not algorithms (a lookup with `in` once said so).
    assert.equal(code(() => parseDigest(`constructor:${'a'.repeat(64)}`)), 'UNSUPPORTED');
    assert.equal(code(() => parseDigest(`sha256:../../${'a'.repeat(58)}`)), 'DIGEST_INVALID');
    assert.equal(code(() => parseDigest('md5:d41d8cd98f00b204e9800998ecf8427e')), 'UNSUPPORTED');
  });
});

describe('Range', () => {
  it('resolves single ranges, refuses unsatisfiable ones, ignores malformed ones', () => {
    assert.deepEqual(resolveRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(resolveRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(resolveRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(resolveRange('bytes=95-200', 100), { start: 95, end: 99 });
    assert.equal(resolveRange('bytes=100-', 100), 'unsatisfiable');
    assert.equal(resolveRange('bytes=-0', 100), 'unsatisfiable');
    assert.equal(resolveRange('bytes=abc', 100), undefined);
    assert.equal(resolveRange('bytes=0-1,5-6', 100), undefined);
    assert.equal(resolveRange('items=0-1', 100), undefined);
    assert.equal(resolveRange(undefined, 100), undefined);
  });

  it('clamps positions too large for a number instead of refusing them', () => {
    assert.deepEqual(resolveRange('bytes=0-99999999999999999999', 100), { start: 0, end: 99 });
    assert.deepEqual(resolveRange('bytes=-99999999999999999999', 100), { start: 0, end: 99 });
    assert.deepEqual(resolveRange('bytes=0000000000000000000001-2', 100), { start: 1, end: 2 });
    assert.equal(resolveRange('bytes=99999999999999999999-', 100), 'unsatisfiable');
  });
});

describe('WWW-Authenticate', () => {
  it('parses Docker Hub’s Bearer challenge, commas inside quotes included', () => {
    const challenge = parseChallenge(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"',
    );
    assert.deepEqual(challenge, {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull,push' },
    });
    assert.equal(parseChallenge('Basic realm="Registry Realm"')?.scheme, 'basic');
    assert.equal(parseChallenge('Negotiate'), undefined);
  });
});

describe('routes', () => {
  it('maps /v2 paths to the pull API', () => {
    assert.deepEqual(matchRoute('/'), { kind: 'base' });
    assert.deepEqual(matchRoute('/library/alpine/manifests/3.20'), { kind: 'manifest', name: 'library/alpine', reference: '3.20' });
    assert.deepEqual(matchRoute('/a/b/blobs/sha256:00'), { kind: 'blob', name: 'a/b', digest: 'sha256:00' });
    assert.deepEqual(matchRoute('/a/blobs/uploads/'), { kind: 'upload', name: 'a' });
    assert.deepEqual(matchRoute('/a/tags/list'), { kind: 'tags', name: 'a' });
    assert.equal(code(() => matchRoute('/a/unknown')), 'NOT_FOUND');
  });
});

describe('attachment tags', () => {
  const sha256 = parseDigest(`sha256:${'ab'.repeat(32)}`);
  const sha512 = parseDigest(`sha512:${'cd'.repeat(64)}`);

  it('reads the referrers tag schema and cosign tags, and nothing else', () => {
    assert.deepEqual(parseAttachmentTag(`sha256-${'ab'.repeat(32)}`), { kind: 'referrers', algorithm: 'sha256', hex: 'ab'.repeat(32) });
    assert.equal(parseAttachmentTag(`sha256-${'ab'.repeat(32)}.sig`)?.kind, 'signature');
    assert.equal(parseAttachmentTag(`sha256-${'ab'.repeat(32)}.att`)?.kind, 'attestation');
    assert.equal(parseAttachmentTag(`sha256-${'ab'.repeat(32)}.sbom`)?.kind, 'sbom');
    for (const image of ['latest', '3.20', `sha256-${'ab'.repeat(31)}`, `sha256-${'AB'.repeat(32)}.sig`, `md5-${'ab'.repeat(32)}`, `sha256-${'ab'.repeat(32)}.sig.x`, `sha256-${'ab'.repeat(32)}.pem`]) {
      assert.equal(parseAttachmentTag(image), undefined, image);
      assert.equal(isAttachmentTag(image), false, image);
    }
  });

  it('names every attachment of a digest, a sha512 truncated to 64 hex as the referrers schema says', () => {
    assert.deepEqual(attachmentTagsOf(sha256), ['', '.sig', '.att', '.sbom'].map((suffix) => `sha256-${'ab'.repeat(32)}${suffix}`));
    assert.equal(attachmentTag(sha512, 'signature'), `sha512-${'cd'.repeat(32)}.sig`);
    for (const tag of [...attachmentTagsOf(sha256), ...attachmentTagsOf(sha512)]) {
      assert.equal(validateTag(tag), tag);
      const parsed = parseAttachmentTag(tag)!;
      assert.equal(attachesTo(parsed, tag.startsWith('sha256') ? sha256.value : sha512.value), true, tag);
      assert.equal(attachesTo(parsed, tag.startsWith('sha256') ? sha512.value : sha256.value), false, tag);
    }
  });
});
