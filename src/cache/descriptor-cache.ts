import type { BlobDescriptor } from '../registry/blob-descriptor.ts';

/**
 * Remembers descriptors of blobs the local store holds, so a warm HEAD or GET need not stat
 * the disk. It only ever speeds things up: a miss or a failure means "ask the store".
 * Implementations: in-process (memory-descriptor-cache.ts) and Redis.
 */
export interface DescriptorCache {
  get(digest: string): Promise<BlobDescriptor | undefined>;
  set(descriptor: BlobDescriptor): Promise<void>;
  delete(digest: string): Promise<void>;
  close(): Promise<void>;
}
