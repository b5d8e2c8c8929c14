import type { Response } from 'express';
import type { BlobSource, ByteRange } from '../storage/readable-blob-store.ts';

/**
 * Sends a blob source's bytes as a response body, bounded for a reader that stops reading: a
 * client that stops reading lets no write complete, so its socket sees no activity; after
 * `timeoutMs` with bytes still waiting for it, it is destroyed, which ends the send. Without
 * bytes waiting, the mirror is the one waiting (on upstream, whose own timeouts bound that): the
 * next write re-arms the timer. A failed send destroys the response (never a clean end on
 * missing bytes). `setting` names the timeout in the access log (http.sendtimeout, or the
 * peers' own). The caller releases the source.
 *
 * Listened to on the response: Node destroys a timed-out socket itself only when nobody
 * listens for the response's 'timeout'. Armed at half the timeout: Node's first idle timeout on
 * a socket with a pending write only re-arms (its write queue grew since the last look), so a
 * stalled reader is closed after between one and one and a half timeouts, not two.
 */
export async function sendBounded(res: Response, source: BlobSource, range: ByteRange | undefined, timeoutMs: number, setting: string): Promise<void> {
  const socket = res.socket;
  const stalled = () => {
    if (!socket || socket.writableLength === 0) return;
    res.locals.streamError = `no progress within ${setting}`;
    res.destroy();
  };
  res.setTimeout(Math.max(1, Math.floor(timeoutMs / 2)), stalled);
  try {
    await source.send(res, range);
  } catch (error) {
    res.locals.streamError ??= (error as Error).message;
    res.destroy();
  } finally {
    socket?.setTimeout(0);
    res.off('timeout', stalled);
  }
}
