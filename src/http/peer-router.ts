import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { PeerAuth } from '../fleet/peer-auth.ts';
import type { Logger } from '../logging/logger.ts';
import { peerAuthFailures } from '../metrics/metrics.ts';
import { parseDigest, type Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import type { BlobSource } from '../storage/readable-blob-store.ts';
import { errorHandler } from './middleware/error-handler.ts';
import { requestContext } from './middleware/request-context.ts';
import { resolveRange } from './range.ts';
import { sendBounded } from './send-source.ts';

export interface PeerContext {
  auth: PeerAuth;
  /**
   * A blob as this instance has it: its own download in flight (read as it lands, the last
   * byte held back until the digest verified), else the stored blob; undefined when neither.
   */
  openBlob(digest: Digest): Promise<BlobSource | undefined>;
  /** A response that makes no progress this long (the peer stopped reading) is closed (redis.fleet.peers.timeout). */
  sendTimeoutMs: number;
  logger: Logger;
  accessLog: boolean;
}

/**
 * The peer listener's application (redis.fleet.peers.addr): what the other instances of the
 * fleet ask of this one, on its own port, never on the client's. Every request is
 * authenticated first (PeerAuth: an HMAC keyed by http.secret), whatever its path, so nothing
 * about this listener answers a caller without the secret but a 401; then the one route:
 *
 *   GET|HEAD /peer/v1/blobs/<digest>   (Range supported)
 *
 * Nothing of /v2/ is here, and nothing of this on the client port. Errors are the OCI error
 * JSON of the client API.
 */
export function peerApp(ctx: PeerContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(ctx.logger, { accessLog: ctx.accessLog }));
  app.use(authenticatePeer(ctx));
  app.get('/peer/v1/blobs/:digest', (req, res, next) => sendBlob(ctx, req, res, req.params.digest).catch(next));
  app.use(() => {
    throw new RegistryError('NOT_FOUND', 'no such endpoint');
  });
  app.use(errorHandler(ctx.logger));
  return app;
}

const failures = {
  missing: peerAuthFailures.labels('missing'),
  malformed: peerAuthFailures.labels('malformed'),
  expired: peerAuthFailures.labels('expired'),
  forged: peerAuthFailures.labels('forged'),
};

/** 401 unless the request carries a good signature of its own method and target (path with query). */
function authenticatePeer(ctx: PeerContext) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const result = ctx.auth.verify(req.method, req.originalUrl, req.headers.authorization);
    if (result.ok) return next();
    failures[result.reason].inc();
    // The reason (never the header) in the log: a wrong secret or a skewed clock shows there.
    (res.locals.log).warn('peer request refused', { reason: result.reason, remote: res.locals.remote });
    next(new RegistryError('UNAUTHORIZED', `peer authentication failed (${result.reason})`, { headers: { 'WWW-Authenticate': 'Pullmirror-Peer' } }));
  };
}

/**
 * Sends a blob to a peer, whole or from a Range: the digest is parsed (and so validated) before
 * the store is asked anything. Once headers are out, a failure (the download went bad, the peer
 * left, no progress within the timeout) destroys the connection: a peer never sees a clean end
 * of unverified content.
 */
async function sendBlob(ctx: PeerContext, req: Request, res: Response, rawDigest: string): Promise<void> {
  const digest = parseDigest(rawDigest);
  const source = await ctx.openBlob(digest);
  if (!source) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
  try {
    const size = source.size;
    const range = size === undefined || !source.ranged ? undefined : resolveRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      throw new RegistryError('RANGE_NOT_SATISFIABLE', 'requested range not satisfiable', { detail: { size }, headers: { 'Content-Range': `bytes */${size}` } });
    }
    res.setHeader('Docker-Content-Digest', digest.value);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Accept-Ranges', 'bytes');
    if (range) {
      res.status(206);
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      res.setHeader('Content-Length', range.end - range.start + 1);
    } else {
      res.status(200);
      if (size !== undefined) res.setHeader('Content-Length', size);
    }
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // A peer that stops reading is closed as a client is (http.sendtimeout's mechanism, the peers' timeout).
    await sendBounded(res, source, range, ctx.sendTimeoutMs, 'redis.fleet.peers.timeout');
  } finally {
    source.release();
  }
}
