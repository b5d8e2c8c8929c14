import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { DescriptorCache } from '../cache/descriptor-cache.ts';
import type { Logger } from '../logging/logger.ts';
import type { Digest } from '../registry/digest.ts';
import type { BlobDescriptor, FilesystemBlobStore } from '../storage/blob-store.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { BlobFill } from './blob-fill.ts';

/** A blob ready to be sent: from the local store or from a fill in flight. */
export interface BlobSource {
  readonly descriptor: { digest: string; size: number | undefined };
  readonly origin: 'cache' | 'upstream';
  /** Bytes [start, end] inclusive; consumes the source. */
  stream(start?: number, end?: number): Readable;
  /** Releases the source when it is not streamed (HEAD, 304, 416). */
  release(): void;
}

/**
 * The pull-through blob store: serve from disk when the blob is there, else fetch it from
 * upstream once, whatever the number of clients, and stream it to all of them while it is
 * written and verified (see BlobFill).
 */
export class ProxyBlobStore {
  private readonly blobs: FilesystemBlobStore;
  private readonly cache: DescriptorCache;
  private readonly logger: Logger;
  /** Fills in flight by digest; a promise while the upstream request is being made. */
  private readonly fills = new Map<string, Promise<BlobFill>>();

  constructor(options: { blobs: FilesystemBlobStore; cache: DescriptorCache; logger: Logger }) {
    this.blobs = options.blobs;
    this.cache = options.cache;
    this.logger = options.logger;
  }

  get fillsInFlight(): number {
    return this.fills.size;
  }

  /** The descriptor of a blob the local store holds; the cache spares the disk. */
  async localDescriptor(digest: Digest): Promise<BlobDescriptor | undefined> {
    const cached = await this.cachedDescriptor(digest);
    if (cached) return cached;
    const stored = await this.blobs.stat(digest);
    if (stored) await this.remember(stored);
    return stored;
  }

  /** For HEAD: what the blob is, asking upstream (HEAD, no download) only when it is not here. */
  async stat(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<{ size: number | undefined; origin: 'cache' | 'upstream' }> {
    const local = await this.localDescriptor(digest);
    if (local) return { size: local.size, origin: 'cache' };
    const fill = this.fills.get(digest.value);
    if (fill) return { size: (await fill).size, origin: 'upstream' };
    const response = await upstream.request({ method: 'HEAD', path: `/v2/${name}/blobs/${digest.value}`, repository: name });
    await response.body.dump();
    if (response.statusCode !== 200) throw upstreamStatusError(response, 'BLOB_UNKNOWN');
    const length = header(response, 'content-length');
    return { size: length === undefined ? undefined : Number(length), origin: 'upstream' };
  }

  /** Opens a blob for sending: the stored file, or a fill of it (started if none runs). */
  async open(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<BlobSource> {
    const local = await this.openLocal(digest);
    if (local) return local;
    const fill = await this.fillFor(upstream, name, digest);
    return {
      descriptor: { digest: digest.value, size: fill.size },
      origin: 'upstream',
      stream: (start, end) => Readable.from(fill.read(start, end), { objectMode: false }),
      release: () => {},
    };
  }

  private async openLocal(digest: Digest): Promise<BlobSource | undefined> {
    const cached = await this.cachedDescriptor(digest);
    const handle = await this.blobs.open(digest);
    if (!handle) {
      // Deleted behind the cache's back: forget it and fetch again.
      if (cached) await this.forget(digest);
      return undefined;
    }
    let size = cached?.size;
    if (size === undefined) {
      size = (await handle.stat()).size;
      await this.remember({ digest: digest.value, size });
    }
    return localSource(digest.value, size, handle);
  }

  private fillFor(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<BlobFill> {
    const existing = this.fills.get(digest.value);
    if (existing) return existing;
    const starting = this.startFill(upstream, name, digest);
    this.fills.set(digest.value, starting);
    starting.then(
      (fill) => {
        fill.done.then(
          (descriptor) => {
            this.logger.info('blob cached', { digest: digest.value, size: descriptor.size });
            return this.remember(descriptor);
          },
          (error: Error) => this.logger.warn('blob fill failed', { digest: digest.value, error: error.message }),
        ).finally(() => this.fills.delete(digest.value));
      },
      () => this.fills.delete(digest.value),
    );
    return starting;
  }

  private async startFill(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<BlobFill> {
    const response = await upstream.request({ method: 'GET', path: `/v2/${name}/blobs/${digest.value}`, repository: name });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw upstreamStatusError(response, 'BLOB_UNKNOWN');
    }
    const length = header(response, 'content-length');
    const size = length === undefined ? undefined : Number(length);
    const writer = await this.blobs.createWriter(digest).catch((error: unknown) => {
      response.body.destroy();
      throw error;
    });
    this.logger.info('blob fill started', { digest: digest.value, size, repository: name });
    return new BlobFill({ digest: digest.value, size, writer, finalPath: this.blobs.paths.blob(digest), body: response.body });
  }

  private async cachedDescriptor(digest: Digest): Promise<BlobDescriptor | undefined> {
    try {
      return await this.cache.get(digest.value);
    } catch (error) {
      this.logger.warn('descriptor cache get failed', { error: (error as Error).message });
      return undefined;
    }
  }

  private async remember(descriptor: BlobDescriptor): Promise<void> {
    try {
      await this.cache.set(descriptor);
    } catch (error) {
      this.logger.warn('descriptor cache set failed', { error: (error as Error).message });
    }
  }

  private async forget(digest: Digest): Promise<void> {
    try {
      await this.cache.delete(digest.value);
    } catch (error) {
      this.logger.warn('descriptor cache delete failed', { error: (error as Error).message });
    }
  }
}

function localSource(digest: string, size: number, handle: FileHandle): BlobSource {
  let used = false;
  return {
    descriptor: { digest, size },
    origin: 'cache',
    stream(start = 0, end = size - 1) {
      used = true;
      if (end < start) {
        void handle.close().catch(() => {});
        return Readable.from([]);
      }
      return createReadStream('', { fd: handle, start, end, highWaterMark: 1024 * 1024, autoClose: true });
    },
    release() {
      if (!used) void handle.close().catch(() => {});
    },
  };
}
