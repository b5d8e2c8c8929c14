/** What a process holds open, from /proc: the witness of a descriptor or connection leak. */
import { readdirSync, readlinkSync } from 'node:fs';

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
