/**
 * The blob writer verifies what it commits, small or large: a large blob's hash is computed
 * off the main thread from the file itself (src/storage/file-hasher.ts), so these tests write
 * past that threshold, resume after a reset, and take a file over as a fleet takeover does.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDigest } from '../../src/registry/digest.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { FilesystemBlobStore } from '../../src/storage/blob-store.ts';
import { HASH_OFF_THREAD_BYTES } from '../../src/storage/file-hasher.ts';
import { StorePaths } from '../../src/storage/paths.ts';
import { seededBytes, sha256Digest } from '../support/images.ts';
import { tempDir } from '../support/processes.ts';

describe('blob writer', () => {
  const dir = tempDir('pullmirror-writer');
  const paths = new StorePaths(dir.path);
  const store = new FilesystemBlobStore(paths, path.join(dir.path, '_tmp', 'test'));
  after(() => dir.cleanup());

  const large = seededBytes('writer-large', HASH_OFF_THREAD_BYTES * 2 + 12345);
  const small = seededBytes('writer-small', 100_000);

  async function write(bytes: Buffer, digest: string, chunk = 256 * 1024) {
    const writer = await store.createWriter(parseDigest(digest));
    for (let at = 0; at < bytes.length; at += chunk) await writer.writev([bytes.subarray(at, at + chunk)]);
    return writer;
  }

  for (const [name, bytes] of [['small (hashed on the main thread)', small], ['large (hashed by the worker)', large]] as const) {
    it(`${name}: commits the right content and refuses a wrong digest or size`, async () => {
      const digest = sha256Digest(bytes);
      const writer = await write(bytes, digest);
      assert.deepEqual(await writer.commit(bytes.length), { digest, size: bytes.length });
      assert.ok(existsSync(paths.blob(parseDigest(digest))));

      const wrong = sha256Digest(Buffer.concat([bytes, Buffer.from('x')]));
      const bad = await write(bytes, wrong);
      await assert.rejects(bad.commit(), (error: unknown) => error instanceof RegistryError && error.code === 'DIGEST_INVALID');
      assert.equal(existsSync(paths.blob(parseDigest(wrong))), false);

      const short = await write(bytes.subarray(0, bytes.length - 1), digest);
      await assert.rejects(short.commit(bytes.length), (error: unknown) => error instanceof RegistryError && error.code === 'SIZE_INVALID');
    });
  }

  it('a reset (upstream could not resume) starts the hash over', async () => {
    const digest = sha256Digest(large);
    const writer = await write(seededBytes('other', HASH_OFF_THREAD_BYTES + 5), digest);
    await writer.reset();
    for (let at = 0; at < large.length; at += 1024 * 1024) await writer.writev([large.subarray(at, at + 1024 * 1024)]);
    assert.equal((await writer.verify(large.length)).digest, digest);
    await writer.persist();
  });

  it("takes over another instance's file and verifies the whole of it", async () => {
    const digest = sha256Digest(large);
    const abandoned = path.join(dir.path, 'abandoned');
    const half = Math.floor(large.length / 2) + 7;
    writeFileSync(abandoned, large.subarray(0, half));
    const writer = await store.resumeWriter(parseDigest(digest), abandoned, 7);
    assert.ok(writer);
    assert.equal(writer.written, half);
    assert.equal(path.basename(writer.path), `sha256-${digest.slice('sha256:'.length)}.7`, 'named after the digest and the epoch');
    await writer.writev([large.subarray(half)]);
    assert.equal((await writer.commit(large.length)).digest, digest);
    // A copy: the other instance's file is neither moved nor changed (it may only be paused).
    assert.deepEqual(readFileSync(abandoned), large.subarray(0, half));
  });

  it('leaves no temporary file behind', () => {
    assert.deepEqual(readdirSync(path.join(dir.path, '_tmp', 'test')), []);
  });
});
