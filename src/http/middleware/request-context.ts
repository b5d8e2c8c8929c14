import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../../logging/logger.ts';

let sequence = 0;
const prefix = process.pid.toString(36);

/**
 * Gives each request an id (echoed as X-Request-Id) and a child logger, and writes the one
 * access line per request when the response finishes or the connection drops.
 */
export function requestContext(logger: Logger, options: { accessLog: boolean }) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const id = `${prefix}-${(++sequence).toString(36)}`;
    const started = process.hrtime.bigint();
    const remote = req.socket.remoteAddress;
    res.locals.log = logger.child({ requestId: id });
    res.setHeader('X-Request-Id', id);
    if (options.accessLog) {
      let logged = false;
      const done = () => {
        if (logged) return;
        logged = true;
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
        logger.info('request', fields);
      };
      res.on('finish', done);
      res.on('close', done);
    }
    next();
  };
}
