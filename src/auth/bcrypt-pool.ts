import { Worker } from 'node:worker_threads';
import type { Logger } from '../logging/logger.ts';
import type { CompareAnswer, CompareJob } from './bcrypt-worker.ts';

/**
 * The worker's code: next to this module when run from source, next to the bundle
 * (dist/bcrypt-worker.mjs, the build's second entry) when run from dist/pullmirror.mjs.
 */
const WORKER_URL = import.meta.url.endsWith('.ts') ? new URL('./bcrypt-worker.ts', import.meta.url) : new URL('./bcrypt-worker.mjs', import.meta.url);

interface Job {
  password: string;
  hash: string;
  resolve(ok: boolean): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker;
  job?: Job;
  id: number;
}

/**
 * bcrypt comparisons on a few worker threads, never on the event loop: bcrypt is slow on
 * purpose (0.1–0.5 s at cost 10 in pure JS), and one check on the event loop stalls every pull
 * in flight, so anyone who can reach the port could stall the mirror by guessing passwords.
 * Checks wait in a bounded queue; when it is full `compare` answers 'busy' at once (the caller
 * says 429), it never queues without bound. A worker that dies fails its check and is replaced.
 */
export class BcryptPool {
  private readonly slots: Slot[] = [];
  private readonly waiting: Job[] = [];
  private readonly maxWaiting: number;
  private readonly logger: Logger;
  private nextId = 0;
  private closed = false;

  constructor(options: { threads: number; queue: number; logger: Logger }) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads: expected an integer >= 1, got ${options.threads}`);
    if (!Number.isInteger(options.queue) || options.queue < 0) throw new RangeError(`queue: expected an integer >= 0, got ${options.queue}`);
    this.maxWaiting = options.queue;
    this.logger = options.logger;
    for (let i = 0; i < options.threads; i++) this.slots.push(this.spawn());
  }

  /** Checks waiting for a thread (not counting those running). */
  get queued(): number {
    return this.waiting.length;
  }

  /** Whether the password matches the hash; 'busy' (at once) when every thread is busy and the queue is full. */
  compare(password: string, hash: string): Promise<boolean> | 'busy' {
    if (this.closed) return 'busy';
    const idle = this.slots.find((slot) => slot.job === undefined);
    if (!idle && this.waiting.length >= this.maxWaiting) return 'busy';
    return new Promise<boolean>((resolve, reject) => {
      const job: Job = { password, hash, resolve, reject };
      if (idle) this.run(idle, job);
      else this.waiting.push(job);
    });
  }

  /** Stops the threads; checks still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.waiting.splice(0)) job.reject(new Error('bcrypt pool closed'));
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private spawn(): Slot {
    // unref: idle threads never keep the process alive; sockets of requests waiting on a check do.
    const worker = new Worker(WORKER_URL, { name: 'bcrypt' });
    worker.unref();
    const slot: Slot = { worker, id: -1 };
    worker.on('message', (answer: CompareAnswer) => {
      const job = slot.job;
      if (!job || answer.id !== slot.id) return;
      slot.job = undefined;
      job.resolve(answer.ok);
      this.next(slot);
    });
    worker.on('error', (error: Error) => this.lost(slot, error));
    worker.on('exit', (code) => this.lost(slot, new Error(`bcrypt worker exited with code ${code}`)));
    return slot;
  }

  private run(slot: Slot, job: Job): void {
    slot.job = job;
    slot.id = ++this.nextId;
    slot.worker.postMessage({ id: slot.id, password: job.password, hash: job.hash } satisfies CompareJob);
  }

  private next(slot: Slot): void {
    const job = this.waiting.shift();
    if (job) this.run(slot, job);
  }

  /** A thread died (an 'error' is followed by 'exit': handled once): fail its check, start another. */
  private lost(slot: Slot, error: Error): void {
    const index = this.slots.indexOf(slot);
    if (index < 0 || this.closed) return;
    this.logger.warn('bcrypt worker lost; starting another', { error: error.message });
    const job = slot.job;
    slot.job = undefined;
    job?.reject(error);
    const replacement = this.spawn();
    this.slots[index] = replacement;
    this.next(replacement);
  }
}
