import { EventEmitter } from 'node:events';
import { close, fstat, open, stat } from 'node:fs';
import type { Logger } from '../logging/logger.ts';
import { isStoredObject, type FillBytes, type SharedFill } from '../proxy/shared-fill.ts';
import { isStoreUnwritable } from '../storage/blob-store.ts';
import type { OpenedObject } from '../storage/driver/storage-driver.ts';
import type { FileBytes } from '../storage/send-file.ts';
import type { BlobDescriptor } from '../registry/blob-descriptor.ts';
import { RegistryError } from '../registry/errors.ts';
import type { FillCoordinator, FillHolder } from './fill-coordinator.ts';
import { fillFailureError } from './fill-failure.ts';
import { FileGrowth } from './file-growth.ts';

/** How long after a claim's expiry a follower looks at it: the holder's renewal may be in flight. */
const EXPIRY_MARGIN_MS = 50;
/** The shortest wait between two looks at a claim (a claim about to expire, a burst of events). */
const MIN_LOOK_MS = 20;

type State =
  /**
   * `path`: the holder's spool file, once it started (derived from the claim, see FillHolder),
   * when spools are shared; `started`: the holder announced the download (and its size).
   */
  | { kind: 'following'; holder?: FillHolder; path?: string; size?: number; started?: boolean }
  | { kind: 'committed'; size: number }
  | { kind: 'failed'; error: Error }
  /** The holder went away and this instance took the download over. */
  | { kind: 'local'; fill: SharedFill };

/**
 * A blob another instance of the fleet is downloading into the shared store. On a shared
 * volume (the filesystem driver, instances' spools readable to each other) it is sent from the
 * holder's spool file as the bytes land there; where spools are private (a bucket), readers
 * wait for the commit and read the store.
 *
 * A watcher reads the holder's claim (FillCoordinator.blobHolder) and the store once per state
 * change the holder publishes (FillCoordinator.watchBlob), and else only when the claim would
 * expire (a dead holder publishes nothing): Redis work per state change and per lease, not per
 * tick. Readers learn the file's growth from the file (FileGrowth). Readers
 * read the temporary file and hold back the blob's last byte until the committed (verified)
 * blob exists; so a client never sees a clean end of content that did not verify. A holder
 * that fails tells its followers, which fail too (the client's connection breaks); a holder
 * that dies stops renewing its claim, and when the claim expires this instance takes the
 * download over (`takeOver`, resuming from the dead holder's file when it is still there):
 * readers go on from the byte they had reached, now from the new fill, so nothing is sent
 * twice or skipped.
 */
export class RemoteFill extends EventEmitter implements SharedFill {
  readonly digest: string;
  /** The committed blob as a file, when the store is a shared volume; undefined: spools are private. */
  private readonly committedFile: string | undefined;
  /** The committed blob's size; undefined while it is not committed. */
  private readonly committedSize: () => Promise<number | undefined>;
  /** The committed blob, opened through the store (private spools). */
  private readonly openCommitted: () => Promise<OpenedObject | undefined>;
  private readonly coordinator: FillCoordinator;
  /** Where a holder writes the blob; undefined when its name or epoch are not ones an instance gives. */
  private readonly fileOf: (holder: FillHolder) => string | undefined;
  /**
   * Claims the download for this instance; undefined when another instance won the claim.
   * `abandoned` is the dead holder's temp file, to resume from.
   */
  private readonly takeOver: (abandoned: string | undefined) => Promise<SharedFill | undefined>;
  /**
   * Private spools: the holder's download as it lands, streamed from its peer listener into a
   * verifying fill of this instance's own (BlobDownloads.fromPeer), its bytes from upstream
   * should the peer fail or not be reached; undefined when the holder has nothing to stream.
   * Asked once per followed blob, and again (`avoidPeer`) after a copy that did not verify.
   */
  private readonly fromPeer?: (holder: FillHolder, options?: { avoidPeer?: boolean }) => Promise<SharedFill | undefined>;
  private peerFill?: Promise<SharedFill | undefined>;
  /** A copy streamed from the holder did not verify: the next one comes from upstream. */
  private peerSentBadBytes = false;
  private readonly stallMs: number;
  private readonly logger: Logger;
  private state: State;
  /** Tells readers when the holder's file grows (shared volume, while following a started holder). */
  private growth?: FileGrowth;
  private growthPath?: string;
  /** Counts wake-ups of the watcher (holder events), so one that came while it looked is not slept through. */
  private wakes = 0;
  private wakeUp?: () => void;
  /** Stops the holder's events reaching this follower. */
  private unwatch?: () => void;
  /** Resolves once the size is known (or the fill is over): ProxyBlobStore needs it for headers. */
  readonly ready: Promise<void>;
  readonly done: Promise<BlobDescriptor>;

