/**
 * Process and environment helpers for the real-server e2e harness.
 *
 * Why: e2e tests start real daemons (docker-registry, redis-server, the mirror
 * itself). They must bind only to 127.0.0.1 on free ports, log to files we can
 * read when something fails, always be stopped (even if a test throws), and be
 * skipped locally — but FAIL in CI — when a binary is missing.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, openSync, closeSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Ask the kernel for a free TCP port on 127.0.0.1 (there is a tiny race until the caller binds it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: no port assigned'));
        return;
      }
      const { port } = addr;
      srv.close(() => resolve(port));
    });
  });
}

export interface StartProcessOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended here; defaults to a file in a fresh temp dir. */
  logFile?: string;
}

export interface StartedProcess {
  pid: number;
  child: ChildProcess;
  logFile: string;
  /** Resolves once the process has exited (also after an unexpected crash). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. Idempotent. */
  stop(): Promise<void>;
  /** The log file's contents (last `maxChars`), for error messages. */
  readLog(maxChars?: number): string;
}

/**
 * Children we started and that are still alive. If the test runner exits
 * without running `after()` hooks (crash, uncaught error), we SIGKILL exactly
 * these pids so no daemons are left holding ports. We never touch other pids.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Spawn a long-running process with its output going to a log file (never to the test's stdout). */
export function startProcess(cmd: string, args: string[], opts: StartProcessOptions = {}): StartedProcess {
  const logFile = opts.logFile ?? path.join(mkdtempSync(path.join(os.tmpdir(), 'pullmirror-log-')), `${path.basename(cmd)}.log`);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    // The child has its own copy of the descriptor.
    closeSync(fd);
  }
  if (child.pid === undefined) {
    throw new Error(`startProcess: could not spawn ${cmd}`);
  }
  installExitHook();
  liveChildren.add(child);
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      liveChildren.delete(child);
      resolve({ code, signal });
    });
    child.once('error', () => {
      exitedFlag = true;
      liveChildren.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  const pid = child.pid;
  const readLog = (maxChars = 4000): string => {
    try {
      const text = readFileSync(logFile, 'utf8');
      return text.length > maxChars ? text.slice(-maxChars) : text;
    } catch {
      return '';
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitedFlag) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      const timer = sleep(5000).then(() => 'timeout' as const);
      if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited in between
        }
      }
      await exited;
    })();
    return stopping;
  };
  return { pid, child, logFile, exited, hasExited: () => exitedFlag, stop, readLog };
}

export interface WaitForHttpOptions {
  timeoutMs?: number;
  /** Statuses that count as "up" (default [200]). e.g. [401] for a registry behind token auth. */
  okStatuses?: number[];
  intervalMs?: number;
  /** If given, fail fast (with its log tail) when this process exits while we wait. */
  process?: StartedProcess;
}

/** Poll `url` until it answers with one of `okStatuses`; throws after `timeoutMs` (default 15 s). */
export async function waitForHttp(url: string, opts: WaitForHttpOptions = {}): Promise<Response> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const okStatuses = opts.okStatuses ?? [200];
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = performance.now() + timeoutMs;
  let last = 'no attempt';
  while (performance.now() < deadline) {
    if (opts.process?.hasExited()) {
      throw new Error(`waitForHttp(${url}): process ${opts.process.pid} exited early; log:\n${opts.process.readLog()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(500, Math.min(2000, deadline - performance.now()))) });
      await res.arrayBuffer().catch(() => undefined);
      if (okStatuses.includes(res.status)) return res;
      last = `status ${res.status}`;
    } catch (err) {
      last = String((err as Error).cause ?? err);
    }
    await sleep(intervalMs);
  }
  const logTail = opts.process ? `; log:\n${opts.process.readLog()}` : '';
  throw new Error(`waitForHttp(${url}): not up after ${timeoutMs} ms (last: ${last})${logTail}`);
}

/** Absolute path of `name` on PATH, or undefined. */
export function findBinary(name: string): string | undefined {
  if (name.includes('/')) {
    try {
      accessSync(name, fsConstants.X_OK);
      return name;
    } catch {
      return undefined;
    }
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** CI sets CI to true, 1 or yes depending on the system: anything but empty, 0 or false. */
export function isCI(): boolean {
  const value = (process.env.CI ?? '').trim().toLowerCase();
  return value !== '' && value !== '0' && value !== 'false';
}

/**
 * Check that `name` is on PATH. Missing locally → skip (via `t.skip()` when a
 * node:test TestContext is passed) and return false. Missing in CI
 * (`CI=true`) → throw, because an e2e suite silently skipping in CI would hide
 * a broken install step.
 *
 * Usage inside a test: `if (!requireBinary('skopeo', t)) return;`
 */
export function requireBinary(name: string, t?: { skip(message?: string): void }): boolean {
  if (findBinary(name) !== undefined) return true;
  const msg = `required binary "${name}" not found on PATH`;
  if (isCI()) throw new Error(`${msg} (CI=true: missing servers must fail, not skip)`);
  t?.skip(msg);
  return false;
}

/**
 * For `describe(name, { skip: skipUnlessBinaries([...]) }, fn)` — suites have
 * no `t.skip()`. Returns false when all binaries exist, else a skip reason
 * string. Throws in CI (so the test file fails at load time).
 */
export function skipUnlessBinaries(names: string[]): string | false {
  const missing = names.filter((n) => findBinary(n) === undefined);
  if (missing.length === 0) return false;
  const msg = `required binaries not found on PATH: ${missing.join(', ')}`;
  if (isCI()) throw new Error(`${msg} (CI=true: missing servers must fail, not skip)`);
  return msg;
}

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

/** A fresh directory under os.tmpdir(); `cleanup()` removes it recursively. */
export function tempDir(prefix: string): TempDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix.replace(/[^A-Za-z0-9._-]/g, '_')}-`));
  return {
    path: dir,
    cleanup: async () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The environment minus variables that would silently reconfigure the child (e.g. REGISTRY_* for distribution). */
export function cleanEnv(dropPrefixes: string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (dropPrefixes.some((p) => k.startsWith(p))) continue;
    env[k] = v;
  }
  return env;
}
