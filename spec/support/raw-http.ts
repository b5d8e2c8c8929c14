/**
 * HTTP/1.1 over a bare TCP socket, for requests fetch() and node:http would refuse to send or
 * would "fix" on the way (`..` segments, raw non-ASCII, unknown methods, broken framing,
 * oversized headers, non-HTTP bytes). The request bytes are sent exactly as given; the answer
 * is read until the server closes the connection (send `Connection: close`).
 */
import { connect } from 'node:net';

export interface RawExchange {
  /** Everything the server sent. */
  bytes: Buffer;
  /** How the exchange ended: the server closed (end), reset the connection, or our timeout hit. */
  outcome: 'end' | 'reset' | 'timeout';
  ms: number;
}

export interface RawResponse {
  status: number;
  reason: string;
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body, de-chunked when the response was chunked; cut to Content-Length when one was sent. */
  body: Buffer;
}

/** Writes `data` to 127.0.0.1:port and collects the answer until close, reset or `timeoutMs`. */
export function rawExchange(port: number, data: string | Buffer, options: { timeoutMs?: number; halfClose?: boolean } = {}): Promise<RawExchange> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = connect({ host: '127.0.0.1', port });
    const finish = (outcome: RawExchange['outcome']) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), outcome, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    socket.on('connect', () => {
      socket.write(data, () => {
        // A half-close tells the server no more bytes come (for deliberately incomplete requests).
        if (options.halfClose) socket.end();
      });
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish('end'));
    socket.on('close', () => finish('end'));
    socket.on('error', () => finish(chunks.length > 0 ? 'end' : 'reset'));
  });
}

/** Parses the first response in `bytes`; undefined when there is no complete status line and header block. */
export function parseRawResponse(bytes: Buffer, options: { head?: boolean } = {}): RawResponse | undefined {
  // Interim answers (100 Continue) come before the real one.
  while (/^HTTP\/\d\.\d 1\d\d/.test(bytes.subarray(0, 16).toString('latin1'))) {
    const end = bytes.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    bytes = bytes.subarray(end + 4);
  }
  const headerEnd = bytes.indexOf('\r\n\r\n');
  if (headerEnd < 0) return undefined;
  const lines = bytes.subarray(0, headerEnd).toString('latin1').split('\r\n');
  const statusLine = /^HTTP\/\d\.\d (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!statusLine) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let body = bytes.subarray(headerEnd + 4);
  const status = Number(statusLine[1]);
  if (options.head || status === 204 || status === 304) {
    body = Buffer.alloc(0);
  } else if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
    body = dechunk(body);
  } else if (headers['content-length'] !== undefined) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  return { status, reason: statusLine[2] ?? '', headers, body };
}

function dechunk(bytes: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', offset);
    if (lineEnd < 0) break;
    const size = parseInt(bytes.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** A request with `Host` and `Connection: close`; `target` goes on the request line as given (UTF-8). */
export function rawRequest(method: string, target: string, port: number, headers: [string, string][] = [], body?: string | Buffer): Buffer {
  const head = [`${method} ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close', ...headers.map(([name, value]) => `${name}: ${value}`)];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'utf8'), body === undefined ? Buffer.alloc(0) : Buffer.from(body)]);
}
