import { randomBytes } from 'node:crypto';
import { access, open, opendir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';

/** One check's last answer, as /health/ready reports it. */
export interface CheckStatus {
  ok: boolean;
  /** Why it failed (never a secret: paths and error codes only). */
  error?: string;
  checkedAt: number;
  /** Failures in a row; the check fails once they reach its threshold. */
  failures: number;
  /** Reported but not counted: another registry's upstream, whose outage degrades only its own images. */
  advisory?: true;
}

/**
 * A health check run on demand and cached for `intervalMs`, so a load balancer polling every
 * second costs one probe per interval. It reports unhealthy only after `threshold` failed
 * probes in a row (distribution's `health.*.threshold`); one probe runs at a time, and one
 * that gets no answer within `timeoutMs` fails (a hung NFS store answers nothing): the next
 * run waits for that same probe again instead of starting another beside it.
 */
export class CachedCheck {
  readonly name: string;
  private readonly probe: () => Promise<void>;
  private readonly intervalMs: number;
  private readonly threshold: number;
  private readonly timeoutMs: number;
  private readonly advisory: boolean;
  private last?: CheckStatus;
  /** performance.now() at the last run's end: the cache's interval runs on a monotonic clock (checkedAt is for people). */
  private lastRunAt = -Infinity;
  private running?: Promise<CheckStatus>;
  private probing?: Promise<void>;

  constructor(name: string, probe: () => Promise<void>, options: { intervalMs: number; threshold: number; timeoutMs?: number; advisory?: boolean }) {
    this.name = name;
    this.probe = probe;
    this.intervalMs = options.intervalMs;
    this.threshold = Math.max(1, options.threshold);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.advisory = options.advisory ?? false;
  }

  /** `now`: on performance.now()'s clock. */
  async status(now = performance.now()): Promise<CheckStatus> {
    if (this.last && now - this.lastRunAt < this.intervalMs) return this.last;
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<CheckStatus> {
    this.probing ??= this.probe().finally(() => {
      this.probing = undefined;
    });
    let error: string | undefined;
    try {
      await withDeadline(this.probing, this.timeoutMs);
    } catch (caught) {
      error = describe(caught);
    }
    const failures = error === undefined ? 0 : (this.last?.failures ?? 0) + 1;
    this.last = { ok: failures < this.threshold, error, checkedAt: Date.now(), failures, ...(this.advisory ? { advisory: true as const } : {}) };
    this.lastRunAt = performance.now();
    return this.last;
  }
}

/** How long a probe without its own deadline may take (the store's: a hung mount answers nothing). */
const DEFAULT_PROBE_TIMEOUT_MS = 5_000;

async function withDeadline(work: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = (error as Error).message ?? String(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/**
 * The store can be read, which is what serving cached images needs: its root is a directory
 * that can be listed. A store that takes no write still serves what it holds (new blobs pass
 * through), so writing is a separate, advisory check.
 */
export function storeReadableProbe(root: string): () => Promise<void> {
  return async () => {
    const stats = await stat(root);
    if (!stats.isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${root} is not a directory`), { code: 'ENOTDIR' });
    const dir = await opendir(root);
    try {
      await dir.read();
    } finally {
      await dir.close();
    }
  };
}

/**
 * The store is writable: a small file is written, flushed and renamed inside the store's
 * temporary area, then removed — the same operations a blob fill makes. It creates no
 * directory: a store whose volume went away must not be re-made as an empty one.
 */
export function storeWritableProbe(tmpRoot: string): () => Promise<void> {
  // Unique per process, not per pid: a fleet's pods share one volume and are each pid 1.
  const name = `.health-${process.pid}-${randomBytes(6).toString('hex')}`;
  return async () => {
    const temp = join(tmpRoot, `${name}-${randomBytes(4).toString('hex')}`);
    const target = join(tmpRoot, name);
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(String(Date.now()));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, target);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
    await unlink(target);
  };
}

/** The upstream is reachable: `GET /v2/` gets an HTTP answer, whatever its status (401 included). */
export function upstreamReachableProbe(upstream: UpstreamRegistry, timeoutMs: number): () => Promise<void> {
  return async () => {
    try {
      await upstream.probe(timeoutMs);
    } catch (error) {
      const cause = (error as Error & { cause?: Error }).cause;
      throw new Error(`${upstream.url.origin} unreachable: ${(error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause?.message ?? (error as Error).message)}`, { cause: error });
    }
  };
}

/**
 * The upstream takes the mirror's credentials: fails while they are refused (the mirror pulls
 * anonymously meanwhile), so a deploy with a wrong proxy.password does not look ready. While
 * refused (or not yet checked) each probe asks again, one token request; once accepted it asks
 * nothing, a refusal during real traffic turning it back.
 */
export function upstreamCredentialsProbe(upstream: UpstreamRegistry): () => Promise<void> {
  return async () => {
    let status = upstream.credentialStatus;
    if (status.state === 'refused' || status.state === 'unchecked') {
      try {
        status = await upstream.checkCredentials();
      } catch {
        // Unreachable: the upstream check reports that; the credentials are not known bad.
        return;
      }
    }
    if (status.state === 'refused') {
      throw new Error(`the mirror's upstream credentials were refused by ${status.realm} (${status.status}); pulling anonymously`);
    }
  };
}

/**
 * distribution's file check: unhealthy while the file exists. Operators touch it to take an
 * instance out of a load balancer before maintenance.
 */
export function fileAbsentProbe(path: string): () => Promise<void> {
  return async () => {
    let exists = true;
    try {
      await access(path);
    } catch {
      exists = false;
    }
    if (exists) throw new Error(`${path} exists`);
  };
}

/**
 * Every readiness check of a mirror; ready when all pass but the advisory ones. Readiness says
 * whether this instance can serve (its store readable, no drain file): the upstream and its
 * credentials are advisory, since during an upstream outage cached images still pull, and an
 * unready fleet would leave the Service with no endpoint exactly when the cache matters most.
 */
export class Readiness {
  private readonly checks: CachedCheck[];

  constructor(checks: CachedCheck[]) {
    this.checks = checks;
  }

  add(check: CachedCheck): void {
    this.checks.push(check);
  }

  /** Runs the checks that are due without waiting for them (liveness keeps the figures current). */
  refresh(): void {
    void this.status();
  }

  async status(): Promise<{ ready: boolean; checks: Record<string, CheckStatus> }> {
    const results = await Promise.all(this.checks.map(async (check) => [check.name, await check.status()] as const));
    return { ready: results.every(([, status]) => status.ok || status.advisory), checks: Object.fromEntries(results) };
  }
}

