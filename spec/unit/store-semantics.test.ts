/**
 * The blob, manifest, tag and link semantics, written once over the storage driver
 * (src/storage/blob-store.ts, manifest-store.ts, repository-links.ts, store-id.ts), on the
 * in-memory driver: what the filesystem and S3 drivers hold the same way (each passes the
 * driver conformance suite), checked here without a disk or a bucket. The spool is a real
 * local directory, as on every driver.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDigest } from '../../src/registry/digest.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { BlobStore } from '../../src/storage/blob-store.ts';
import { FilesystemDriver } from '../../src/storage/driver/filesystem-driver.ts';
import { MemoryDriver } from '../../src/storage/driver/memory-driver.ts';
import type { StorageDriver } from '../../src/storage/driver/storage-driver.ts';
import { HASH_OFF_THREAD_BYTES } from '../../src/storage/file-hasher.ts';
import { ManifestStore } from '../../src/storage/manifest-store.ts';
import { StoreKeys } from '../../src/storage/paths.ts';
import { readStoreId, storeId } from '../../src/storage/store-id.ts';
import { collector } from '../support/collect.ts';
import { seededBytes, sha256Digest } from '../support/images.ts';
import { tempDir } from '../support/processes.ts';

describe('the store semantics over a driver (in-memory)', () => {
  const dir = tempDir('pullmirror-semantics');
  const spool = path.join(dir.path, 'spool');
  after(() => dir.cleanup());

  function stores() {
    const driver = new MemoryDriver();
    const blobs = new BlobStore({ driver, tempDir: spool });
    return { driver, blobs, manifests: new ManifestStore(blobs) };
  }

  async function write(blobs: BlobStore, bytes: Buffer, digest: string) {
    const writer = await blobs.createWriter(parseDigest(digest));
    for (let at = 0; at < bytes.length; at += 256 * 1024) await writer.writev([bytes.subarray(at, at + 256 * 1024)]);
    return writer;
  }

  for (const [label, size] of [['small', 100_000], ['large (hashed by the worker)', HASH_OFF_THREAD_BYTES * 2 + 77]] as const) {
    it(`${label}: a wrong digest or size never becomes visible at the blob's key`, async () => {
      const { driver, blobs } = stores();
      const bytes = seededBytes(`semantics-${label}`, size);
      const digest = sha256Digest(bytes);

      const wrong = sha256Digest(Buffer.concat([bytes, Buffer.from('x')]));
      const bad = await write(blobs, bytes, wrong);
      await assert.rejects(bad.commit(), (error: unknown) => error instanceof RegistryError && error.code === 'DIGEST_INVALID');
      assert.equal(await driver.stat(StoreKeys.blob(parseDigest(wrong))), undefined, 'nothing at the wrong digest');

      const short = await write(blobs, bytes.subarray(0, bytes.length - 1), digest);
      await assert.rejects(short.commit(bytes.length), (error: unknown) => error instanceof RegistryError && error.code === 'SIZE_INVALID');
      assert.equal(await driver.stat(StoreKeys.blob(parseDigest(digest))), undefined, 'nothing for a short write');

      const good = await write(blobs, bytes, digest);
      assert.deepEqual(await good.commit(bytes.length), { digest, size: bytes.length });
      assert.equal((await driver.stat(StoreKeys.blob(parseDigest(digest))))?.size, bytes.length);
      assert.deepEqual(readdirSync(spool), [], 'the spool holds nothing once the commits are over');
    });
  }

  it('a blob is visible only once verified: not while it is written, nor between verify and persist', async () => {
    const { driver, blobs } = stores();
    const bytes = seededBytes('semantics-visible', 50_000);
    const digest = parseDigest(sha256Digest(bytes));
    const writer = await blobs.createWriter(digest);
    await writer.write(bytes);
    assert.equal(await blobs.stat({ digest }), undefined, 'written, not committed');
    await writer.verify(bytes.length);
    assert.equal(await driver.stat(StoreKeys.blob(digest)), undefined, 'verified, not yet persisted');
    await writer.persist();
    assert.equal((await blobs.stat({ digest }))?.size, bytes.length);
  });

  it('small content (putSmall) is stored only when it matches its digest', async () => {
    const { blobs } = stores();
    const bytes = Buffer.from('{"schemaVersion":2}');
    const digest = parseDigest(sha256Digest(bytes));
    const other = parseDigest(sha256Digest(Buffer.from('something else')));
    await assert.rejects(blobs.putSmall(other, bytes), (error: unknown) => error instanceof RegistryError && error.code === 'DIGEST_INVALID');
    assert.equal(await blobs.stat({ digest: other }), undefined);
    await blobs.putSmall(digest, bytes);
    assert.deepEqual(await blobs.readSmall(digest), bytes);
  });

  it('a committed blob is served whole and by ranges', async () => {
    const { blobs } = stores();
    const bytes = seededBytes('semantics-ranges', 300_000);
    const digest = parseDigest(sha256Digest(bytes));
    await (await write(blobs, bytes, digest.value)).commit(bytes.length);
    for (const range of [undefined, { start: 0, end: 0 }, { start: 1000, end: 1999 }, { start: bytes.length - 10, end: bytes.length - 1 }]) {
      const blob = await blobs.open({ digest });
      assert.ok(blob);
      assert.equal(blob.size, bytes.length);
      const { res, body } = collector();
      await blob.send(res, range);
      assert.deepEqual(body(), range ? bytes.subarray(range.start, range.end + 1) : bytes, JSON.stringify(range));
    }
    const missing = parseDigest(sha256Digest(Buffer.from('not stored')));
    assert.equal(await blobs.open({ digest: missing }), undefined);
  });

  it('deletes a blob: gone for stat and open, and a second delete says there was none', async () => {
    const { blobs } = stores();
    const bytes = Buffer.from('to be deleted');
    const digest = parseDigest(sha256Digest(bytes));
    await blobs.putSmall(digest, bytes);
    assert.equal(await blobs.delete(digest), true);
    assert.equal(await blobs.stat({ digest }), undefined);
    assert.equal(await blobs.open({ digest }), undefined);
    assert.equal(await blobs.delete(digest), false);
  });

  it('counts the free space of the local spool where the medium has no limit (every blob is written there first)', async () => {
    const { driver, blobs } = stores();
    assert.equal((await driver.usage()).freeBytes, undefined, 'the in-memory medium tells no limit');
    const free = await blobs.freeBytes();
    assert.ok(free !== undefined && free > 0, `free bytes of the spool's disk: ${free}`);
  });

  it("links manifests per repository: one repository's link does not serve another's", async () => {
    const { manifests } = stores();
    const layer = sha256Digest(Buffer.from('a layer'));
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [{ digest: layer, size: 7 }] }));
    const descriptor = { digest: sha256Digest(bytes), size: bytes.length, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
    const digest = parseDigest(descriptor.digest);
    await manifests.put('library/a', descriptor, bytes);

    assert.deepEqual(await manifests.getLink('library/a', digest), descriptor);
    assert.equal(await manifests.getLink('library/b', digest), undefined, 'another repository');
    assert.equal(await manifests.getLink('quay.io/library/a', digest), undefined, 'the same name on another registry');
    assert.deepEqual(await manifests.read(digest), bytes, 'the content is stored once, by digest');
    assert.equal(await manifests.links.hasBlob('library/a', parseDigest(layer)), true, "the manifest's blobs are linked with it");
    assert.equal(await manifests.links.hasBlob('library/b', parseDigest(layer)), false);
    assert.deepEqual(await manifests.linkedManifests('library/a', 10), [descriptor]);
    assert.deepEqual(await manifests.linkedManifests('library/b', 10), []);
  });

  it('replaces a tag whole: a reader sees the old digest or the new, never a part or nothing', async () => {
    const { manifests } = stores();
    const first = sha256Digest(Buffer.from('first'));
    const second = sha256Digest(Buffer.from('second'));
    await manifests.writeTag('library/a', 'latest', first, undefined);
    const seen = new Set<string | undefined>();
    let writing = true;
    const reader = (async () => {
      while (writing) seen.add(await manifests.readTag('library/a', 'latest'));
    })();
    for (let i = 0; i < 200; i++) {
      const [next, previous] = i % 2 === 0 ? [second, first] : [first, second];
      await manifests.writeTag('library/a', 'latest', next, previous);
    }
    writing = false;
    await reader;
    assert.equal(await manifests.readTag('library/a', 'latest'), first);
    for (const value of seen) assert.ok(value === first || value === second, `read ${value}`);
    assert.equal(await manifests.readTag('library/b', 'latest'), undefined, "another repository's tag");
  });

  it('reads what is not a link or tag this store wrote as absent', async () => {
    const { driver, manifests } = stores();
    const digest = parseDigest(sha256Digest(Buffer.from('x')));
    await driver.putContent(StoreKeys.manifestLink('library/a', digest), 'not json');
    assert.equal(await manifests.getLink('library/a', digest), undefined);
    await driver.putContent(StoreKeys.manifestLink('library/b', digest), Buffer.alloc(64 * 1024, 0x20));
    assert.equal(await manifests.getLink('library/b', digest), undefined, 'far larger than a link');
  });

});

/**
 * The store id over both drivers, with the interleaving a write-then-read-back loses: both
 * instances find no id, one writes and reads its own back, then the other writes. The second
 * write is held until the first instance has its id (the timing is forced, not hoped for).
 */
