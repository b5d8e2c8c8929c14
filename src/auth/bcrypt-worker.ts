/**
 * The body of one bcrypt worker thread (see bcrypt-pool.ts): compares one password with one
 * hash per message, off the event loop that serves pulls. `npm run build` bundles it as
 * dist/bcrypt-worker.mjs, next to the mirror's bundle.
 */
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

parentPort?.on('message', (job: CompareJob) => {
  let ok = false;
  try {
    ok = bcrypt.compareSync(job.password, job.hash);
  } catch {
    // A hash bcryptjs cannot parse matches nothing (htpasswd.ts only loads well-formed ones).
  }
  parentPort?.postMessage({ id: job.id, ok } satisfies CompareAnswer);
});
