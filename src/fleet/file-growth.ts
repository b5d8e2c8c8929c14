import { stat, watch, type FSWatcher } from 'node:fs';

/** Growth events within this long reach the readers as one wake-up: a fast fill writes many small chunks. */
const COALESCE_MS = 10;
/**
 * How often the file's size is looked at until the watch has shown it sees the writes (the
 * file grew and events came); then doubling, up to MAX_CHECK_MS.
 */
const FIRST_CHECK_MS = 1_000;
const MAX_CHECK_MS = 30_000;
/** Looks in a row that saw the file grow with no event before the watch is taken as blind. */
const BLIND_AFTER = 2;
/** How often a file whose writes no watch sees is looked at (a local stat; no Redis). */
const POLL_MS = 100;

/**
 * Tells when a file another instance writes grows (the holder's spool on a shared volume),
 * without stat polling where the system can say so: one fs.watch (inotify) per followed file,
 * whatever the number of its readers.
 *
 * inotify sees the writes made through this host's kernel only: on a volume shared between
 * hosts (NFS, EFS) a holder on another host makes no event. So the file's size is also looked
 * at on a slow check (every FIRST_CHECK_MS until the watch proved itself, then less and less
 * often): a file that grew with no event between two checks, twice in a row, is watched blind,
 * and from then its size is polled every POLL_MS (a reader of a blind watch waits about two
 * seconds for its first bytes, then follows as before). A watch that cannot be set up (no
 * file yet, no inotify left) polls from the start. Each event (coalesced over COALESCE_MS)
 * costs one stat, shared by every reader of the file (`length`). Every timer is unref'd and
 * everything stops at close().
 */
export class FileGrowth {
  private readonly path: string;
  private readonly onGrowth: () => void;
  private watcher?: FSWatcher;
  private events = 0;
  private pending?: NodeJS.Timeout;
  private check?: NodeJS.Timeout;
  private poll?: NodeJS.Timeout;
  private checkMs = FIRST_CHECK_MS;
  /** The largest size seen (told to onGrowth); -1 before the first look. */
  private seen = -1;
  /** The size at the last check, and the events counted then (the blind test). */
  private checkedSize = -1;
  private eventsAtLastCheck = 0;
  private blindChecks = 0;
  /** The watch has reported growth: it sees the writes. */
  private proven = false;
  private closed = false;

  constructor(path: string, onGrowth: () => void) {
    this.path = path;
    this.onGrowth = onGrowth;
    try {
      this.watcher = watch(path, { persistent: false }, () => this.changed());
      this.watcher.on('error', () => this.startPolling());
    } catch {
      this.startPolling();
      return;
    }
    // The size the first check compares with.
    void this.look().then((now) => {
      if (this.checkedSize < 0 && now !== undefined) this.checkedSize = now;
    });
    this.scheduleCheck();
  }

  /** Whether the file is polled (its writes make no event here). */
  get polling(): boolean {
    return this.poll !== undefined;
  }

  /**
   * The file's size when it was last looked at (-1 before): readers of the file take it
   * instead of a stat each, so a growth costs one stat whatever the number of readers.
   */
  get length(): number {
    return this.seen;
  }

  private changed(): void {
    this.events++;
    this.scheduleLook();
  }

  private scheduleLook(): void {
    if (this.pending || this.closed) return;
    this.pending = setTimeout(() => {
      const events = this.events;
      void this.look().finally(() => {
        this.pending = undefined;
        // A write whose event came during the stat may not be in what it saw: once more.
        if (this.events !== events) this.scheduleLook();
      });
    }, COALESCE_MS);
    this.pending.unref();
  }

  /** One stat: tells onGrowth when the file is larger than it was. */
  private async look(): Promise<number | undefined> {
    const now = await size(this.path);
    if (this.closed || now === undefined || now <= this.seen) return now;
    this.seen = now;
    this.onGrowth();
    return now;
  }

  private scheduleCheck(): void {
    this.check = setTimeout(() => {
      const events = this.events;
      void this.look().then((now) => {
        if (this.closed || this.polling) return;
        const grew = now !== undefined && this.checkedSize >= 0 && now > this.checkedSize;
        const heard = events !== this.eventsAtLastCheck;
        this.blindChecks = grew && !heard ? this.blindChecks + 1 : 0;
        if (grew && heard) this.proven = true;
        if (now !== undefined) this.checkedSize = now;
        this.eventsAtLastCheck = events;
        if (this.blindChecks >= BLIND_AFTER) return this.startPolling();
        if (this.proven) this.checkMs = Math.min(this.checkMs * 2, MAX_CHECK_MS);
        this.scheduleCheck();
      });
    }, this.checkMs);
    this.check.unref();
  }

  private startPolling(): void {
    if (this.closed || this.poll) return;
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.check);
    this.poll = setInterval(() => void this.look(), POLL_MS);
    this.poll.unref();
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    clearTimeout(this.pending);
    clearTimeout(this.check);
    clearInterval(this.poll);
  }
}

function size(path: string): Promise<number | undefined> {
  return new Promise((resolve) => stat(path, (error, info) => resolve(error ? undefined : info.size)));
}
