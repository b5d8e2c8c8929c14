/**
 * What every bench case reads from /proc and from the stores, and the side-by-side table they print.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Size of the big blobs in every case: 256 MiB, or BENCH_BLOB_MIB for short runs while developing. */
export const BLOB_MIB = (() => {
  const text = process.env.BENCH_BLOB_MIB;
  if (text === undefined || text === '') return 256;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`BENCH_BLOB_MIB must be a positive number of MiB, got ${text}`);
  return n;
})();

export interface ProcMem {
  rss: number;
  hwm: number;
}

export async function readProcMem(pid: number): Promise<ProcMem | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/**
 * Watches a child's VmHWM (its peak RSS, kB) every 10 ms until `stop()`, which answers the
 * highest value seen: for short-lived commands (`gc`) whose status file is gone once they exit.
 */
export function peakRssWatch(pid: number | undefined): { stop(): number } {
  let peakKb = 0;
  const timer = setInterval(() => {
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]));
    } catch {
      // exited
    }
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return peakKb;
    },
  };
}

const CLK_TCK = 100; // USER_HZ on Linux

/**
 * utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat): the process's
 * total over all its threads, live and exited (libuv's pool, Go's goroutine threads).
 */
export async function readCpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Open descriptors of `pid` (`ls /proc/PID/fd | wc -l`), and how many of them are sockets. */
export function countFds(pid: number): { all: number; sockets: number } {
  try {
    const dir = `/proc/${pid}/fd`;
    let sockets = 0;
    const entries = readdirSync(dir);
    for (const fd of entries) {
      try {
        if (statSync(path.join(dir, fd)).isSocket()) sockets += 1;
      } catch {
        // closed meanwhile
      }
    }
    return { all: entries.length, sockets };
  } catch {
    return { all: NaN, sockets: NaN };
  }
}

/** Where pullmirror keeps a verified blob (src/storage/paths.ts: blobs/<algorithm>/<first two hex>/<hex>). */
export function blobPathInStore(root: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return path.join(root, 'blobs', algorithm, hex.slice(0, 2), hex);
}

/** Polls until `file` exists with `size` bytes; false after `timeoutMs`. */
export async function waitForFile(file: string, size: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (existsSync(file)) {
      try {
        if (statSync(file).size === size) return true;
      } catch {
        // renamed meanwhile
      }
    }
    await sleep(50);
  }
  return false;
}

// ---------------------------------------------------------------------------
// Report

/** One line of a side-by-side table: pullmirror, distribution, their ratio. */
export interface Row {
  metric: string;
  better: 'higher' | 'lower' | '';
  pm: number | string | undefined;
  dist: number | string | undefined;
  digits?: number;
}

export function fmt(v: number | string | undefined, digits = 1): string {
  if (v === undefined) return 'n/a';
  if (typeof v === 'string') return v;
  return v.toFixed(digits);
}

export function ratio(row: Row): string {
  if (typeof row.pm !== 'number' || typeof row.dist !== 'number' || row.dist === 0) return 'n/a';
  return `${(row.pm / row.dist).toFixed(2)}×`;
}

export function table(rows: Row[]): { text: string; markdown: string } {
  const header = ['metric', 'pullmirror', 'distribution', 'pm/dist', 'better'];
  const cells = rows.map((r) => [r.metric, fmt(r.pm, r.digits), fmt(r.dist, r.digits), ratio(r), r.better]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  const text = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
  const md = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`, ...cells.map((c) => `| ${c.join(' | ')} |`)].join('\n');
  return { text, markdown: md };
}

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

/** Writes spec/bench/results/<name>-<timestamp>.json and .md (git-ignored); returns the path without extension. */
export function writeResults(name: string, json: unknown, markdown: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const base = path.join(RESULTS_DIR, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  return base;
}

/** PASS/FAIL/N/A lines for the targets a case prints (informational: they do not set the exit status). */
export interface Target {
  name: string;
  verdict: 'PASS' | 'FAIL' | 'N/A';
  detail: string;
}

export function target(name: string, verdict: boolean | undefined, detail: string): Target {
  return { name, verdict: verdict === undefined ? 'N/A' : verdict ? 'PASS' : 'FAIL', detail };
}
