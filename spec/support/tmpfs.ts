/**
 * A small tmpfs for disk-full and read-only-store tests: the one fault that cannot be made with
 * ordinary files (a root process ignores permissions). Needs root with CAP_SYS_ADMIN; without
 * it the tests that use it skip with the reason (the always-run minfreespace test still covers
 * pass-through on a "full" store).
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tmpfs {
  path: string;
  remountReadOnly(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(path: string, sizeMiB: number): Promise<Tmpfs | string> {
  mkdirSync(path, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', path]);
  } catch (error) {
    return `cannot mount a tmpfs (needs root): ${(error as Error).message.split('\n')[0]}`;
  }
  return {
    path,
    remountReadOnly: async () => {
      await run('mount', ['-o', 'remount,ro', path]);
    },
    unmount: async () => {
      await run('umount', ['-l', path]).catch(() => {});
    },
  };
}
