import { ensureDir } from './ensure-dir.ts';
import { hostname } from 'node:os';
import { readdir, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../logging/logger.ts';

/** How often an instance marks its temporary directory as alive. */
const HEARTBEAT_MS = 10_000;
/** A directory whose heartbeat is this old belongs to a dead instance (on any host). */
const STALE_AFTER_MS = 60_000;

/**
 * This instance's own directory for downloads in flight, `_tmp/<host>-<pid>-<random>`.
 *
 * Several instances may share one store (a shared volume), so none may wipe `_tmp` whole.
 * Each one keeps its files in its own directory and touches it every few seconds; a sweep
 * removes the directories of instances that died: at once when the pid was on this host and
 * is gone (a restart after SIGKILL), after a minute without heartbeat otherwise.
 */
export class TempArea {
  readonly root: string;
  /** This instance's name (INSTANCE_ID): its directory's, and its name in fleet leases. */
  readonly id: string;
  readonly dir: string;
  private readonly host = hostName();
  private readonly logger: Logger;
  private heartbeat?: NodeJS.Timeout;

  constructor(root: string, logger: Logger) {
    this.root = root;
    this.logger = logger;
    this.id = `${this.host}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.dir = join(root, this.id);
  }

  /** Creates this instance's directory, sweeps dead ones, and keeps doing both. */
  async start(): Promise<void> {
    await ensureDir(this.dir);
    await this.sweep();
    this.heartbeat = setInterval(() => {
      const now = new Date();
      // Recreate the directory if something removed it: downloads must keep a place to go.
      void ensureDir(this.dir)
        .then(() => utimes(this.dir, now, now))
        .then(() => this.sweep())
        .catch((error: Error) => this.logger.warn('temporary area heartbeat failed', { error: error.message }));
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Removes what dead instances left behind; returns how many entries went. */
  async sweep(): Promise<number> {
    let entries: string[];
    try {
      entries = await readdir(this.root);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const entry of entries) {
      const path = join(this.root, entry);
      // Not an instance's (their names start with a letter or digit): the access clock's journal in a bucket's spool.
      if (path === this.dir || entry.startsWith('_')) continue;
      if (await this.isAbandoned(entry, path)) {
        await rm(path, { recursive: true, force: true });
        removed++;
      }
    }
    if (removed > 0) this.logger.info('removed abandoned temporary files', { entries: removed });
    return removed;
  }

  private async isAbandoned(entry: string, path: string): Promise<boolean> {
    const match = /^(.+)-(\d+)-[0-9a-f]{8}$/.exec(entry);
    if (match && match[1] === this.host && !processAlive(Number(match[2]))) return true;
    try {
      return Date.now() - (await stat(path)).mtimeMs > STALE_AFTER_MS;
    } catch {
      return false;
    }
  }
}

/** The host part of an instance's name: what INSTANCE_ID allows of the hostname. */
function hostName(): string {
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_').slice(0, 64);
  return /^[A-Za-z0-9]/.test(host) ? host : `h${host.slice(0, 63)}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
