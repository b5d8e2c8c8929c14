/**
 * A site's internet link, in a process of its own: a TCP relay in front of the test upstream
 * with a bandwidth cap that all connections share and a round-trip delay, that counts the
 * requests and bytes crossing it.
 *
 * Why: a mirror exists for the link between a site and Docker Hub. On loopback every transfer
 * is as fast as the CPU, so "fetch once, serve many" and "stream while filling" cost or win
 * nothing measurable; through a shaped link they decide the wall time. It runs in its own
 * process so that relaying does not compete with the bench's clients on the event loop, and it
 * relays with large reusable read buffers (no stream machinery per chunk): with the cap and the
 * delay off it passes well over 1.5 GiB/s on loopback (the bench measures and prints this), so
 * it can count a server's upstream requests without slowing it.
 *
 * The model, per direction (upstream → clients and clients → upstream, each capped):
 * - one FIFO bottleneck shared by every connection (a token bucket with no burst): a piece of
 *   n bytes leaves at max(now, when the link is next free) + n / rate;
 * - then a one-way propagation delay of rtt / 2;
 * - a new connection may send only one rtt after it was accepted (the TCP handshake), so a
 *   request on a new connection waits 2 rtt for its first response byte and on a kept-alive one
 *   1 rtt, as on a real link (TLS would add more; the test upstream is plain HTTP);
 * - each connection has at most WINDOW bytes in the link (read from one side, not yet written
 *   to the other): its source is paused beyond that, so a receiver that does not read stops its
 *   sender, as TCP's window does.
 *
 * HTTP/1.1 is parsed only as far as framing (request lines, status lines, Content-Length,
 * chunked), to record each request's method, path, status and body bytes. A connection whose
 * first bytes are not HTTP (skopeo's TLS probe on a plain-HTTP port) is relayed and counted
 * as bytes only.
 *
 * As a program: `node spec/support/link-proxy.ts --target 127.0.0.1:PORT [--rate-mibps 100]
 * [--rtt-ms 20]` (rate 0 = no cap). It prints one JSON line `{"event":"listening",...}` with the
 * relay's and the control server's ports; the control server answers `GET /stats` (JSON) and
 * `POST /reset`. As a module: `startLinkProxy()` spawns it and reads both.
 */
import { createServer as createHttpServer } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, type StartedProcess } from './processes.ts';

const MiB = 1024 * 1024;
/** Bytes a connection may have inside the link per direction (a TCP window; 4 MiB / 20 ms = 200 MiB/s, above the cap). */
const WINDOW = 4 * MiB;
/** Read size without shaping: large reads are what makes a Node relay fast (measured here, 2 cores: stream pipe with 64 KiB reads ~0.9 GiB/s, 1 MiB pooled reads ~1.9 GiB/s). */
const FAST_READ = 1024 * 1024;
/** Read size with shaping: a piece is scheduled whole, so smaller pieces pace more smoothly. */
const SHAPED_READ = 64 * 1024;
/** Recycled read buffers per size, so the relay does not allocate per read. */
const POOL_MAX = 64;
/** Header block limit; beyond it a message is not parsed any more (counted as bytes only). */
const MAX_HEAD = 64 * 1024;

export interface LinkRequest {
  method: string;
  path: string;
  /** 0 until the response's status line crossed the link. */
  status: number;
  /** Response body bytes that crossed the link. */
  bodyBytes: number;
  /** ms since the link started: request line seen, response complete (undefined while open). */
  startedMs: number;
  doneMs?: number;
}

export interface LinkStats {
  /** Bytes that crossed the link upstream → clients and clients → upstream. */
  bytesDown: number;
  bytesUp: number;
  connections: number;
  openConnections: number;
  requests: LinkRequest[];
}

export interface LinkOptions {
  /** host:port of the upstream (TCP; the relay never rewrites a byte). */
  target: string;
  /** Shared cap per direction in MiB/s; 0 = none. */
  rateMiBps: number;
  rttMs: number;
}

// ---------------------------------------------------------------------------
// HTTP framing, just enough to delimit messages

type Framing =
  | { kind: 'head'; buf: Buffer }
  | { kind: 'length'; left: number }
  | { kind: 'chunk-size'; line: string }
  | { kind: 'chunk-data'; left: number }
  | { kind: 'chunk-crlf'; left: number }
  | { kind: 'trailers'; line: string }
  | { kind: 'until-close' }
  | { kind: 'opaque' };

const METHOD = /^[A-Z]+ /;

function headerValue(head: string, name: string): string | undefined {
  const m = new RegExp(`\\r\\n${name}:[ \\t]*([^\\r\\n]*)`, 'i').exec(head);
  return m?.[1].trim();
}

/**
 * Feeds one direction's bytes through a framing state machine. `onHead` gets each header
 * block and returns how its body is framed; `onBody` counts body bytes; `onEnd` is called when
 * a message's body is complete.
 */
