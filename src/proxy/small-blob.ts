import type { Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { digestOf, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { isStoreUnwritable, type BlobStore } from '../storage/blob-store.ts';
import { StorageDriverError } from '../storage/driver/storage-driver.ts';
import { upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { Remote } from '../upstream/remotes.ts';

/**
 * Small blobs the mirror itself must read (a signature's payload): from the store, else
 * fetched whole from upstream within `limit` bytes, verified by digest and stored, so a later
 * check works while upstream is down. Undefined: upstream does not have it.
 */
export class SmallBlobReader {
  private readonly blobs: BlobStore;
  private readonly readOnly: boolean;
  private readonly logger: Logger;

  constructor(options: { blobs: BlobStore; readOnly: boolean; logger: Logger }) {
    this.blobs = options.blobs;
    this.readOnly = options.readOnly;
    this.logger = options.logger;
  }

  async read(remote: Remote, name: string, digest: Digest, limit: number): Promise<Buffer | undefined> {
    // What the store holds was verified before it was committed.
    const stored = await this.blobs.readSmall(digest, limit).catch((error: unknown) => {
      if (error instanceof StorageDriverError && error.fault === 'too-large') throw tooLarge(limit);
      throw error;
    });
    if (stored) return stored;
    const response = await remote.upstream.request({ method: 'GET', path: `/v2/${name}/blobs/${digest.value}`, repository: name });
    if (response.statusCode !== 200) {
      await response.body.dump();
      if (response.statusCode === 404) return undefined;
      throw upstreamStatusError(response, 'BLOB_UNKNOWN');
    }
    const bytes = await readWithin(response.body, limit, () => tooLarge(limit));
    if (digestOf(bytes, digest.algorithm) !== digest.value) {
      throw new RegistryError('DIGEST_INVALID', 'upstream blob does not match its digest', { status: 502, detail: { digest: digest.value } });
    }
    if (!this.readOnly) {
      try {
        await this.blobs.putSmall(digest, bytes);
      } catch (error) {
        if (!isStoreUnwritable(error)) throw error;
        this.logger.warn('store unwritable: blob read uncached', { digest: digest.value, error: (error as Error).message });
      }
    }
    return bytes;
  }
}

function tooLarge(limit: number): RegistryError {
  return new RegistryError('SIZE_INVALID', `blob larger than ${limit} bytes`, { status: 502 });
}

/** A small upstream body, whole; past `limit` bytes the body is dropped and `tooLarge()` thrown. */
export async function readWithin(body: Dispatcher.ResponseData['body'], limit: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
