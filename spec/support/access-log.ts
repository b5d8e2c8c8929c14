/**
 * Upstream requests counted from the upstream docker-registry's own access log.
 *
 * Why: a counting proxy in front of the upstream is one more hop that every byte crosses; in
 * the bench process it capped cold transfers at 170–194 MiB/s, so the bench measured itself.
 * distribution writes one combined-format line per request to its log file anyway (after the
 * response, with the status and the bytes written), which costs the transfer nothing.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface AccessRecord {
  method: string;
  /** Path plus query, as the client sent it. */
  path: string;
  status: number;
  /** Body bytes the registry wrote (a client that left early shows fewer). */
  bytes: number;
  userAgent: string;
}

/** The shape the bench reads upstream requests through (the in-process proxy had the same). */
export interface UpstreamRequests {
  /** Requests logged since the last reset(), oldest first. */
  readonly requests: AccessRecord[];
  /** Number of those with `method` ('*' for any) whose path matches. */
  count(method: string, pathPattern: RegExp): number;
  /** Count from now on. */
  reset(): void;
}

// 127.0.0.1 - - [01/Dec/2026:20:25:17 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "node"
const LINE = /^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$/;

function fileSize(file: string): number {
  const fd = openSync(file, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

function readFrom(file: string, offset: number): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return '';
    const buf = Buffer.allocUnsafe(size - offset);
    let at = 0;
    while (at < buf.length) {
      const n = readSync(fd, buf, at, buf.length - at, offset + at);
      if (n === 0) break;
      at += n;
    }
    return buf.subarray(0, at).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Access-log lines of `text` (an unfinished last line is left out). */
export function parseAccessLog(text: string): AccessRecord[] {
  const out: AccessRecord[] = [];
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  for (const line of complete.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    out.push({ method: m[1], path: m[2], status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]), userAgent: m[5] });
  }
  return out;
}

/** Counts the requests a docker-registry logs to `logFile` (its stdout and stderr) from now on. */
export function accessLogCounter(logFile: string): UpstreamRequests {
  let offset = fileSize(logFile);
  return {
    get requests() {
      return parseAccessLog(readFrom(logFile, offset));
    },
    count(method, pathPattern) {
      return this.requests.filter((r) => (method === '*' || r.method === method.toUpperCase()) && pathPattern.test(r.path)).length;
    },
    reset() {
      offset = fileSize(logFile);
    },
  };
}
