/**
 * The body of one bcrypt worker thread (see bcrypt-pool.ts): compares one password with one
 * hash per message, off the event loop that serves pulls. `npm run build` bundles it as
 * dist/bcrypt-worker.mjs, next to the mirror's bundle.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

export interface CompareJob {
  id: number;
  password: string;
  hash: string;
}

export interface CompareAnswer {
  id: number;
  ok: boolean;
}

/*
 * The lowest CPU priority for this thread only (Linux keeps a nice value per thread, and
 * /proc/thread-self names its id): when the machine is short of CPU, the event loop serving
 * pulls always goes first, and checks wait. Elsewhere the thread keeps the default share.
 */
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (tid > 0 && tid !== process.pid) setPriority(tid, 19);
} catch {
  // Not Linux, or not allowed: the default priority.
}

parentPort?.on('message', (job: CompareJob) => {
  let ok = false;
  try {
    ok = bcrypt.compareSync(job.password, job.hash);
  } catch {
    // A hash bcryptjs cannot parse matches nothing (htpasswd.ts only loads well-formed ones).
  }
  parentPort?.postMessage({ id: job.id, ok } satisfies CompareAnswer);
});
