/**
 * A counting, fault-injecting HTTP reverse proxy placed between the mirror and
 * the upstream registry.
 *
 * Why: the mirror's main promises are about upstream traffic — "pull once,
 * serve many", retry/resume on failure, never cache corrupt bytes, honour
 * Docker Hub's 429s. Those can only be asserted by counting what reaches the
 * upstream and by breaking responses on purpose (status, delay, cut, corrupt).
 */
import { createServer, request as httpRequest, Agent } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProxiedRequest {
  method: string;
  /** Path plus query string, as the client sent it. */
  path: string;
  /** Status sent to the client (injected or upstream); 0 if the upstream could not be reached. */
  status: number;
  /** The client's Range header, if any. */
  range?: string;
  /** Name of the fault applied to this request, if any. */
  fault?: FaultAction['kind'];
  /** The scheme of the client's Authorization header (`Bearer`, `Basic`), when it sent one; never its value. */
  authorization?: string;
}

export type FaultAction =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string | Buffer }
  | { kind: 'delay'; ms: number }
  /** Send status, headers and N body bytes (paced at `bytesPerSecond` when given), then reset the connection. */
  | { kind: 'drop-after'; bytes: number; bytesPerSecond?: number }
  /** Flip the byte at `atByte` of the body (paced at `bytesPerSecond` when given, so a download of it lasts). */
  | { kind: 'corrupt'; atByte: number; bytesPerSecond?: number }
  /** Close the client connection at once, with no response: an upstream that is down. */
  | { kind: 'reset' }
  /** Send status, headers and N body bytes, then nothing more (the connection stays open). */
  | { kind: 'stall-after'; bytes: number; bytesPerSecond?: number }
  /** Forward the request without its Range header: an upstream that cannot resume. */
  | { kind: 'no-range' }
  /** Add headers to the upstream's response (e.g. Docker Hub's ratelimit-* headers). */
  | { kind: 'headers'; headers: Record<string, string> }
  /** Forward the body at about this many bytes per second. */
  | { kind: 'throttle'; bytesPerSecond: number };

export type Fault = FaultAction & {
  /** Which requests the fault applies to. */
  match: (method: string, path: string) => boolean;
  /** Apply to this many matching requests, then clear itself. Unlimited when absent. */
  times?: number;
};

export interface UpstreamProxy {
  url: string;
  port: number;
  requests: ProxiedRequest[];
  /** Number of recorded requests with `method` (case-insensitive, '*' for any) whose path matches. */
  count(method: string, pathPattern: RegExp): number;
  /** Forget the recorded requests (does not clear the fault). */
  reset(): void;
  /** Replaces every active fault with this one (or none). */
  setFault(fault: Fault | undefined): void;
  /** Adds a fault after the active ones: e.g. a drop, then a no-range for the retry. */
  addFault(fault: Fault): void;
  close(): Promise<void>;
}

/** Docker Hub's 429 response, for `setFault({ ...dockerHubRateLimit(), match })`. */
export function dockerHubRateLimit(retryAfterSeconds = 60): Extract<FaultAction, { kind: 'status' }> {
  return {
    kind: 'status',
    status: 429,
    headers: {
      'content-type': 'application/json',
      'ratelimit-limit': '100;w=21600',
      'ratelimit-remaining': '0;w=21600',
      'retry-after': String(retryAfterSeconds),
    },
    body: JSON.stringify({
      errors: [
        {
          code: 'TOOMANYREQUESTS',
          message:
            'You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit',
        },
      ],
    }),
  };
}

/** Match helper: `matchRequests('GET', /\/blobs\//)`. method '*' matches any. */
export function matchRequests(method: string, pathPattern: RegExp): (m: string, p: string) => boolean {
  return (m, p) => (method === '*' || m.toUpperCase() === method.toUpperCase()) && pathPattern.test(p);
}

// Hop-by-hop headers (RFC 9110 §7.6.1) must not be forwarded; node sets its own framing.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

function forwardHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Stream transform that passes bytes on at about `bytesPerSecond`, in 10 slices a second. */
function throttle(bytesPerSecond: number): Transform {
  const slice = Math.max(1, Math.floor(bytesPerSecond / 10));
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      const parts: Buffer[] = [];
      for (let i = 0; i < chunk.length; i += slice) parts.push(chunk.subarray(i, i + slice));
      const push = (): void => {
        const next = parts.shift();
        if (!next) {
          cb();
          return;
        }
        this.push(next);
        setTimeout(push, 100);
      };
      push();
    },
  });
}

/** Stream transform that flips all bits of the byte at `atByte` (length unchanged, digest broken). */
function corruptAt(atByte: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      if (atByte >= seen && atByte < seen + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[atByte - seen] ^= 0xff;
      }
      seen += chunk.length;
      cb(null, chunk);
    },
  });
}

