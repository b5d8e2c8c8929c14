import { join, relative } from 'node:path';
import { statfs } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DescriptorCache } from '../cache/descriptor-cache.ts';
import type { Logger } from '../logging/logger.ts';
import type { Digest } from '../registry/digest.ts';
import { isStoreUnwritable, type BlobDescriptor, type BlobWriter, type FilesystemBlobStore } from '../storage/blob-store.ts';
import type { Dispatcher } from 'undici';
import { verifyingPassThrough } from './pass-through.ts';
import { header, upstreamStatusError } from '../upstream/upstream-errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { BlobFill } from './blob-fill.ts';
import { closeFd, sendFileRange } from './send-file.ts';
import { LocalFillCoordinator, type BlobLease, type FillCoordinator } from '../fleet/fill-coordinator.ts';
import { RemoteFill, type SharedFill } from '../fleet/remote-fill.ts';
import { RegistryError } from '../registry/errors.ts';

/** How long the store stays in pass-through mode after a write failure. */
const DEGRADED_MS = 30_000;

/** A blob ready to be sent: from the local store or from a fill in flight. */
export interface BlobSource {
  readonly descriptor: { digest: string; size: number | undefined };
  readonly origin: 'cache' | 'upstream';
  /** Whether send() can cut a range; a pass-through can only send the whole blob. */
  readonly ranged: boolean;
  /**
   * Writes bytes [start, end] (inclusive; the whole blob by default) to the response and ends
   * it; consumes the source. Rejects when the content fails or the client leaves.
   */
  send(res: Writable, start?: number, end?: number): Promise<void>;
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
  private readonly resume: { retries: number; backoffMs: number };
  /** Free space kept beyond a blob's size before the store takes it. */
  private readonly minFreeBytes: number;
  /** Who downloads a cold blob when several instances share the store (see src/fleet/). */
  private readonly fleet: FillCoordinator;
  private readonly fleetStallMs: number;
  /** Fills in flight by digest (ours, or another instance's we follow); a promise while starting. */
  private readonly fills = new Map<string, Promise<SharedFill>>();
  /** Until when the store is considered unwritable (pass-through mode). */
  private degradedUntil = 0;
  private readonly readOnly: boolean;

  constructor(options: {
    blobs: FilesystemBlobStore;
    cache: DescriptorCache;
    logger: Logger;
    resume?: { retries: number; backoffMs: number };
    minFreeBytes?: number;
    /** storage.maintenance.readonly: serve what is stored, pass everything else through. */
    readOnly?: boolean;
    fleet?: FillCoordinator;
    /** How long a followed download may show no sign of life before this instance takes over. */
    fleetStallMs?: number;
  }) {
    this.blobs = options.blobs;
    this.cache = options.cache;
    this.logger = options.logger;
    this.resume = options.resume ?? { retries: 3, backoffMs: 250 };
    this.minFreeBytes = options.minFreeBytes ?? 256 * 1024 * 1024;
    this.fleet = options.fleet ?? new LocalFillCoordinator();
    this.fleetStallMs = options.fleetStallMs ?? 10_000;
    this.readOnly = options.readOnly ?? false;
  }

  /** Whether a fill of this blob is in flight (an eviction pass must not delete it). */
  isFilling(digest: string): boolean {
    return this.fills.has(digest);
  }

  /** Resolves once no fill is in flight (used by a graceful stop). */
  async drain(): Promise<void> {
    while (this.fills.size > 0) {
      await Promise.allSettled([...this.fills.values()].map((fill) => fill.then((f) => f.done)));
    }
  }

  get fillsInFlight(): number {
    return this.fills.size;
  }

  /** The descriptor of a blob the local store holds; the cache spares the disk. */
  async localDescriptor(digest: Digest): Promise<BlobDescriptor | undefined> {
    const cached = await this.cachedDescriptor(digest);
    if (cached) return cached;
    const stored = await this.blobs.stat(digest);
    if (stored) void this.remember(stored);
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
    if (isPassThrough(fill)) return passThroughSource(digest.value, fill);
    return {
      descriptor: { digest: digest.value, size: fill.size },
      origin: 'upstream',
      ranged: true,
      async send(res, start = 0, end) {
        const last = end ?? (fill.size === undefined ? Number.MAX_SAFE_INTEGER : fill.size - 1);
        const bytes = await fill.openBytes();
        try {
          await sendFileRange(bytes, res, start, last);
        } finally {
          closeFd(bytes.fd);
        }
      },
      release: () => {},
    };
  }

  private async openLocal(digest: Digest): Promise<BlobSource | undefined> {
    // Both at once: with Redis as the cache, its round trip would otherwise come before the open.
    const [cached, handle] = await Promise.all([this.cachedDescriptor(digest), this.blobs.open(digest)]);
    if (!handle) {
      // Deleted behind the cache's back: forget it and fetch again.
      if (cached) await this.forgetDescriptor(digest);
      return undefined;
    }
    let size = cached?.size;
    if (size === undefined) {
      size = (await handle.stat()).size;
      void this.remember({ digest: digest.value, size });
    }
    return localSource(digest.value, size, handle);
  }

