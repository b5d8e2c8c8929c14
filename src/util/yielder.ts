import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Lets a long synchronous job (an eviction plan over 150 000 blobs) share the event loop with
 * the requests a mirror serves: the job asks `due()` in its loops (a counter; the clock only
 * every 256 calls) and, when it has run for its budget, awaits `pause()`, which lets every
 * waiting I/O callback and request run before it goes on.
 */
export class Yielder {
  private readonly budgetMs: number;
  private last = performance.now();
  private calls = 0;

  constructor(budgetMs = 5) {
    this.budgetMs = budgetMs;
  }

  due(): boolean {
    return (++this.calls & 255) === 0 && performance.now() - this.last >= this.budgetMs;
  }

  async pause(): Promise<void> {
    await nextTurn();
    this.last = performance.now();
  }
}