class FramingParser {
  private state: Framing = { kind: 'head', buf: Buffer.alloc(0) };
  private readonly onHead: (head: string) => Framing | undefined;
  private readonly onBody: (n: number) => void;
  private readonly onEnd: () => void;
  constructor(onHead: (head: string) => Framing | undefined, onBody: (n: number) => void, onEnd: () => void) {
    this.onHead = onHead;
    this.onBody = onBody;
    this.onEnd = onEnd;
  }

  get opaque(): boolean {
    return this.state.kind === 'opaque';
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const s = this.state;
      switch (s.kind) {
        case 'opaque':
        case 'until-close':
          if (s.kind === 'until-close') this.onBody(chunk.length - at);
          return;
        case 'length': {
          const n = Math.min(s.left, chunk.length - at);
          s.left -= n;
          at += n;
          this.onBody(n);
          if (s.left === 0) this.finish();
          break;
        }
        case 'head': {
          // Only the few hundred bytes of a header block are ever copied.
          const joined = s.buf.length ? Buffer.concat([s.buf, chunk.subarray(at, at + MAX_HEAD)]) : chunk.subarray(at, at + MAX_HEAD);
          if (s.buf.length === 0 && joined.length >= 4 && !/^[A-Z]{3,}[ /]/.test(joined.subarray(0, 8).toString('latin1'))) {
            this.state = { kind: 'opaque' };
            return;
          }
          const end = joined.indexOf('\r\n\r\n');
          if (end < 0) {
            if (joined.length >= MAX_HEAD) this.state = { kind: 'opaque' };
            else this.state = { kind: 'head', buf: Buffer.from(joined) };
            return;
          }
          const consumed = end + 4 - s.buf.length;
          at += consumed;
          const next = this.onHead(joined.subarray(0, end + 2).toString('latin1'));
          if (next === undefined) this.finish();
          else this.state = next;
          break;
        }
        case 'chunk-size': {
          const nl = chunk.indexOf(10, at);
          const piece = chunk.subarray(at, nl < 0 ? chunk.length : nl + 1).toString('latin1');
          this.onBody(piece.length);
          at += piece.length;
          const line = s.line + piece;
          if (nl < 0) {
            this.state = { kind: 'chunk-size', line };
            break;
          }
          const size = parseInt(line, 16);
          if (!Number.isFinite(size)) this.state = { kind: 'opaque' };
          else if (size === 0) this.state = { kind: 'trailers', line: '' };
          else this.state = { kind: 'chunk-data', left: size };
          break;
        }
        case 'chunk-data': {
          const n = Math.min(s.left, chunk.length - at);
          s.left -= n;
          at += n;
          this.onBody(n);
          if (s.left === 0) this.state = { kind: 'chunk-crlf', left: 2 };
          break;
        }
        case 'chunk-crlf': {
          const n = Math.min(s.left, chunk.length - at);
          s.left -= n;
          at += n;
          this.onBody(n);
          if (s.left === 0) this.state = { kind: 'chunk-size', line: '' };
          break;
        }
        case 'trailers': {
          const nl = chunk.indexOf(10, at);
          const piece = chunk.subarray(at, nl < 0 ? chunk.length : nl + 1).toString('latin1');
          this.onBody(piece.length);
          at += piece.length;
          const line = s.line + piece;
          if (nl < 0) this.state = { kind: 'trailers', line };
          else if (line === '\r\n' || line === '\n') this.finish();
          else this.state = { kind: 'trailers', line: '' };
          break;
        }
      }
    }
  }

  private finish(): void {
    this.onEnd();
    this.state = { kind: 'head', buf: Buffer.alloc(0) };
  }
}