  constructor(options: {
    digest: string;
    committedFile?: string;
    committedSize: () => Promise<number | undefined>;
    openCommitted: () => Promise<OpenedObject | undefined>;
    coordinator: FillCoordinator;
    /** The holder as the claim named it, when it could be read. */
    holder?: FillHolder;
    fileOf: (holder: FillHolder) => string | undefined;
    takeOver: (abandoned: string | undefined) => Promise<SharedFill | undefined>;
    fromPeer?: (holder: FillHolder, options?: { avoidPeer?: boolean }) => Promise<SharedFill | undefined>;
    /** How long without progress or word from Redis before this instance takes over (the lease). */
    stallMs: number;
    logger: Logger;
  }) {
    super();
    this.setMaxListeners(0);
    this.digest = options.digest;
    this.committedFile = options.committedFile;
    this.committedSize = options.committedSize;
    this.openCommitted = options.openCommitted;
    this.coordinator = options.coordinator;
    this.fileOf = options.fileOf;
    this.state = { kind: 'following', holder: options.holder };
    this.takeOver = options.takeOver;
    this.fromPeer = options.fromPeer;
    this.stallMs = options.stallMs;
    this.logger = options.logger;
    this.done = this.watch().catch((error: unknown) => {
      // Whatever ended the watch, readers waiting on it must not wait for good.
      if (this.state.kind === 'following') this.setState({ kind: 'failed', error: error as Error });
      throw error;
    });
    this.done.catch(() => {});
    this.ready = new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.size !== undefined || this.state.kind === 'committed' || this.state.kind === 'local') return resolve();
        if (this.state.kind === 'failed') return reject(this.state.error);
        this.once('progress', check);
      };
      check();
    });
    this.ready.catch(() => {});
  }

  get complete(): boolean {
    return this.state.kind === 'committed' || (this.state.kind === 'local' && this.state.fill.complete);
  }

  get size(): number | undefined {
    switch (this.state.kind) {
      case 'following':
        // On a shared volume, once its file is known (readers start from it); else once announced.
        return this.state.path || (this.committedFile === undefined && this.state.started) ? this.state.size : undefined;
      case 'committed':
        return this.state.size;
      case 'local':
        return this.state.fill.size;
      default:
        return undefined;
    }
  }

  /** Counts 'progress' events, so a reader can tell whether one came while it was looking. */
  private generation = 0;

  private setState(state: State): void {
    this.state = state;
    const path = state.kind === 'following' ? state.path : undefined;
    if (this.growth && this.growthPath !== path) {
      this.growth.close();
      this.growth = undefined;
    }
    if (path && !this.growth) {
      this.growth = new FileGrowth(path, () => this.signal());
      this.growthPath = path;
    }
    this.signal();
  }

  private signal(): void {
    this.generation++;
    this.emit('progress');
  }

  /** Follows the holder until the blob is committed, the holder fails, or this instance takes over. */
  private async watch(): Promise<BlobDescriptor> {
    this.unwatch = this.coordinator.watchBlob(this.digest, () => this.wake());
    try {
      return await this.follow();
    } finally {
      this.stopFollowing();
    }
  }

  /** No more holder to follow: the blob is committed, the fill failed, or this instance took it over. */
  private stopFollowing(): void {
    this.unwatch?.();
    this.unwatch = undefined;
    this.growth?.close();
    this.growth = undefined;
  }

  /** The committed blob, or the outcome of this instance's fill once it took over. */
  private async follow(): Promise<BlobDescriptor> {
    let lastGrowth = performance.now();
    let lastLength = -1;
    for (;;) {
      // An event from here on means look again, even if it comes while this look is on.
      const mark = this.wakes;
      const committed = await this.storedSize();
      if (committed !== undefined) {
        this.setState({ kind: 'committed', size: committed });
        return { digest: this.digest, size: committed };
      }
      const holder = await this.coordinator.blobHolder(this.digest);
      const current = this.state.kind === 'following' ? this.state : undefined;
      /** Until the next look, unless the holder publishes first. */
      let nextLookMs: number;
      if (holder.kind === 'held') {
        const path = holder.started && holder.holder ? this.fileOf(holder.holder) : undefined;
        if (holder.holder?.epoch !== current?.holder?.epoch || path !== current?.path || holder.size !== current?.size || holder.started !== current?.started) {
          this.setState({ kind: 'following', holder: holder.holder, path, size: holder.size, started: holder.started });
        }
        lastGrowth = performance.now();
        // A holder that dies publishes nothing: its claim expires, and then this one looks.
        nextLookMs = holder.expiresInMs === undefined ? this.stallMs : holder.expiresInMs + EXPIRY_MARGIN_MS;
      } else {
        // No word from Redis: the temp file growing is the holder's sign of life.
        const length = current?.path ? await fileSize(current.path) : undefined;
        if (length !== undefined && length !== lastLength) {
          lastLength = length;
          lastGrowth = performance.now();
        }
        const free = holder.kind === 'free';
        if (free && (await this.storedSize()) !== undefined) continue; // committed just now
        // A failure concerns the holder of its epoch: a later holder's followers are unaffected.
        if (free && holder.failure && holder.failure.epoch !== undefined && holder.failure.epoch === current?.holder?.epoch) {
          const error = fillFailureError(holder.failure);
          this.setState({ kind: 'failed', error });
          throw error;
        }
        if (free || performance.now() - lastGrowth > this.stallMs) {
          const fill = await this.tryTakeOver(current?.path);
          if (fill) {
            this.stopFollowing();
            return fill.done;
          }
          lastGrowth = performance.now();
        }
        // Free: another instance claimed it first and publishes when it starts. Unknown: Redis
        // cannot be asked (nor publish); the file's growth is looked at a few times per lease.
        nextLookMs = free ? this.stallMs : this.stallMs / 4;
      }
      await this.nextLook(mark, Math.min(Math.max(nextLookMs, MIN_LOOK_MS), this.stallMs));
    }
  }

  private wake(): void {
    this.wakes++;
    this.wakeUp?.();
  }

  /** Resolves at the first holder event after `mark` (at once if one came), or after `ms`. */
  private nextLook(mark: number, ms: number): Promise<void> {
    if (this.wakes !== mark) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  /**
   * The committed blob's size; undefined while it is not committed, and while the store cannot
   * be asked (a bucket failing, or its breaker open for a moment): the follow goes on, and ends
   * as it would (the holder commits, fails, or gives up and this instance takes over).
   */
  private async storedSize(): Promise<number | undefined> {
    try {
      return await this.committedSize();
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      return undefined;
    }
  }

  private async tryTakeOver(abandoned: string | undefined): Promise<SharedFill | undefined> {
    let fill: SharedFill | undefined;
    try {
      fill = await this.takeOver(abandoned);
    } catch (error) {
      this.setState({ kind: 'failed', error: error as Error });
      throw error;
    }
    if (!fill) return undefined;
    this.logger.warn('blob download holder gone; taking the download over', { digest: this.digest });
    this.setState({ kind: 'local', fill });
    return fill;
  }

  async openBytes(): Promise<FillBytes> {
    await this.ready;
    if (this.state.kind === 'local') return this.state.fill.openBytes();
    if (this.committedFile === undefined) return this.openWhenCommitted();
    const reader = new FollowerBytes(this);
    await reader.readableUpTo(0, 0, false);
    return reader;
  }

  /**
   * Private spools: the holder's bytes cannot be read here, so a reader waits for the commit
   * (or this instance's takeover) and reads the store. The wait ends with the fill: the holder
   * commits or fails, or stops renewing its claim and this instance takes over.
   */
  private async openWhenCommitted(): Promise<FillBytes> {
    for (;;) {
      const state = this.state;
      if (state.kind === 'failed') throw state.error;
      if (state.kind === 'local') return state.fill.openBytes();
      if (state.kind === 'committed') {
        const object = await this.openCommitted();
        if (!object) throw new Error('the committed blob could not be read');
        return object;
      }
      const fromPeer = await this.openFromPeer(state);
      if (fromPeer) return fromPeer;
      // Asking the peer took a while: a commit meanwhile sent its one event already.
      if (this.state !== state) continue;
      await new Promise((resolve) => this.once('progress', resolve));
    }
  }

  /**
   * The holder's download through its peer listener (or from upstream, where the peer fails),
   * while that copy runs: undefined when there is none (no peer listener, nothing to stream, or
   * the copy over or failed), and the reader waits for the commit instead.
   */
  private async openFromPeer(state: State): Promise<FillBytes | undefined> {
    if (!this.fromPeer || state.kind !== 'following' || !state.started || !state.holder) return undefined;
    this.peerFill ??= this.streamFromPeer(state.holder);
    const fill = await this.peerFill;
    if (!fill || fill.complete) return undefined;
    return fill.openBytes().catch(() => undefined);
  }

  /**
   * A copy of the holder's download. One whose bytes did not verify failed its readers (their
   * connections break) and is let go: the next reader's copy comes from upstream.
   */
  private streamFromPeer(holder: FillHolder): Promise<SharedFill | undefined> {
    const opened = this.fromPeer!(holder, { avoidPeer: this.peerSentBadBytes }).catch(() => undefined);
    void opened.then((fill) =>
      fill?.done.catch((error: unknown) => {
        if (!(error instanceof RegistryError && (error.code === 'DIGEST_INVALID' || error.code === 'SIZE_INVALID'))) return;
        this.peerSentBadBytes = true;
        if (this.peerFill === opened) this.peerFill = undefined;
      }),
    );
    return opened;
  }

  /** @internal for FollowerBytes: the committed blob's file (shared volume), read to its end. */
  async openCommittedFile(): Promise<FileBytes> {
    const fd = await openRead(this.committedFile!);
    const { size } = await fdInfo(fd);
    return { fd, readableUpTo: (position, end) => Math.max(position, Math.min(size, end + 1)) };
  }

  /** @internal for FollowerBytes: the file holding the bytes now, and what may be read of it. */
  current(): { state: State; path?: string } {
    const state = this.state;
    if (state.kind === 'committed') return { state, path: this.committedFile };
    if (state.kind === 'following' && state.path) return { state, path: state.path };
    return { state };
  }

  /**
   * @internal for FollowerBytes: the size of the holder's file at `path` as the growth watch
   * last saw it (one stat per growth for every reader); undefined when it is not the file watched.
   */
  watchedLength(path: string): number | undefined {
    const length = this.growthPath === path ? this.growth?.length : undefined;
    return length !== undefined && length >= 0 ? length : undefined;
  }

  /** @internal the generation a reader saw before it looked at the files. */
  progressMark(): number {
    return this.generation;
  }

  /**
   * @internal Resolves at the next sign of progress after `mark`: at once when one came since
   * (a reader that looked at the files while the blob was committed must not wait for an event
   * that already happened) or when the fill is over (no more will come).
   */
  nextProgress(mark: number): Promise<void> {
    const over = this.state.kind === 'committed' || this.state.kind === 'failed' || this.state.kind === 'local';
    if (over || this.generation !== mark) return Promise.resolve();
    return new Promise((resolve) => this.once('progress', resolve));
  }
}

