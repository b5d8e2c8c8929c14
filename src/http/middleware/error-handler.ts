import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../../logging/logger.ts';
import { RegistryError } from '../../registry/errors.ts';

/**
 * Headers that describe content: an error answer carries none of them, whatever a handler set
 * before it failed (a 416 is not a year-cacheable blob, a failed manifest has no digest).
 */
const CONTENT_HEADERS = ['cache-control', 'etag', 'docker-content-digest', 'content-type', 'content-length', 'content-range', 'accept-ranges', 'last-modified', 'warning'];

/**
 * The one place errors become responses: a RegistryError is rendered in the OCI error format
 * with its status; anything else is logged and answered 500 UNKNOWN without internals.
 */
export function errorHandler(logger: Logger) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let registryError: RegistryError;
    if (error instanceof RegistryError) {
      registryError = error;
      if (registryError.status >= 500) (res.locals.log ?? logger).warn('upstream error', { code: error.code, error: error.message });
    } else if (isClientError(error)) {
      registryError = new RegistryError('UNSUPPORTED', 'malformed request', { status: (error as { status: number }).status });
    } else {
      (res.locals.log ?? logger).error('unexpected error', { error: (error as Error)?.stack ?? String(error) });
      registryError = new RegistryError('UNKNOWN', 'internal error');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const name of CONTENT_HEADERS) res.removeHeader(name);
    for (const [name, value] of Object.entries(registryError.headers)) res.setHeader(name, value);
    const body = JSON.stringify(registryError.toJSON());
    res.status(registryError.status);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** Errors Express or body parsers raise for a bad request (bad URI encoding and the like). */
function isClientError(error: unknown): boolean {
  const status = (error as { status?: number })?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}
