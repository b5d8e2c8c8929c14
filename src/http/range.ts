import type { ByteRange } from '../storage/readable-blob-store.ts';

/**
 * Reads a `Range` header against a blob of `size` bytes.
 * - undefined: no usable range (absent, malformed, several ranges): send the whole blob, as
 *   RFC 9110 allows a server to ignore a Range it will not honour;
 * - 'unsatisfiable': answer 416;
 * - a ByteRange: answer 206 with it.
 */
export function resolveRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    // Suffix range: the last N bytes (more than the blob has means all of it).
    const length = position(match[2]);
    if (length === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  const start = position(match[1]);
  const last = match[2] === '' ? Infinity : position(match[2]);
  if (last < start) return undefined;
  const end = Math.min(last, size - 1);
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * A byte position from its digits. Positions past any real blob (more digits than a safe
 * integer holds) become Infinity, so they clamp like any other too-large position instead of
 * losing precision; leading zeros do not count.
 */
function position(digits: string): number {
  const significant = digits.replace(/^0+(?=\d)/, '');
  return significant.length > 15 ? Infinity : Number(significant);
}
