import { StorageDriverError, type ListedObject, type ObjectInfo, type OpenedObject, type StagedFile, type StorageDriver, type StorageUsage } from './storage-driver.ts';

/*
 * A circuit breaker around a driver over the network (s3). When the medium is 'unavailable'
 * (hung until a deadline, refusing connections, answering 5xx or SlowDown), each operation costs
 * its deadline and retries before it fails: seconds each, and a blob request makes several (the
 * repository's privacy record, its link, the blob), so a client would wait for each in turn.
 * Once an operation failed so, the ones a request waits on (reads, small writes, listings of a
 * repository) fail at once for OPEN_MS, and the layers above do what they do for a failing
 * store: the blob passes through from upstream, verified; a link is not recorded. After OPEN_MS
 * the next operation asks the medium again (and a success of the readiness probe closes the
 * breaker sooner).
 *
 * Not broken: `commitFile` and `stageFile` (a fill's commit, which no client waits on, with its own deadline and
 * its abort of the multipart upload), `walk` and `cleanup` (eviction and gc, in the background),
 * `probe` (readiness must ask the medium itself), `usage` and `close`.
 */

/** How long operations fail at once after the medium was found unavailable. */
const OPEN_MS = 5_000;

export class BreakerDriver implements StorageDriver {
  readonly kind: string;
  private readonly inner: StorageDriver;
  private readonly openMs: number;
  /** performance.now() until which operations fail at once (0: closed). */
  private openUntil = 0;
  private lastFailure = '';
  readonly putContentIfAbsent?: (key: string, content: Uint8Array | string) => Promise<boolean>;
  readonly redirectURL?: (key: string) => Promise<string | undefined>;
  readonly stageFile?: (localPath: string, key: string, expectedSize: number) => StagedFile | undefined;

  constructor(inner: StorageDriver, options: { openMs?: number } = {}) {
    this.inner = inner;
    this.kind = inner.kind;
    this.openMs = options.openMs ?? OPEN_MS;
    if (inner.putContentIfAbsent) {
      const create = inner.putContentIfAbsent.bind(inner);
      this.putContentIfAbsent = (key, content) => this.guard('putContentIfAbsent', key, () => create(key, content));
    }
    if (inner.redirectURL) this.redirectURL = inner.redirectURL.bind(inner);
    // Not broken, as commitFile: a fill's upload, which no client waits on.
    if (inner.stageFile) this.stageFile = inner.stageFile.bind(inner);
  }

  private async guard<T>(operation: string, key: string | undefined, run: () => Promise<T>): Promise<T> {
    if (performance.now() < this.openUntil) {
      throw new StorageDriverError('unavailable', operation, `${this.kind} ${operation}${key ? ` ${key}` : ''}: not asked, the store failed a moment ago (${this.lastFailure})`, { key });
    }
    try {
      return await run();
    } catch (error) {
      this.observe(error);
      throw error;
    }
  }

  private observe(error: unknown): void {
    if (error instanceof StorageDriverError && error.fault === 'unavailable') {
      this.openUntil = performance.now() + this.openMs;
      this.lastFailure = error.message;
    }
  }

  getContent(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    return this.guard('getContent', key, () => this.inner.getContent(key, maxBytes));
  }

  putContent(key: string, content: Uint8Array | string): Promise<void> {
    return this.guard('putContent', key, () => this.inner.putContent(key, content));
  }

  commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    return this.inner.commitFile(localPath, key, signal);
  }

  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.guard('stat', key, () => this.inner.stat(key));
  }

  open(key: string, knownSize?: number): Promise<OpenedObject | undefined> {
    return this.guard('open', key, () => this.inner.open(key, knownSize));
  }

  async *children(prefix: string): AsyncIterable<string> {
    const pages = await this.guard('children', prefix, async () => this.inner.children(prefix)[Symbol.asyncIterator]());
    try {
      for (;;) {
        const next = await pages.next();
        if (next.done) return;
        yield next.value;
      }
    } catch (error) {
      this.observe(error);
      throw error;
    } finally {
      await pages.return?.();
    }
  }

  walk(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.walk(prefix);
  }

  delete(key: string): Promise<boolean> {
    return this.guard('delete', key, () => this.inner.delete(key));
  }

  async probe(): Promise<void> {
    await this.inner.probe();
    this.openUntil = 0;
  }

  usage(): Promise<StorageUsage> {
    return this.inner.usage();
  }

  cleanup(olderThanMs: number): Promise<number> {
    return this.inner.cleanup(olderThanMs);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
