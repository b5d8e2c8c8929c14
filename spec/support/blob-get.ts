import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';

/** What a client got from one blob GET: the body hashed as it came. */
export interface Outcome {
  status: number;
  bytes: number;
  /** The response ended cleanly (all its Content-Length), rather than breaking off. */
  complete: boolean;
  sha256: string;
  /** How long the client waited, on the monotonic clock. */
  ms: number;
}

export interface BlobGetOptions {
  /** Gives up (no outcome can take longer): a hang shows as `ms` past the caller's bound. */
  deadlineMs: number;
  /** Leaves after so many bytes. */
  abortAfter?: number;
  /** Stops reading after so many bytes (see onStall). */
  stallAfter?: number;
  onBytes?: (n: number) => void;
  /**
   * Called once the client stopped reading, with a function that lets go of the connection. A
   * paused client reads nothing more, not even the mirror's close: the caller watches the
   * mirror instead, and calls it.
   */
  onStall?: (destroy: () => void) => void;
}

/**
 * GETs a blob as a client would (a connection of its own), hashing the body; never rejects:
 * the verified bytes, an error answer or a broken connection are all outcomes.
 */
export function getBlob(url: string, options: BlobGetOptions): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let status = 0;
    let settled = false;
    const done = (complete: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve({ status, bytes, complete, sha256: `sha256:${hash.digest('hex')}`, ms: Math.round(performance.now() - started) });
    };
    const req = httpRequest(url, { agent: false }, (res) => {
      status = res.statusCode ?? 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        options.onBytes?.(bytes);
        if (options.abortAfter !== undefined && bytes >= options.abortAfter) {
          req.destroy();
          done(false);
        }
        if (options.stallAfter !== undefined && bytes >= options.stallAfter && !res.isPaused()) {
          res.pause();
          options.onStall?.(() => {
            req.destroy();
            done(false);
          });
        }
      });
      res.on('end', () => done(res.complete));
      res.on('close', () => done(res.complete && !res.errored && res.readableEnded));
      res.on('error', () => done(false));
    });
    req.on('error', () => done(false));
    const deadline = setTimeout(() => {
      req.destroy();
      done(false);
    }, options.deadlineMs);
    req.end();
  });
}
