import { LRUCache } from 'lru-cache';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import type { DescriptorCache } from './descriptor-cache.ts';

/** The embedded default: an LRU of descriptors in this process. */
export class MemoryDescriptorCache implements DescriptorCache {
  private readonly entries: LRUCache<string, BlobDescriptor>;

  constructor(maxEntries: number) {
    this.entries = new LRUCache({ max: maxEntries });
  }

  async get(digest: string): Promise<BlobDescriptor | undefined> {
    const entry = this.entries.get(digest);
    return entry && { ...entry };
  }

  async set(descriptor: BlobDescriptor): Promise<void> {
    this.entries.set(descriptor.digest, { ...descriptor });
  }

  async delete(digest: string): Promise<void> {
    this.entries.delete(digest);
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}