/**
 * One client's view of a followed download. Its descriptor follows the content: it stays on
 * the same file while that is renamed (committed, or adopted by a takeover), and moves to the
 * new file when the content lands elsewhere. It only moves inside readableUpTo, which
 * sendFileRange calls between reads, never during one.
 */
class FollowerBytes implements FileBytes {
  private readonly fill: RemoteFill;
  fd = -1;
  private ino = -1;
  /** The path whose file `fd` was last checked against: looked at again only when the fill names another. */
  private checked?: string;
  private local?: FileBytes;

  constructor(fill: RemoteFill) {
    this.fill = fill;
  }

  /** After a takeover, this instance's fill holds the latest chunks in memory; before, the file holds every readable byte. */
  heldAt(position: number, max: number): Buffer | number {
    return this.local?.heldAt ? this.local.heldAt(position, max) : Infinity;
  }

  /** `wait` false: just get a descriptor open (openBytes), do not wait for bytes. */
  async readableUpTo(position: number, end: number, wait = true): Promise<number> {
    for (;;) {
      if (this.local) return wait ? this.local.readableUpTo(position, end) : position;
      const mark = this.fill.progressMark();
      const { state, path } = this.fill.current();
      if (state.kind === 'failed') throw state.error;
      if (state.kind === 'local') {
        const bytes = await state.fill.openBytes();
        // The fill took over already handed its file to the store: read the committed file.
        if (isStoredObject(bytes)) bytes.release();
        this.local = isStoredObject(bytes) ? await this.fill.openCommittedFile() : bytes;
        this.release();
        this.fd = this.local.fd;
        continue;
      }
      let available = 0;
      // A path seen before holds the same file (a holder's name and epoch are unique; the
      // commit renames that very file): only the descriptor's size can have changed.
      if (path && (path !== this.checked || this.fd < 0)) {
        const info = await pathInfo(path);
        if (info && info.ino !== this.ino) {
          const fd = await openRead(path).catch(() => undefined);
          if (fd !== undefined) {
            this.release();
            this.fd = fd;
            this.ino = (await fdInfo(fd)).ino;
          }
        }
        if (info && this.fd >= 0) this.checked = path;
      }
      if (path && this.fd >= 0) available = this.fill.watchedLength(path) ?? (await fdInfo(this.fd)).size;
      if (!wait && this.fd >= 0) return position;
      let limit = Math.min(available, end + 1);
      // Until the blob is committed (verified) the range's last byte stays back.
      if (state.kind !== 'committed') limit = Math.min(limit, end);
      if (limit > position) return limit;
      if (state.kind === 'committed' && this.fd >= 0 && available >= state.size) return position;
      // Committed, yet not readable to the end here (deleted under us): no event will mend that.
      if (state.kind === 'committed') throw new Error('the committed blob could not be read');
      await this.fill.nextProgress(mark);
    }
  }

  private release(): void {
    if (this.fd >= 0 && this.fd !== this.local?.fd) close(this.fd, () => {});
    this.fd = -1;
    this.ino = -1;
    this.checked = undefined;
  }
}

function fileSize(path: string): Promise<number | undefined> {
  return pathInfo(path).then((info) => info?.size);
}

function pathInfo(path: string): Promise<{ size: number; ino: number } | undefined> {
  return new Promise((resolve) => stat(path, (error, info) => resolve(error ? undefined : { size: info.size, ino: info.ino })));
}

function fdInfo(fd: number): Promise<{ size: number; ino: number }> {
  return new Promise((resolve, reject) => fstat(fd, (error, info) => (error ? reject(error) : resolve({ size: info.size, ino: info.ino }))));
}

function openRead(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (error, fd) => (error ? reject(error) : resolve(fd))));
}
