import { randomBytes } from 'node:crypto';
import { appendFile, copyFile, link, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logging/logger.ts';
import { ensureDir } from '../storage/ensure-dir.ts';
import { Yielder } from '../util/yielder.ts';
import { AccessClockUnavailable, FLUSH_MS, LOOKUP_BATCH, parseTime, PendingTouches, type AccessClock } from './access-clock.ts';

/*
 * The journal (StorePaths.accessClock: `<root>/_access-clock/journal` on the filesystem store;
 * on a bucket `<spooldirectory>/_access-clock/<store id>/journal`, see access-clock-setup.ts):
 *
 *   <ms> <item>\n     a use of item at ms (the later of two lines for one item wins)
 *   - <item>\n        the item was deleted: its record goes
 *
 * Lines are appended in batches (FLUSH_MS), so another process (`pullmirror gc`) sees a use a
 * moment after it happened, and a crash loses at most one batch; a torn last line is skipped.
 * When the journal has grown to twice what it held at the last compaction, the instance
 * rewrites it with one line per item (a temp file renamed over it): readers see the old file
 * or the new, whole. A line another process appends between that read and the rename is lost;
 * only `gc` does (the records of what it deleted), and a record left behind is harmless.
 */
const JOURNAL = 'journal';
const HEADER = '# pullmirror access clock 1\n';
/** Below this, a journal is never compacted (about 50 000 lines). */
const COMPACT_MIN_BYTES = 4 * 1024 * 1024;
/** The records read for a pass or the browser are dropped once unused this long: a serving mirror holds none between passes. */
const IDLE_MS = 60_000;
/** The longest line taken from a journal: an item is a tag or link name, well under this. */
const MAX_LINE = 4096;

export interface LocalAccessClockOptions {
  /**
   * The directory of the journal (StorePaths.accessClockDir), on a local disk; or how to find
   * it when that waits on the store (its id, on a bucket that has not answered yet): a function
   * that throws while it is not known, asked again at the next write or lookup.
   */
  dir: string | (() => Promise<string>);
  logger: Logger;
  /** Whether this process keeps the journal small (the serving instance); `gc` only appends. */
  compacts?: boolean;
  flushMs?: number;
  /** Below this size the journal is never compacted (tests make it small). */
  compactMinBytes?: number;
}

/**
 * The access clock of an instance without Redis: an append-only journal on a local disk,
 * which survives restarts, and which `pullmirror gc` beside the instance reads and appends to.
 * Nothing is held in memory between passes but the touches of the last FLUSH_MS: a pass (or
 * the browser) reads the journal, and then only what was appended since its last read.
 */
export class LocalAccessClock implements AccessClock {
  readonly kind = 'local';
  private readonly locate: () => Promise<string>;
  /** The journal's directory and file, once known. */
  private place?: { dir: string; file: string };
  private readonly logger: Logger;
  private readonly compacts: boolean;
  private readonly compactMinBytes: number;
  private readonly pending = new PendingTouches();
  private forgets: string[] = [];
  private timer?: NodeJS.Timeout;
  private writing?: Promise<void>;
  /** The journal's size after the last compaction (or as found at start). */
  private compactedBytes = -1;
  private warned = false;
  /** Whether the journal ends with a whole line (asked before this process's first append). */
  private lineStart?: 'yes' | 'no';
  /** What was read of the journal: its records, the file it was read from, how far. */
  /** `usedAt`: performance.now() of the last read (an interval only). */
  private read?: JournalRead & { usedAt: number };
  private reading?: Promise<Map<string, number>>;

  constructor(options: LocalAccessClockOptions) {
    const dir = options.dir;
    this.locate = typeof dir === 'string' ? async () => dir : dir;
    this.logger = options.logger;
    this.compacts = options.compacts ?? true;
    this.compactMinBytes = options.compactMinBytes ?? COMPACT_MIN_BYTES;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? FLUSH_MS);
    this.timer.unref();
  }

  touch(item: string, atMs: number): void {
    this.pending.add(item, atMs);
  }

  async lastUses(items: readonly string[]): Promise<(number | undefined)[]> {
    if (items.length > LOOKUP_BATCH) throw new RangeError(`at most ${LOOKUP_BATCH} items per lookup`);
    const records = await this.records();
    return items.map((item) => {
      const recorded = records.get(item);
      const pending = this.pending.get(item);
      return recorded === undefined ? pending : pending === undefined ? recorded : Math.max(recorded, pending);
    });
  }

  async forget(items: readonly string[]): Promise<void> {
    for (const item of items) {
      this.pending.delete(item);
      this.read?.records.delete(item);
      this.forgets.push(item);
    }
    await this.flush();
  }

  flush(): Promise<void> {
    this.writing ??= this.write().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** Appends what is pending; compacts the journal when it has doubled. */
  private async write(): Promise<void> {
    if (this.read && performance.now() - this.read.usedAt > IDLE_MS) this.read = undefined;
    if (this.pending.size === 0 && this.forgets.length === 0) return;
    const taken = this.pending.take();
    const forgets = this.forgets;
    this.forgets = [];
    const lines: string[] = [];
    for (const item of forgets) if (safeItem(item)) lines.push(`- ${item}\n`);
    for (const [item, atMs] of taken) if (safeItem(item)) lines.push(`${Math.floor(atMs)} ${item}\n`);
    try {
      const { dir, file } = await this.journal();
      await ensureDir(dir);
      // A crash may have left half a line: the first batch of a process starts on a line of its own.
      if (!this.lineStart) this.lineStart = await endsLine(file);
      await appendFile(file, (this.lineStart === 'no' ? '\n' : '') + lines.join(''));
      this.lineStart = 'yes';
      this.warned = false;
    } catch (error) {
      this.pending.restore(taken);
      this.forgets.unshift(...forgets);
      if (!this.warned) {
        this.warned = true;
        this.logger.warn('access clock: cannot write the journal; uses wait in memory', { file: this.place?.file, error: (error as Error).message });
      }
      return;
    }
    if (this.compacts) await this.compactIfGrown().catch((error: Error) => this.logger.warn('access clock: compaction failed', { file: this.place?.file, error: error.message }));
  }

  /** Where the journal is: found once, then kept (throws while it cannot be found). */
  private async journal(): Promise<{ dir: string; file: string }> {
    if (!this.place) {
      const dir = await this.locate();
      this.place = { dir, file: join(dir, JOURNAL) };
    }
    return this.place;
  }

  private async compactIfGrown(): Promise<void> {
    const { dir, file } = await this.journal();
    const size = (await stat(file)).size;
    if (this.compactedBytes < 0) this.compactedBytes = size;
    if (size < Math.max(this.compactMinBytes, 2 * this.compactedBytes)) return;
    const records = await readJournal(file);
    const temp = tempName(dir);
    const handle = await open(temp, 'w');
    try {
      await writeRecords(handle, records.records);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, file);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
    this.compactedBytes = (await stat(file)).size;
    this.logger.info('access clock journal compacted', { records: records.records.size, bytes: this.compactedBytes, before: size });
  }

  /** The journal's records, read whole the first time, then only what was appended since. */
  private records(): Promise<Map<string, number>> {
    this.reading ??= this.catchUp().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async catchUp(): Promise<Map<string, number>> {
    try {
      const read = await readJournal((await this.journal()).file, this.read);
      this.read = { ...read, usedAt: performance.now() };
      return read.records;
    } catch (error) {
      throw new AccessClockUnavailable(`the access clock cannot be read: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Removes temp files a crash left during a compaction (not the journal). */
  async removeLeftovers(): Promise<void> {
    const dir = this.place?.dir;
    if (!dir) return;
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) if (name.startsWith(`${JOURNAL}.`) && name.endsWith('.tmp')) await unlink(join(dir, name)).catch(() => {});
  }
}

/** A temporary file beside the journal in `dir` (removeLeftovers knows the pattern). */
function tempName(dir: string): string {
  return join(dir, `${JOURNAL}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Gives the journal directory `to` a copy of the journal in `from` when it has none of its own
 * yet (a layout that moved: access-clock-setup.ts). Copied whole to a temporary file, then
 * linked into place only if still absent: a journal another process started meanwhile is kept.
 */
export async function adoptJournal(from: string, to: string): Promise<void> {
  const source = join(from, JOURNAL);
  const target = join(to, JOURNAL);
  if ((await exists(target)) || !(await exists(source))) return;
  await ensureDir(to);
  const temp = tempName(to);
  try {
    await copyFile(source, temp);
    await link(temp, target).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  } finally {
    await unlink(temp).catch(() => {});
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Whether a file is missing, empty, or ends with a newline. */
async function endsLine(file: string): Promise<'yes' | 'no'> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch {
    return 'yes';
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return 'yes';
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    return last[0] === 0x0a ? 'yes' : 'no';
  } finally {
    await handle.close();
  }
}

/** An item as it may stand on a journal line: printable, no space or newline, bounded. */
function safeItem(item: string): boolean {
  return item.length > 0 && item.length < MAX_LINE && !/[\s\u0000-\u001f]/.test(item);
}

/**
 * Reads a journal into records: only what was appended since `known` when it is the same file
 * (the same inode, not shorter), else whole (compacted meanwhile, or never read). Reads in
 * chunks, up to the last whole line; answers the records, the file's inode and how far it read.
 */
async function readJournal(file: string, known?: JournalRead): Promise<JournalRead> {
  const turn = new Yielder();
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: new Map(), ino: 0, offset: 0 };
    throw error;
  }
  const { ino, size } = await handle.stat().catch(async (error: Error) => {
    await handle.close();
    throw error;
  });
  const same = known !== undefined && known.ino === ino && known.offset <= size;
  const records = same ? known.records : new Map<string, number>();
  let offset = same ? known.offset : 0;
  try {
    const chunk = Buffer.alloc(1024 * 1024);
    let position = offset;
    let carry: Buffer = Buffer.alloc(0);
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      const end = bytes.lastIndexOf(0x0a);
      if (end < 0) {
        // No whole line yet; past MAX_LINE bytes without one it is no journal line: skipped.
        carry = bytes.length > MAX_LINE ? Buffer.alloc(0) : Buffer.from(bytes);
        if (bytes.length > MAX_LINE) offset = position;
        continue;
      }
      for (const line of bytes.toString('utf8', 0, end).split('\n')) {
        applyLine(records, line);
        if (turn.due()) await turn.pause();
      }
      carry = Buffer.from(bytes.subarray(end + 1));
      offset = position - carry.length;
    }
  } finally {
    await handle.close();
  }
  return { records, ino, offset };
}

interface JournalRead {
  records: Map<string, number>;
  ino: number;
  offset: number;
}

function applyLine(records: Map<string, number>, line: string): void {
  const space = line.indexOf(' ');
  if (space <= 0) return;
  const item = line.slice(space + 1);
  if (!safeItem(item)) return;
  const head = line.slice(0, space);
  if (head === '-') {
    records.delete(item);
    return;
  }
  const atMs = parseTime(head);
  if (atMs === undefined) return;
  const known = records.get(item);
  if (known === undefined || atMs > known) records.set(item, atMs);
}

/** One line per record, written in blocks of about 1 MiB. */
async function writeRecords(handle: FileHandle, records: Map<string, number>): Promise<void> {
  let block = HEADER;
  for (const [item, atMs] of records) {
    block += `${atMs} ${item}\n`;
    if (block.length >= 1024 * 1024) {
      await handle.write(block);
      block = '';
    }
  }
  if (block) await handle.write(block);
}
