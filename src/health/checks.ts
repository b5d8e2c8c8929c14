import { randomBytes } from 'node:crypto';
import { access, mkdir, open, rename, unlink } from 'node:fs/promises';
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
 * probes in a row (distribution's `health.*.threshold`); one probe runs at a time.
 */
export class CachedCheck {
  readonly name: string;
  private readonly probe: () => Promise<void>;
  private readonly intervalMs: number;
  private readonly threshold: number;
  private readonly advisory: boolean;
  private last?: CheckStatus;
  private running?: Promise<CheckStatus>;

  constructor(name: string, probe: () => Promise<void>, options: { intervalMs: number; threshold: number; advisory?: boolean }) {
    this.name = name;
    this.probe = probe;
    this.intervalMs = options.intervalMs;
    this.threshold = Math.max(1, options.threshold);
    this.advisory = options.advisory ?? false;
  }

  async status(now = Date.now()): Promise<CheckStatus> {
    if (this.last && now - this.last.checkedAt < this.intervalMs) return this.last;
    this.running ??= (async () => {
      let error: string | undefined;
      try {
        await this.probe();
      } catch (caught) {
        error = describe(caught);
      }
      const failures = error === undefined ? 0 : (this.last?.failures ?? 0) + 1;
      this.last = { ok: failures < this.threshold, error, checkedAt: Date.now(), failures, ...(this.advisory ? { advisory: true as const } : {}) };
      this.running = undefined;
      return this.last;
    })();
    return this.running;
  }
}

function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = (error as Error).message ?? String(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/**
 * The store is writable: a small file is written, flushed and renamed inside the store's
 * temporary area, then removed — the same operations a blob fill makes.
 */
export function storeWritableProbe(tmpRoot: string): () => Promise<void> {
  // Unique per process, not per pid: a fleet's pods share one volume and are each pid 1.
  const name = `.health-${process.pid}-${randomBytes(6).toString('hex')}`;
  return async () => {
    await mkdir(tmpRoot, { recursive: true });
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

/** Every readiness check of a mirror; ready when all pass but the advisory ones. */
export class Readiness {
  private readonly checks: CachedCheck[];

  constructor(checks: CachedCheck[]) {
    this.checks = checks;
  }

  add(check: CachedCheck): void {
    this.checks.push(check);
  }

  async status(): Promise<{ ready: boolean; checks: Record<string, CheckStatus> }> {
    const results = await Promise.all(this.checks.map(async (check) => [check.name, await check.status()] as const));
    return { ready: results.every(([, status]) => status.ok || status.advisory), checks: Object.fromEntries(results) };
  }
}