function bodyFraming(head: string, noBody: boolean): Framing | undefined {
  if (noBody) return undefined;
  const te = headerValue(head, 'transfer-encoding');
  if (te && /chunked/i.test(te)) return { kind: 'chunk-size', line: '' };
  const cl = headerValue(head, 'content-length');
  if (cl !== undefined) {
    const n = Number(cl);
    return n > 0 ? { kind: 'length', left: n } : undefined;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The relay (runs in the child process)

interface Bottleneck {
  /** ms (performance.now) at which the link is next free; rate in bytes per ms (0 = no cap). */
  nextFree: number;
  bytesPerMs: number;
}

/**
 * A pool of read buffers of one size: buffers come back when the write that carried them is
 * done. Only buffers of that size are kept (the client side's copies are smaller), or a read
 * into a small one would make every later read small.
 */
function bufferPool(size: number): { take(): Buffer; give(b: Buffer): void } {
  const free: Buffer[] = [];
  return {
    take: () => free.pop() ?? Buffer.allocUnsafeSlow(size),
    give: (b) => {
      if (b.length === size && free.length < POOL_MAX) free.push(b);
    },
  };
}

function runLink(options: LinkOptions): void {
  const [host, portText] = [options.target.slice(0, options.target.lastIndexOf(':')), options.target.slice(options.target.lastIndexOf(':') + 1)];
  const port = Number(portText);
  const shaped = options.rateMiBps > 0 || options.rttMs > 0;
  const readSize = shaped ? SHAPED_READ : FAST_READ;
  const pool = bufferPool(readSize);
  const oneWay = options.rttMs / 2;
  const down: Bottleneck = { nextFree: 0, bytesPerMs: (options.rateMiBps * MiB) / 1000 };
  const up: Bottleneck = { nextFree: 0, bytesPerMs: (options.rateMiBps * MiB) / 1000 };
  const t0 = performance.now();
  const stats: LinkStats = { bytesDown: 0, bytesUp: 0, connections: 0, openConnections: 0, requests: [] };

  /**
   * One direction of one connection: read pieces from `from` into pooled buffers, schedule each
   * through the bottleneck and the delay, write it to `to`. `notBefore` holds the first piece
   * until the handshake is over.
   */
  const direction = (name: 'down' | 'up', link: Bottleneck, notBefore: number, onBytes: (piece: Buffer) => void) => {
    let from: net.Socket | undefined;
    let to: net.Socket | undefined;
    let inLink = 0;
    let paused = false;
    let ended = false;
    const queue: Array<{ buf: Buffer; piece: Buffer; at: number }> = [];
    let timer: NodeJS.Timeout | undefined;
    const flowControl = () => {
      if (!from) return;
      if (!paused && inLink >= WINDOW) {
        paused = true;
        from.pause();
      } else if (paused && inLink < WINDOW / 2) {
        paused = false;
        from.resume();
      }
    };
    const deliver = (buf: Buffer, piece: Buffer) => {
      if (!to || to.destroyed) {
        pool.give(buf);
        return;
      }
      if (name === 'down') stats.bytesDown += piece.length;
      else stats.bytesUp += piece.length;
      onBytes(piece);
      to.write(piece, () => {
        inLink -= piece.length;
        pool.give(buf);
        flowControl();
      });
    };
    const flush = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length && queue[0].at <= now + 0.5) {
        const { buf, piece } = queue.shift()!;
        deliver(buf, piece);
      }
      if (queue.length) timer = setTimeout(flush, Math.max(0, queue[0].at - now));
      else if (ended) to?.end();
    };
    return {
      bind(source: net.Socket, sink: net.Socket) {
        from = source;
        to = sink;
      },
      /** onread callback: `buf` holds `n` new bytes. */
      onRead(n: number, buf: Buffer): void {
        const piece = buf.subarray(0, n);
        inLink += n;
        if (!shaped) {
          deliver(buf, piece);
        } else {
          const now = performance.now();
          let leaves = Math.max(now, notBefore);
          if (link.bytesPerMs > 0) {
            leaves = Math.max(leaves, link.nextFree) + n / link.bytesPerMs;
            link.nextFree = leaves;
          }
          queue.push({ buf, piece, at: leaves + oneWay });
          if (!timer) timer = setTimeout(flush, Math.max(0, queue[0].at - now));
        }
        flowControl();
      },
      take: () => pool.take(),
      end(): void {
        ended = true;
        if (!shaped || (!timer && queue.length === 0)) to?.end();
      },
      destroy(): void {
        if (timer) clearTimeout(timer);
        for (const { buf } of queue.splice(0)) pool.give(buf);
      },
    };
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    stats.connections += 1;
    stats.openConnections += 1;
    const accepted = performance.now();
    const pending: LinkRequest[] = [];
    let current: LinkRequest | undefined;
    const requestParser = new FramingParser(
      (head) => {
        const line = head.slice(0, head.indexOf('\r\n'));
        if (!METHOD.test(line)) return { kind: 'opaque' };
        const [method, target] = line.split(' ');
        const rec: LinkRequest = { method, path: target, status: 0, bodyBytes: 0, startedMs: performance.now() - t0 };
        stats.requests.push(rec);
        pending.push(rec);
        return bodyFraming(head, false);
      },
      () => {},
      () => {},
    );
    const responseParser = new FramingParser(
      (head) => {
        const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(head)?.[1] ?? 0);
        if (status >= 100 && status < 200) return undefined;
        current = pending.shift();
        if (current) current.status = status;
        const framing = bodyFraming(head, current?.method === 'HEAD' || status === 204 || status === 304);
        // A response without a length and not chunked runs until the connection closes.
        if (framing === undefined && current?.method !== 'HEAD' && status !== 204 && status !== 304 && headerValue(head, 'content-length') === undefined) return { kind: 'until-close' };
        return framing;
      },
      (n) => {
        if (current) current.bodyBytes += n;
      },
      () => {
        if (current) current.doneMs = performance.now() - t0;
        current = undefined;
      },
    );
    const toUpstream = direction('up', up, accepted + options.rttMs, (piece) => {
      if (!requestParser.opaque) requestParser.feed(piece);
    });
    const toClient = direction('down', down, 0, (piece) => {
      if (!responseParser.opaque) responseParser.feed(piece);
    });
    // Reads land in pooled buffers handed to onread (Node's `onread` with a buffer factory).
    const upstream = net.connect({
      host,
      port,
      allowHalfOpen: true,
      onread: {
        buffer: () => toClient.take(),
        // Pausing is done with pause() in flowControl, so the callback never asks for it.
        callback: (n: number, buf: Uint8Array): boolean => {
          toClient.onRead(n, buf as Buffer);
          return true;
        },
      },
    });
    // The client socket exists already; re-wrap its reads the same way (no 'data' events).
    client.on('data', (chunk: Buffer) => {
      const buf = Buffer.allocUnsafe(chunk.length);
      chunk.copy(buf);
      toUpstream.onRead(buf.length, buf);
    });
    toClient.bind(upstream, client);
    toUpstream.bind(client, upstream);
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    // Each side's end is passed on once the pieces before it crossed; a client that goes away
    // (or an error on either side) ends the whole connection.
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      stats.openConnections -= 1;
      toClient.destroy();
      toUpstream.destroy();
      client.destroy();
      upstream.destroy();
      if (current && current.doneMs === undefined) current.doneMs = performance.now() - t0;
    };
    upstream.on('end', () => toClient.end());
    client.on('end', () => toUpstream.end());
    upstream.on('error', close);
    client.on('error', close);
    client.on('close', close);
  });
  server.listen(0, '127.0.0.1', () => {
    const control = createHttpServer((req, res) => {
      if (req.method === 'POST' && req.url === '/reset') {
        stats.bytesDown = 0;
        stats.bytesUp = 0;
        stats.connections = 0;
        stats.requests = [];
        res.end('{}');
        return;
      }
      if (req.url === '/stats') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(stats));
        return;
      }
      res.statusCode = 404;
      res.end();
    });
    control.listen(0, '127.0.0.1', () => {
      const relayPort = (server.address() as net.AddressInfo).port;
      const controlPort = (control.address() as net.AddressInfo).port;
      process.stdout.write(`${JSON.stringify({ event: 'listening', port: relayPort, controlPort, ...options })}\n`);
    });
  });
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------
// The module side (runs in the bench)

