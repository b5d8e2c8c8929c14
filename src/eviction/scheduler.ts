import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../logging/logger.ts';
import type { SweepResult } from './sweeper.ts';

/**
 * Runs eviction passes on a node-cron schedule inside the serving process (only when
 * storage.delete.enabled, as distribution). Passes never overlap: a tick that comes while
 * one runs is skipped and logged, whatever the schedule and the store's size.
 */
export class EvictionScheduler {
  private readonly schedule: string;
  private readonly pass: () => Promise<SweepResult>;
  private readonly logger: Logger;
  private task?: ScheduledTask;
  private running?: Promise<SweepResult | undefined>;

  constructor(options: { schedule: string; pass: () => Promise<SweepResult>; logger: Logger }) {
    this.schedule = options.schedule;
    this.pass = options.pass;
    this.logger = options.logger;
  }

  start(): void {
    this.task = cron.schedule(this.schedule, () => void this.runOnce(), { name: 'eviction', noOverlap: true });
    this.logger.info('eviction scheduled', { schedule: this.schedule });
  }

  /** One pass now, unless one is running (then undefined). */
  runOnce(): Promise<SweepResult | undefined> {
    if (this.running) {
      this.logger.info('eviction pass still running; tick skipped');
      return Promise.resolve(undefined);
    }
    this.logger.info('eviction pass started');
    this.running = this.pass()
      .then((result) => {
        this.logger.info('eviction pass finished', {
          tags: result.tags.length,
          manifests: result.links.length,
          blobs: result.blobs.length,
          freed: result.freed,
          size: result.sizeAfter,
          kept: result.kept,
          capUnreached: result.capUnreached,
          durationMs: result.durationMs,
          maxEventLoopDelayMs: Math.round(result.maxEventLoopDelayMs * 10) / 10,
        });
        return result;
      })
      .catch((error: Error) => {
        this.logger.error('eviction pass failed', { error: error.message });
        return undefined;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Stops scheduling and waits for a pass in flight. */
  async stop(): Promise<void> {
    await this.task?.destroy();
    await this.running;
  }
}