/**
 * Start the proxy in front of `target` (e.g. the upstream registry's URL).
 * The Host header is passed through unchanged, so Location headers the
 * registry builds (upload URLs) point back at the proxy.
 */
export async function startUpstreamProxy(target: string): Promise<UpstreamProxy> {
  const targetUrl = new URL(target);
  const agent = new Agent({ keepAlive: true });
  const requests: ProxiedRequest[] = [];
  /** Active faults, first match wins; one whose `times` runs out is removed. */
  let faults: Fault[] = [];

  const takeFault = (method: string, p: string): FaultAction | undefined => {
    const f = faults.find((candidate) => candidate.match(method, p));
    if (!f) return undefined;
    if (f.times !== undefined) {
      f.times -= 1;
      if (f.times <= 0) faults = faults.filter((candidate) => candidate !== f);
    }
    return f;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const p = req.url ?? '/';
    const rec: ProxiedRequest = { method, path: p, status: 0 };
    if (typeof req.headers.range === 'string') rec.range = req.headers.range;
    if (typeof req.headers.authorization === 'string') rec.authorization = req.headers.authorization.split(' ')[0];
    requests.push(rec);
    const f = takeFault(method, p);
    if (f) rec.fault = f.kind;

    if (f?.kind === 'status') {
      req.resume();
      const body = f.body === undefined ? Buffer.alloc(0) : Buffer.from(f.body);
      rec.status = f.status;
      res.writeHead(f.status, { ...(f.headers ?? {}), 'content-length': String(body.length) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (f?.kind === 'delay') await sleep(f.ms);
    if (f?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    const headers = forwardHeaders(req.headers);
    if (f?.kind === 'no-range') delete headers.range;

    const upstreamReq = httpRequest({
      protocol: targetUrl.protocol,
      hostname: targetUrl.hostname,
      port: targetUrl.port,
      method,
      path: p,
      headers,
      agent,
    });
    upstreamReq.on('response', (upRes) => {
      const status = upRes.statusCode ?? 502;
      rec.status = status;
      res.writeHead(status, upRes.statusMessage, { ...forwardHeaders(upRes.headers), ...(f?.kind === 'headers' ? f.headers : {}) });
      // A fault that paces its bytes reads them through the throttle.
      const paced = (f?.kind === 'stall-after' || f?.kind === 'drop-after') && f.bytesPerSecond ? upRes.pipe(throttle(f.bytesPerSecond)) : upRes;
      if (f?.kind === 'stall-after') {
        // Status and headers go out at once: the stall is in the body.
        res.flushHeaders();
        let sent = 0;
        let held = false;
        paced.on('data', (chunk: Buffer) => {
          if (sent >= f.bytes) {
            held = held || chunk.length > 0;
            return;
          }
          const part = chunk.subarray(0, f.bytes - sent);
          sent += part.length;
          held = part.length < chunk.length;
          res.write(part);
        });
        // A body no longer than the stall point ends as it should (its framing is complete, so
        // a client may reuse the connection); a longer one never ends: the client gives up.
        paced.on('end', () => {
          if (!held) res.end();
        });
        res.on('close', () => upRes.destroy());
        return;
      }
      if (f?.kind === 'throttle') {
        upRes.pipe(throttle(f.bytesPerSecond)).pipe(res);
        upRes.on('error', () => res.destroy());
        return;
      }
      if (f?.kind === 'drop-after') {
        // Headers (incl. the full Content-Length) go out, then the socket dies mid-body.
        res.flushHeaders();
        let sent = 0;
        const cut = (): void => {
          upRes.destroy();
          res.socket?.destroy();
          res.destroy();
        };
        if (f.bytes <= 0) {
          cut();
          return;
        }
        paced.on('data', (chunk: Buffer) => {
          if (sent >= f.bytes) return;
          const part = chunk.subarray(0, f.bytes - sent);
          sent += part.length;
          res.write(part, () => {
            if (sent >= f.bytes) cut();
          });
        });
        paced.on('end', () => res.end());
        return;
      }
      if (f?.kind === 'corrupt') {
        (f.bytesPerSecond ? upRes.pipe(throttle(f.bytesPerSecond)) : upRes).pipe(corruptAt(f.atByte)).pipe(res);
      } else {
        upRes.pipe(res);
      }
      upRes.on('error', () => res.destroy());
    });
    upstreamReq.on('error', (err) => {
      if (!res.headersSent) {
        rec.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`upstream-proxy: ${err.message}`);
      } else {
        res.destroy();
      }
    });
    // A client that goes away aborts the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    count: (method, pathPattern) => requests.filter((r) => (method === '*' || r.method === method.toUpperCase()) && pathPattern.test(r.path)).length,
    reset: () => {
      requests.length = 0;
    },
    setFault: (f) => {
      faults = f === undefined ? [] : [{ ...f }];
    },
    addFault: (f) => {
      faults.push({ ...f });
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
