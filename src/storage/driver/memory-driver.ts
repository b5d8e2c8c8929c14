import { open, unlink } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { ByteRange } from '../readable-blob-store.ts';
import {
  checkKey,
  checkPrefix,
  StorageDriverError,
  type ListedObject,
  type ObjectInfo,
  type OpenedObject,
  type StorageDriver,
  type StorageUsage,
} from './storage-driver.ts';

/** Bytes per write of `send`: a slow reader holds at most this beyond the socket's own buffer. */
const CHUNK = 64 * 1024;

interface StoredObject {
  bytes: Buffer;
  modifiedMs: number;
}

/**
 * Bytes at keys in a Map, for unit tests of the layers above (blob semantics, eviction, the
 * browser) without a disk. It keeps the contract as the other drivers do (conformance suite):
 * objects are replaced whole, commitFile consumes its file, `open` serves a snapshot (a put
 * meanwhile does not change what an open response sends), and a key holds no other copy of
 * its bytes than the one stored.
 */
export class MemoryDriver implements StorageDriver {
  readonly kind = 'inmemory';
  private readonly objects = new Map<string, StoredObject>();

  async getContent(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    checkKey(key, 'getContent');
    const object = this.objects.get(key);
    if (!object) return undefined;
    if (maxBytes !== undefined && object.bytes.length > maxBytes) {
      throw new StorageDriverError('too-large', 'getContent', `object of ${object.bytes.length} bytes, more than the ${maxBytes} asked for`, { key });
    }
    // A copy: the caller may change what it gets, the store must not change with it.
    return Buffer.from(object.bytes);
  }

  async putContent(key: string, content: Uint8Array | string): Promise<void> {
    checkKey(key, 'putContent');
    // Copied: the caller may reuse its buffer.
    this.objects.set(key, { bytes: Buffer.from(content), modifiedMs: Date.now() });
  }

  async putContentIfAbsent(key: string, content: Uint8Array | string): Promise<boolean> {
    checkKey(key, 'putContentIfAbsent');
    if (this.objects.has(key)) return false;
    this.objects.set(key, { bytes: Buffer.from(content), modifiedMs: Date.now() });
    return true;
  }

  /** Reads the file into one buffer of its size (the stored copy, and the only one), then removes it. */
  async commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    try {
      checkKey(key, 'commitFile');
      signal?.throwIfAborted();
      const bytes = await readWhole(localPath, signal);
      signal?.throwIfAborted();
      this.objects.set(key, { bytes, modifiedMs: Date.now() });
    } finally {
      await unlink(localPath).catch(() => {});
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, 'stat');
    const object = this.objects.get(key);
    return object && { size: object.bytes.length, modifiedMs: object.modifiedMs };
  }

  async open(key: string): Promise<OpenedObject | undefined> {
    checkKey(key, 'open');
    const object = this.objects.get(key);
    return object && new OpenedBuffer(object.bytes);
  }

  async *children(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix, 'children');
    const start = directoryPrefix(prefix);
    const seen = new Set<string>();
    for (const key of this.objects.keys()) {
      if (!key.startsWith(start)) continue;
      const name = key.slice(start.length).split('/', 1)[0];
      if (seen.has(name)) continue;
      seen.add(name);
      yield name;
    }
  }

  async *walk(prefix: string): AsyncIterable<ListedObject> {
    checkPrefix(prefix, 'walk');
    const start = directoryPrefix(prefix);
    // A snapshot of the keys: deletes during the walk must not change what the iteration is over.
    for (const key of [...this.objects.keys()]) {
      if (!key.startsWith(start)) continue;
      const object = this.objects.get(key);
      if (object) yield { key, size: object.bytes.length, modifiedMs: object.modifiedMs };
    }
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key, 'delete');
    return this.objects.delete(key);
  }

  async probe(): Promise<void> {}

  async usage(): Promise<StorageUsage> {
    return {};
  }

  async cleanup(_olderThanMs: number): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    this.objects.clear();
  }
}

/** '' for the whole store, else the prefix with one trailing '/': `a/b` lists `a/b/…`, never `a/bc`. */
function directoryPrefix(prefix: string): string {
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return trimmed === '' ? '' : `${trimmed}/`;
}

async function readWhole(path: string, signal: AbortSignal | undefined): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const bytes = Buffer.allocUnsafe(size);
    let position = 0;
    while (position < size) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(bytes, position, Math.min(size - position, 1024 * 1024), position);
      if (bytesRead === 0) throw new Error(`${path} shrank while it was read`);
      position += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close().catch(() => {});
  }
}

/** A stored buffer served in CHUNKs, each written once the previous one was taken (backpressure). */
class OpenedBuffer implements OpenedObject {
  readonly size: number;
  private bytes: Buffer | undefined;

  constructor(bytes: Buffer) {
    this.bytes = bytes;
    this.size = bytes.length;
  }

  async send(res: Writable, range: ByteRange): Promise<void> {
    try {
      const bytes = this.bytes;
      if (!bytes) throw new Error('send after release');
      if (range.start < 0 || range.end >= bytes.length) throw new Error(`range ${range.start}-${range.end} outside an object of ${bytes.length} bytes`);
      for (let position = range.start; position <= range.end; position += CHUNK) {
        await writeTaken(res, bytes.subarray(position, Math.min(range.end + 1, position + CHUNK)));
      }
      await ended(res);
    } finally {
      this.release();
    }
  }

  release(): void {
    this.bytes = undefined;
  }
}

/** Resolves once `res` took `chunk`; rejects when it failed or was destroyed first. */
function writeTaken(res: Writable, chunk: Buffer): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.reject(new Error('client closed the connection'));
  return new Promise<void>((resolve, reject) => {
    const onClose = (): void => settle(new Error('client closed the connection'));
    const settle = (error?: Error | null): void => {
      res.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    res.once('close', onClose);
    res.write(chunk, settle);
  });
}

function ended(res: Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onClose = (): void => {
      if (!res.writableFinished) reject(new Error('client closed the connection'));
    };
    res.once('close', onClose);
    res.end((error?: Error | null) => {
      res.off('close', onClose);
      if (error) reject(error);
      else resolve();
    });
  });
}
