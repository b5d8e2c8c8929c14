/**
 * Gathering what a test is given, to compare it whole: the items of a listing (a driver's
 * children or walk), the bytes a source sends to a response.
 */
import { Writable } from 'node:stream';

/** Every item an async iterable yields, in order. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

/** A response (any Writable a blob source sends to) that keeps what it is sent: `body()` so far. */
export function collector(): { res: Writable; body: () => Buffer } {
  const chunks: Buffer[] = [];
  const res = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      callback();
    },
  });
  return { res, body: () => Buffer.concat(chunks) };
}
