import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../logging/logger.ts';
import type { SweepResult } from './sweeper.ts';
import { PassHeldElsewhere } from './pass-lock.ts';

/** How many passes the status page can look back on (kept in memory, lost on restart). */
const HISTORY = 20;
/** Items named per kind in a pass's record; the counts are complete. */
const FIRST_ITEMS = 10;

/** One finished (or failed) pass, as the status page shows it. */
export interface PassRecord {
  startedAt: number;
  durationMs: number;
  /** 'failed' carries the error message (never a secret: file system and Redis errors only). */
  outcome: 'done' | 'failed';
  error?: string;
  removed: { tags: number; manifests: number; blobs: number };
  /** The first items removed of each kind. */
  first: { tags: string[]; manifests: string[]; blobs: string[] };
  freed: number;
  sizeBefore: number;
  sizeAfter: number;
  /** Items the plan named that were used meanwhile, and so kept. */
  kept: number;
  capUnreached: boolean;
}

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
  private readonly passes: PassRecord[] = [];

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
    const startedAt = Date.now();
    const startedMono = performance.now();
    this.logger.info('eviction pass started');
    this.running = this.pass()
      .then((result) => {
        this.record(passRecord(startedAt, result));
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
        if (error instanceof PassHeldElsewhere) {
          // Not a failure: the fleet runs one pass at a time, and another instance runs it now.
          this.logger.info('eviction pass skipped: another instance of the fleet runs one', { holder: error.holder });
          return undefined;
        }
        this.logger.error('eviction pass failed', { error: error.message });
        this.record({
          startedAt,
          durationMs: Math.round(performance.now() - startedMono),
          outcome: 'failed',
          error: error.message,
          removed: { tags: 0, manifests: 0, blobs: 0 },
          first: { tags: [], manifests: [], blobs: [] },
          freed: 0,
          sizeBefore: 0,
          sizeAfter: 0,
          kept: 0,
          capUnreached: false,
        });
        return undefined;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** The last passes, newest first. */
  history(): PassRecord[] {
    return [...this.passes].reverse();
  }

  /** When the schedule runs the next pass; null when stopped. */
  nextRun(): Date | null {
    return this.task?.getNextRun() ?? null;
  }

  /** Resolves once no pass runs (at once when none does). */
  async whenIdle(): Promise<void> {
    await this.running;
  }

  /** Whether a pass is running now. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  private record(pass: PassRecord): void {
    this.passes.push(pass);
    if (this.passes.length > HISTORY) this.passes.shift();
  }

  /** Stops scheduling and waits for a pass in flight. */
  async stop(): Promise<void> {
    await this.task?.destroy();
    await this.running;
  }
}

function passRecord(startedAt: number, result: SweepResult): PassRecord {
  return {
    startedAt,
    durationMs: result.durationMs,
    outcome: 'done',
    removed: { tags: result.tags.length, manifests: result.links.length, blobs: result.blobs.length },
    first: {
      tags: result.tags.slice(0, FIRST_ITEMS).map((tag) => `${tag.repository}:${tag.tag}`),
      manifests: result.links.slice(0, FIRST_ITEMS).map((link) => `${link.repository}@${link.digest}`),
      blobs: result.blobs.slice(0, FIRST_ITEMS).map((blob) => blob.digest),
    },
    freed: result.freed,
    sizeBefore: result.sizeBefore,
    sizeAfter: result.sizeAfter,
    kept: result.kept,
    capUnreached: result.capUnreached,
  };
}