export interface LinkProxy {
  url: string;
  port: number;
  pid: number;
  options: LinkOptions;
  process: StartedProcess;
  stats(): Promise<LinkStats>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

const THIS_FILE = fileURLToPath(import.meta.url);

/** Spawns the link in its own process (the same Node as the caller) and waits for its ports. */
export async function startLinkProxy(options: LinkOptions & { logFile?: string }): Promise<LinkProxy> {
  const args = [THIS_FILE, '--target', options.target, '--rate-mibps', String(options.rateMiBps), '--rtt-ms', String(options.rttMs)];
  const proc = startProcess(process.execPath, args, { logFile: options.logFile });
  const deadline = performance.now() + 10_000;
  for (;;) {
    const line = proc
      .readLog(64 * 1024)
      .split('\n')
      .find((l) => l.startsWith('{"event":"listening"'));
    if (line) {
      const { port, controlPort } = JSON.parse(line) as { port: number; controlPort: number };
      const control = `http://127.0.0.1:${controlPort}`;
      return {
        url: `http://127.0.0.1:${port}`,
        port,
        pid: proc.pid,
        options,
        process: proc,
        stats: async () => (await (await fetch(`${control}/stats`)).json()) as LinkStats,
        reset: async () => {
          await (await fetch(`${control}/reset`, { method: 'POST' })).arrayBuffer();
        },
        stop: () => proc.stop(),
      };
    }
    if (proc.hasExited() || performance.now() > deadline) {
      await proc.stop();
      throw new Error(`link proxy did not start:\n${proc.readLog()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Requests in `stats` with `method` whose path matches, by response status. */
export function linkStatuses(stats: LinkStats, method: string, pathPattern: RegExp): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of stats.requests) {
    if (r.method === method && pathPattern.test(r.path)) out[String(r.status)] = (out[String(r.status)] ?? 0) + 1;
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) {
  const arg = (name: string, fallback?: string): string => {
    const i = process.argv.indexOf(`--${name}`);
    const v = i >= 0 ? process.argv[i + 1] : fallback;
    if (v === undefined) throw new Error(`link-proxy: --${name} is required`);
    return v;
  };
  runLink({ target: arg('target'), rateMiBps: Number(arg('rate-mibps', '100')), rttMs: Number(arg('rtt-ms', '20')) });
}