  private fillFor(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<SharedFill | PassThroughBody> {
    const existing = this.fills.get(digest.value);
    if (existing) {
      // Joining a start that turned out to be a pass-through: that body was the other
      // client's, so this one gets its own.
      return existing.catch((error: unknown) => {
        if (error instanceof NotShareable) return this.startFill(upstream, name, digest);
        throw error;
      });
    }
    const starting = this.startFill(upstream, name, digest);
    // Only real fills are shared; a pass-through body belongs to the one client that asked.
    const shared = starting.then((started) => {
      if (!isPassThrough(started)) return started;
      throw new NotShareable();
    });
    shared.catch(() => {});
    this.fills.set(digest.value, shared);
    starting.then(
      (started) => {
        if (isPassThrough(started)) {
          this.fills.delete(digest.value);
          return;
        }
        started.done.then(
          (descriptor) => {
            this.logger.info('blob cached', { digest: digest.value, size: descriptor.size });
            return this.remember(descriptor);
          },
          (error: Error) => {
            if (isStoreUnwritable(error)) this.degrade(error);
            this.logger.warn('blob fill failed', { digest: digest.value, error: error.message });
          },
        ).finally(() => this.fills.delete(digest.value));
      },
      () => this.fills.delete(digest.value),
    );
    return starting;
  }

  /**
   * Starts a fill: this instance's own download when the fleet gives it the claim, else a
   * RemoteFill that follows the instance holding it (and takes over if that one dies).
   */
  private async startFill(upstream: UpstreamRegistry, name: string, digest: Digest): Promise<SharedFill | PassThroughBody> {
    const claim = await this.fleet.claimBlob(digest.value);
    if (claim.kind === 'mine') return this.download(upstream, name, digest, claim.lease);
    this.logger.info('following a blob download of another instance', { digest: digest.value });
    const remote = new RemoteFill({
      digest: digest.value,
      root: this.blobs.paths.root,
      finalPath: this.blobs.paths.blob(digest),
      coordinator: this.fleet,
      stallMs: this.fleetStallMs,
      logger: this.logger,
      takeOver: async (abandoned) => {
        const again = await this.fleet.claimBlob(digest.value);
        if (again.kind === 'theirs') return undefined;
        const fill = await this.download(upstream, name, digest, again.lease, abandoned);
        if (isPassThrough(fill)) {
          fill.body.destroy();
          throw new RegistryError('UNAVAILABLE', 'store unwritable while taking a download over');
        }
        return fill;
      },
    });
    await remote.ready;
    return remote;
  }

  /**
   * This instance's own upstream download, under the fleet claim `lease`; resumed from the
   * `abandoned` temp file of a dead holder when one is given and still there.
   */
  private async download(upstream: UpstreamRegistry, name: string, digest: Digest, lease: BlobLease, abandoned?: string): Promise<BlobFill | PassThroughBody> {
    let response: Dispatcher.ResponseData;
    let writer: BlobWriter | undefined;
    let size: number | undefined;
    try {
      writer = abandoned ? await this.adopt(digest, abandoned) : undefined;
      const resumed = writer && writer.written > 0 ? await this.resumeGet(upstream, name, digest, writer.written) : undefined;
      if (writer && resumed) {
        response = resumed.response;
        size = resumed.size;
        this.logger.info('resuming the download of a dead instance', { digest: digest.value, offset: writer.written });
      } else {
        await writer?.reset();
        response = await this.upstreamGet(upstream, name, digest);
        const length = header(response, 'content-length');
        size = length === undefined ? undefined : Number(length);
        writer ??= await this.writerFor(digest, size);
      }
    } catch (error) {
      await writer?.abort();
      await lease.release({ failed: failureOf(error as Error) });
      throw error;
    }
    if (!writer) {
      // Followers cannot tail a pass-through: let one of them try its own store.
      await lease.release('abandoned');
      this.logger.warn('store unwritable: passing blob through uncached', { digest: digest.value, size });
      return { size, body: response.body.pipe(verifyingPassThrough(digest, size)) };
    }
    const tempPath = relative(this.blobs.paths.root, writer.path);
    await lease.publish(tempPath, size);
    this.logger.info('blob fill started', { digest: digest.value, size, repository: name });
    const fill = new BlobFill({
      digest: digest.value,
      size,
      writer,
      finalPath: this.blobs.paths.blob(digest),
      body: response.body,
      resume: {
        retries: this.resume.retries,
        backoffMs: this.resume.backoffMs,
        reopen: (offset) => this.reopen(upstream, name, digest, offset),
      },
    });
    fill.on('resumed', (info: { offset: number; attempt: number }) =>
      this.logger.warn('upstream transfer interrupted; resuming', { digest: digest.value, ...info }),
    );
    fill.done.then(
      () => lease.release('committed'),
      (error: Error) => lease.release({ failed: { ...failureOf(error), tempPath } }),
    );
    return fill;
  }

  private async upstreamGet(upstream: UpstreamRegistry, name: string, digest: Digest, headers?: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const response = await upstream.request({ method: 'GET', path: `/v2/${name}/blobs/${digest.value}`, repository: name, headers });
    if (response.statusCode !== 200 && response.statusCode !== 206) {
      await response.body.dump();
      throw upstreamStatusError(response, 'BLOB_UNKNOWN');
    }
    return response;
  }

  /**
   * Asks upstream for a blob from `offset` on, for a takeover; undefined when it will not
   * answer exactly that (then the download starts over from byte 0).
   */
  private async resumeGet(upstream: UpstreamRegistry, name: string, digest: Digest, offset: number): Promise<{ response: Dispatcher.ResponseData; size: number } | undefined> {
    let response: Dispatcher.ResponseData;
    try {
      response = await this.upstreamGet(upstream, name, digest, { range: `bytes=${offset}-` });
    } catch {
      return undefined; // e.g. 416: the abandoned file already held every byte
    }
    const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(header(response, 'content-range') ?? '');
    if (response.statusCode === 206 && range && Number(range[1]) === offset) return { response, size: Number(range[2]) };
    response.body.destroy();
    return undefined;
  }

  /** Asks upstream for the rest of a blob; a 200 means it starts over from byte 0. */
  private async reopen(upstream: UpstreamRegistry, name: string, digest: Digest, offset: number): Promise<{ body: Readable; offset: number }> {
    const response = await this.upstreamGet(upstream, name, digest, offset > 0 ? { range: `bytes=${offset}-` } : undefined);
    const range = /^bytes (\d+)-/.exec(header(response, 'content-range') ?? '');
    const start = response.statusCode === 206 && range ? Number(range[1]) : 0;
    if (start !== 0 && start !== offset) {
      response.body.destroy();
      throw new Error(`upstream resumed at ${start}, asked for ${offset}`);
    }
    return { body: response.body, offset: start };
  }

  /** Takes over a dead holder's temp file (relative to the store root); undefined when it is gone. */
  private async adopt(digest: Digest, abandoned: string): Promise<BlobWriter | undefined> {
    try {
      return await this.blobs.adoptWriter(digest, join(this.blobs.paths.root, abandoned));
    } catch (error) {
      this.logger.warn('could not take over an abandoned download; starting over', { digest: digest.value, error: (error as Error).message });
      return undefined;
    }
  }

  /**
   * A writer for a new blob, or undefined when the store cannot take it: full (checked up
   * front against the announced size, so no client sees a transfer break for it), read-only,
   * or failing recently.
   */
  private async writerFor(digest: Digest, size: number | undefined): Promise<BlobWriter | undefined> {
    if (this.readOnly || Date.now() < this.degradedUntil) return undefined;
    try {
      if (size !== undefined) {
        const space = await statfs(this.blobs.tempDir);
        if (space.bavail * space.bsize < size + this.minFreeBytes) {
          this.degrade(Object.assign(new Error('not enough free space in the store'), { code: 'ENOSPC' }), 0);
          return undefined;
        }
      }
      return await this.blobs.createWriter(digest);
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      this.degrade(error as Error);
      return undefined;
    }
  }

  /** Stops trying to write for a while after a store failure, so clients get pass-through at once. */
  private degrade(error: Error, forMs = DEGRADED_MS): void {
    if (Date.now() >= this.degradedUntil) {
      this.logger.error('store not writable; serving uncached from upstream', { error: error.message, code: (error as NodeJS.ErrnoException).code });
    }
    this.degradedUntil = Math.max(this.degradedUntil, Date.now() + forMs);
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

  /** Drops a deleted blob from the descriptor cache. */
  async forgetDescriptor(digest: Digest): Promise<void> {
    try {
      await this.cache.delete(digest.value);
    } catch (error) {
      this.logger.warn('descriptor cache delete failed', { error: (error as Error).message });
    }
  }
}

class NotShareable extends Error {}

function isPassThrough(fill: SharedFill | PassThroughBody): fill is PassThroughBody {
  return 'body' in fill;
}

/** What followers in other instances are told when this instance's download fails. */
function failureOf(error: Error): { code: string; message: string; status?: number } {
  if (error instanceof RegistryError) return { code: error.code, message: error.message, status: error.status };
  return { code: 'UPSTREAM_UNAVAILABLE', message: 'the upstream download failed' };
}

/** A blob streamed from upstream to a single client because the store cannot take it. */
interface PassThroughBody {
  size: number | undefined;
  body: Readable;
}

function passThroughSource(digest: string, passing: PassThroughBody): BlobSource {
  return {
    descriptor: { digest, size: passing.size },
    origin: 'upstream',
    ranged: false,
    send: (res) => pipeline(passing.body, res),
    release: () => passing.body.destroy(),
  };
}

function localSource(digest: string, size: number, handle: FileHandle): BlobSource {
  let used = false;
  return {
    descriptor: { digest, size },
    origin: 'cache',
    ranged: true,
    async send(res, start = 0, end = size - 1) {
      used = true;
      try {
        await sendFileRange({ fd: handle.fd, readableUpTo: () => end + 1 }, res, start, end);
      } finally {
        await handle.close().catch(() => {});
      }
    },
    release() {
      if (!used) void handle.close().catch(() => {});
    },
  };
}
