import { Worker } from 'node:worker_threads';

/*
 * Hashing a blob as it is written, on another thread.
 *
 * A cold 256 MiB layer costs the main thread ~0.2 s of sha256 (a CPU profile of one cold GET:
 * the largest item after idle time), time in which it neither reads upstream nor writes to the
 * client, while the second core sits mostly idle. So a blob past HASH_OFF_THREAD_BYTES is hashed
 * by a worker that reads the temporary file behind the writer (the bytes are in the page cache)
 * and is told how far the file is written; the writer asks it for the digest at the end. The
 * digest is then that of the bytes on disk, which is what gets committed. Smaller blobs
 * (manifests, configs) are hashed on the main thread: a message round trip costs more than
 * their hash.
 */

/** Blobs larger than this are hashed off the main thread. */
export const HASH_OFF_THREAD_BYTES = 4 * 1024 * 1024;
/** The worker is told of the writer's progress in steps of this many bytes. */
const ADVANCE_STEP = 8 * 1024 * 1024;

/** The worker: one job per file, messages in order, reads with its own synchronous calls. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(1024 * 1024);
const jobs = new Map();
function advance(job, upTo) {
  while (job.at < upTo) {
    const n = readSync(job.fd, buffer, 0, Math.min(buffer.length, upTo - job.at), job.at);
    if (n === 0) break;
    job.hash.update(buffer.subarray(0, n));
    job.at += n;
  }
}
parentPort.on('message', (m) => {
  const job = jobs.get(m.id);
  try {
    if (m.kind === 'start') jobs.set(m.id, { fd: openSync(m.path, 'r'), hash: createHash(m.algorithm), algorithm: m.algorithm, at: 0 });
    else if (!job) { if (m.kind === 'digest') parentPort.postMessage({ id: m.id, error: 'no such job (the worker was restarted)' }); }
    else if (m.kind === 'advance') advance(job, m.upTo);
    else if (m.kind === 'reset') { job.hash = createHash(job.algorithm); job.at = 0; }
    else if (m.kind === 'digest') {
      advance(job, m.upTo);
      const hashed = job.at;
      closeSync(job.fd);
      jobs.delete(m.id);
      parentPort.postMessage(hashed === m.upTo ? { id: m.id, hex: job.hash.digest('hex') } : { id: m.id, error: 'file shorter than written: ' + hashed + ' of ' + m.upTo + ' bytes' });
    } else if (m.kind === 'cancel') { closeSync(job.fd); jobs.delete(m.id); }
  } catch (error) {
    if (job) { try { closeSync(job.fd); } catch {} jobs.delete(m.id); }
    parentPort.postMessage({ id: m.id, error: String(error && error.message || error) });
  }
});
`;

type Reply = { id: number; hex?: string; error?: string };

/** The one hashing worker of the process, started on first use; it never keeps the process alive. */
class HashWorker {
  private worker?: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (hex: string) => void; reject: (error: Error) => void }>();

  post(message: Record<string, unknown>): void {
    this.ensure().postMessage(message);
  }

  id(): number {
    return this.nextId++;
  }

  digest(id: number, upTo: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.post({ kind: 'digest', id, upTo });
      // Held while a digest is owed (a short-lived process must not exit waiting for it).
      this.worker?.ref();
    });
  }

  /** Forgets a job whose digest will not be asked for (an aborted write). */
  forget(id: number): void {
    this.waiting.delete(id);
    this.settle();
  }

  /** The worker keeps the process alive only while a digest is owed. */
  private settle(): void {
    if (this.waiting.size === 0) this.worker?.unref();
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: Reply) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      this.settle();
      if (reply.hex !== undefined) waiter.resolve(reply.hex);
      else waiter.reject(new Error(`hashing failed: ${reply.error}`));
    });
    // A worker that dies fails the digests it owed; the next write starts a new one.
    const failAll = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const [id, waiter] of this.waiting) {
        this.waiting.delete(id);
        waiter.reject(new Error(`hashing worker stopped: ${error.message}`));
      }
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`exit ${code}`)));
    // After the listeners: a 'message' listener added later would ref it again.
    worker.unref();
    this.worker = worker;
    return worker;
  }
}

const shared = new HashWorker();

/** One file hashed off the main thread, as far as its writer says it is written. */
export class FileHashJob {
  private readonly id = shared.id();
  private ended = false;

  constructor(path: string, algorithm: string) {
    shared.post({ kind: 'start', id: this.id, path, algorithm });
  }

  /** How far the worker was last told the file is written. */
  private told = 0;

  /**
   * Bytes [0, upTo) of the file are written (and may be read). Told in steps of ADVANCE_STEP:
   * a message per 1 MiB write cost the main thread more (~0.1 s per 256 MiB in postMessage)
   * than the worker needs to keep up; digest() tells the rest.
   */
  advance(upTo: number): void {
    if (this.ended || upTo - this.told < ADVANCE_STEP) return;
    this.told = upTo;
    shared.post({ kind: 'advance', id: this.id, upTo });
  }

  /** The file was truncated to 0: hash from the start again. */
  reset(): void {
    this.told = 0;
    if (!this.ended) shared.post({ kind: 'reset', id: this.id });
  }

  /** The hex digest of bytes [0, upTo); rejects if the file holds fewer. */
  digest(upTo: number): Promise<string> {
    this.ended = true;
    return shared.digest(this.id, upTo);
  }

  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    shared.forget(this.id);
    shared.post({ kind: 'cancel', id: this.id });
  }
}
