/** What a process holds open, from /proc, and what it left in a spool: the witnesses of a leak. */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

/**
 * The temp files in a spool directory (recursively): what a download or an upload left. The
 * access clock's journal (`_access-clock/`) lives in a bucket store's spool too — a record kept
 * on purpose, appended whenever a pull is recorded — so it is not counted.
 */
export function spoolTempFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && !path.relative(dir, entry.parentPath).split(path.sep).includes('_access-clock'))
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

/** Descriptors of a process that point into a directory (open blobs and temp files). */
export function openFilesUnder(pid: number, dir: string): string[] {
  const found: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith(dir)) found.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return found;
}

/** Sockets the process holds (connections of any kind, listening ones included). */
export function socketCount(pid: number): number {
  let sockets = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed meanwhile
    }
  }
  return sockets;
}