describe('the store id of a new store', () => {
  const dir = tempDir('pullmirror-store-id');
  after(() => dir.cleanup());

  function interleaving(driver: StorageDriver): { driver: StorageDriver; firstHasItsId(): void } {
    let reads = 0;
    let writes = 0;
    let bothRead!: () => void;
    const bothHaveRead = new Promise<void>((resolve) => (bothRead = resolve));
    let firstHasItsId!: () => void;
    const firstDone = new Promise<void>((resolve) => (firstHasItsId = resolve));
    const held = Object.create(driver) as StorageDriver;
    held.getContent = async (key, maxBytes) => {
      const content = await driver.getContent(key, maxBytes);
      if (++reads === 2) bothRead();
      return content;
    };
    const write = async <T>(run: () => Promise<T>): Promise<T> => {
      const order = writes++;
      await (order === 0 ? bothHaveRead : firstDone);
      return run();
    };
    held.putContent = (key, content) => write(() => driver.putContent(key, content));
    if (driver.putContentIfAbsent) held.putContentIfAbsent = (key, content) => write(() => driver.putContentIfAbsent!(key, content));
    return { driver: held, firstHasItsId };
  }

  const drivers: [string, () => StorageDriver][] = [
    ['in-memory', () => new MemoryDriver()],
    [
      'filesystem',
      () => {
        const root = mkdtempSync(path.join(dir.path, 'store-'));
        return new FilesystemDriver({ root, tempDir: path.join(root, '_tmp', 'test') });
      },
    ],
  ];
  for (const [name, make] of drivers) {
    it(`${name}: two instances starting together agree on one id, and keep it`, async () => {
      const held = interleaving(make());
      const driver = held.driver;
      const first = storeId(driver).then((id) => {
        held.firstHasItsId();
        return id;
      });
      const second = storeId(driver);
      const [a, b] = await Promise.all([first, second]);
      assert.match(a ?? '', /^[0-9a-f]{16}$/);
      assert.equal(b, a);
      assert.equal(await storeId(driver), a);
      assert.equal(await readStoreId(driver), a);
    });
  }
});
