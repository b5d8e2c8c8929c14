/**
 * The one suite every DescriptorCache implementation passes (as distribution's cachecheck):
 * run it with a factory that gives a fresh, empty cache.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DescriptorCache } from '../../src/cache/descriptor-cache.ts';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha512:${'c'.repeat(128)}`;

export function descriptorCacheSuite(name: string, create: () => Promise<DescriptorCache>): void {
  describe(`descriptor cache: ${name}`, () => {
    let cache: DescriptorCache;
    before(async () => {
      cache = await create();
    });
    after(async () => {
      await cache?.close();
    });

    it('answers undefined for a digest it was never told about', async () => {
      assert.equal(await cache.get(`sha256:${'0'.repeat(64)}`), undefined);
    });

    it('gives back what was set, media type included when known', async () => {
      await cache.set({ digest: A, size: 1234 });
      await cache.set({ digest: B, size: 0, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      await cache.set({ digest: C, size: 2 ** 40 + 7 });
      assert.deepEqual(await cache.get(A), { digest: A, size: 1234 });
      assert.deepEqual(await cache.get(B), { digest: B, size: 0, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      assert.deepEqual(await cache.get(C), { digest: C, size: 2 ** 40 + 7 }, 'sizes beyond 32 bits survive');
    });

    it('replaces a descriptor set again, dropping a media type no longer given', async () => {
      await cache.set({ digest: A, size: 1, mediaType: 'x/y' });
      await cache.set({ digest: A, size: 99 });
      assert.deepEqual(await cache.get(A), { digest: A, size: 99 });
    });

    it('forgets a deleted digest and leaves the others; deleting twice is harmless', async () => {
      await cache.set({ digest: A, size: 5 });
      await cache.set({ digest: B, size: 6 });
      await cache.delete(A);
      await cache.delete(A);
      assert.equal(await cache.get(A), undefined);
      assert.deepEqual(await cache.get(B), { digest: B, size: 6 });
    });

    it('hands out copies: changing a returned descriptor changes nothing cached', async () => {
      const descriptor = { digest: B, size: 42 };
      await cache.set(descriptor);
      descriptor.size = 1;
      const got = await cache.get(B);
      assert.ok(got);
      got.size = 2;
      assert.deepEqual(await cache.get(B), { digest: B, size: 42 });
    });
  });
}
