import type { NextFunction, Request, Response } from 'express';
import { ACCESS_MESSAGE, queueAccessLine, type Logger } from '../../logging/logger.ts';
import { ClientAddress } from '../client-address.ts';

let sequence = 0;
const prefix = process.pid.toString(36);

/**
 * Gives each request an id (echoed as X-Request-Id) and a child logger, and writes the one
 * access line per request when the response finishes or the connection drops.
 */
export function requestContext(
  logger: Logger,
  options: { accessLog: boolean; format?: 'json' | 'combined'; write?: (line: string) => void; trustedProxies?: string[] },
) {
  const combined = options.format === 'combined';
  const client = new ClientAddress(options.trustedProxies ?? []);
  const write = options.write ?? queueAccessLine;
  return (req: Request, res: Response, next: NextFunction): void => {
    const id = `${prefix}-${(++sequence).toString(36)}`;
    const started = process.hrtime.bigint();
    // The client behind a trusted load balancer (http.trustedproxies), else the socket's peer.
    const remote = client.enabled ? client.of(req.socket.remoteAddress, req.headers['x-forwarded-for']) : req.socket.remoteAddress;
    res.locals.remote = remote;
    // Made on first use: most requests log nothing but their access line, and a winston child
    // per request is a measurable share of a warm request's CPU.
    let log: Logger | undefined;
    Object.defineProperty(res.locals, 'log', { get: () => (log ??= logger.child({ requestId: id })), configurable: true });
    res.setHeader('X-Request-Id', id);
    if (options.accessLog) {
      let logged = false;
      const done = () => {
        if (logged) return;
        logged = true;
        if (combined) {
          write(combinedLine(req, res, remote));
          return;
        }
        const fields: Record<string, unknown> = {
          requestId: id,
          method: req.method,
          path: req.originalUrl.slice(0, 512),
          status: res.statusCode,
          ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
          remote,
          userAgent: req.headers['user-agent']?.slice(0, 200),
        };
        const length = res.getHeader('content-length');
        if (length !== undefined) fields.bytes = Number(length);
        if (res.locals.cache) fields.cache = res.locals.cache;
        if (res.locals.user) fields.user = res.locals.user;
        // The response was not ended by us: the client left or the transfer was broken off.
        if (!res.writableEnded || res.locals.streamError) fields.aborted = true;
        if (res.locals.streamError) fields.error = res.locals.streamError;
        logger.info(ACCESS_MESSAGE, fields);
      };
      res.on('finish', done);
      res.on('close', done);
    }
    next();
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `[23/Nov/2026:11:09:50 +0000]`: the Common Log Format time, in UTC. */
export function clfTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `[${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000]`;
}

/** A quoted field of the Combined Log Format: `"` and `\\` escaped, control bytes as \xHH. */
function quoted(value: string | undefined): string {
  if (value === undefined || value === '') return '"-"';
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

/** An unquoted field (Apache's %u): spaces, quotes and control bytes as \xHH, so the line still splits on spaces. */
function bare(value: string): string {
  return value.replace(/[\x00-\x20"\\\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * One access line in Apache's Combined Log Format, as distribution writes it:
 * `host - user [time] "METHOD path HTTP/1.1" status bytes "referer" "user-agent"`; the user is
 * the authenticated one (htpasswd, or `cert:<CN>` of a client certificate), `-` for anonymous.
 */
export function combinedLine(req: Request, res: Response, remote: string | undefined): string {
  const length = res.getHeader('content-length');
  const bytes = req.method === 'HEAD' || length === undefined ? '-' : String(length);
  const request = `${req.method} ${req.originalUrl.slice(0, 2048)} HTTP/${req.httpVersion}`;
  const user = typeof res.locals.user === 'string' && res.locals.user !== '' ? bare(res.locals.user.slice(0, 200)) : '-';
  return `${remote ?? '-'} - ${user} ${clfTime(new Date())} ${quoted(request)} ${res.statusCode} ${bytes} ${quoted(req.headers.referer?.slice(0, 512))} ${quoted(req.headers['user-agent']?.slice(0, 512))}\n`;
}
