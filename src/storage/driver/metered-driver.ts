import type { Writable } from 'node:stream';
import { storageOperations, storageOperationSeconds, type TallyCell } from '../../metrics/metrics.ts';
import type { ByteRange } from '../readable-blob-store.ts';
import { StorageDriverError, type ListedObject, type ObjectInfo, type OpenedObject, type StagedFile, type StorageDriver, type StorageUsage } from './storage-driver.ts';

/*
 * Metrics for every driver in one place: a driver with the same interface around any other
 * (as distribution's proxy store wraps the local one), counting each operation by result (`ok`
 * or the StorageDriverError's fault; `error` for anything else) and timing it
 * (pullmirror_storage_operations_total, pullmirror_storage_operation_seconds). A listing is
 * timed from its first page to its end; an opened object's `send` is an operation of its own.
 * The counter cells and histogram children are looked up once per operation and result, not per
 * call (the warm blob path pays two additions and an observe).
 */

type Result = 'ok' | StorageDriverError['fault'] | 'error';

export class MeteredDriver implements StorageDriver {
  readonly kind: string;
  readonly inner: StorageDriver;
  private readonly cells = new Map<string, TallyCell>();
  private readonly timers = new Map<string, ReturnType<typeof storageOperationSeconds.labels>>();
  readonly redirectURL?: (key: string) => Promise<string | undefined>;
  readonly putContentIfAbsent?: (key: string, content: Uint8Array | string) => Promise<boolean>;
  readonly stageFile?: (localPath: string, key: string, expectedSize: number) => StagedFile | undefined;

  constructor(inner: StorageDriver) {
    this.inner = inner;
    this.kind = inner.kind;
    if (inner.stageFile) {
      const stage = inner.stageFile.bind(inner);
      // A staged file's commit is the commit of a fill, as commitFile's is: counted and timed as one.
      this.stageFile = (localPath, key, expectedSize) => {
        const staged = stage(localPath, key, expectedSize);
        return staged && { grown: (bytes) => staged.grown(bytes), commit: (signal) => this.measure('commitFile', () => staged.commit(signal)), cancel: () => staged.cancel() };
      };
    }
    if (inner.putContentIfAbsent) {
      const create = inner.putContentIfAbsent.bind(inner);
      this.putContentIfAbsent = (key, content) => this.measure('putContentIfAbsent', () => create(key, content));
    }
    if (inner.redirectURL) {
      const redirect = inner.redirectURL.bind(inner);
      this.redirectURL = (key) => this.measure('redirectURL', () => redirect(key));
    }
  }

  private record(operation: string, result: Result, startedNs: bigint): void {
    const key = `${operation}\u0000${result}`;
    let cell = this.cells.get(key);
    if (!cell) {
      cell = storageOperations.cell(this.kind, operation, result);
      this.cells.set(key, cell);
    }
    cell.value++;
    let timer = this.timers.get(operation);
    if (!timer) {
      timer = storageOperationSeconds.labels(this.kind, operation);
      this.timers.set(operation, timer);
    }
    timer.observe(Number(process.hrtime.bigint() - startedNs) / 1e9);
  }

  private async measure<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      const value = await run();
      this.record(operation, 'ok', started);
      return value;
    } catch (error) {
      this.record(operation, resultOf(error), started);
      throw error;
    }
  }

  private async *measureIterable<T>(operation: string, iterable: () => AsyncIterable<T>): AsyncIterable<T> {
    const started = process.hrtime.bigint();
    let result: Result = 'ok';
    try {
      yield* iterable();
    } catch (error) {
      result = resultOf(error);
      throw error;
    } finally {
      // Also when the caller stops early (break): the listing ended, as far as it went.
      this.record(operation, result, started);
    }
  }

  getContent(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    return this.measure('getContent', () => this.inner.getContent(key, maxBytes));
  }

  putContent(key: string, content: Uint8Array | string): Promise<void> {
    return this.measure('putContent', () => this.inner.putContent(key, content));
  }

  commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    return this.measure('commitFile', () => this.inner.commitFile(localPath, key, signal));
  }

  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.measure('stat', () => this.inner.stat(key));
  }

  async open(key: string, knownSize?: number): Promise<OpenedObject | undefined> {
    const opened = await this.measure('open', () => this.inner.open(key, knownSize));
    if (!opened) return undefined;
    return {
      size: opened.size,
      send: (res: Writable, range: ByteRange) => this.measure('send', () => opened.send(res, range)),
      release: () => opened.release(),
    };
  }

  children(prefix: string): AsyncIterable<string> {
    return this.measureIterable('children', () => this.inner.children(prefix));
  }

  walk(prefix: string): AsyncIterable<ListedObject> {
    return this.measureIterable('walk', () => this.inner.walk(prefix));
  }

  delete(key: string): Promise<boolean> {
    return this.measure('delete', () => this.inner.delete(key));
  }

  probe(): Promise<void> {
    return this.measure('probe', () => this.inner.probe());
  }

  usage(): Promise<StorageUsage> {
    return this.measure('usage', () => this.inner.usage());
  }

  cleanup(olderThanMs: number): Promise<number> {
    return this.measure('cleanup', () => this.inner.cleanup(olderThanMs));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function resultOf(error: unknown): Result {
  return error instanceof StorageDriverError ? error.fault : 'error';
}
