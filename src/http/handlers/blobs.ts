import type { Request, Response } from 'express';
import { parseDigest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import { markCache, resolveRepository, type RegistryContext } from '../context.ts';
import type { ByteRange } from '../../storage/readable-blob-store.ts';
import { resolveRange } from '../range.ts';
import { sendBounded } from '../send-source.ts';

const BLOB_TYPE = 'application/octet-stream';

function blobHeaders(res: Response, digest: string): void {
  res.setHeader('Docker-Content-Digest', digest);
  res.setHeader('Content-Type', BLOB_TYPE);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('ETag', `"${digest}"`);
  // Content addressed: a blob never changes, so any cache may keep it for good.
  res.setHeader('Cache-Control', 'max-age=31536000');
}

export async function headBlob(ctx: RegistryContext, req: Request, res: Response, rawName: string, rawDigest: string): Promise<void> {
  const { upstream, name } = resolveRepository(ctx, req, res, rawName);
  const digest = parseDigest(rawDigest);
  const info = await ctx.blobs.stat({ digest, upstream, name });
  if (!info) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
  blobHeaders(res, digest.value);
  markCache(res, info.origin);
  if (info.origin === 'cache') ctx.usage?.blob(digest.value);
  if (info.size !== undefined) res.setHeader('Content-Length', info.size);
  res.status(200).end();
}

/**
 * Sends a blob, whole or a range of it, from whatever source the store gives (stored file, a
 * fill in flight, a pass-through). Every answer that is not the content (304, 416) is decided
 * before any content header is set, and the source is released in a `finally`, whatever
 * happens. Once headers are out, an error (upstream dropped, digest mismatch, client gone)
 * destroys the connection: a client must see a broken transfer, never a clean end of bad
 * content.
 */
export async function getBlob(ctx: RegistryContext, req: Request, res: Response, rawName: string, rawDigest: string): Promise<void> {
  const { upstream, name } = resolveRepository(ctx, req, res, rawName);
  const digest = parseDigest(rawDigest);
  const ref = { digest, upstream, name };
  const notModified = etagMatches(req.headers['if-none-match'], digest.value);
  // Asked only when redirects are on: the hit path pays nothing for them otherwise.
  const redirect = ctx.blobs.redirects ? await ctx.blobs.redirect(ref) : undefined;
  if (redirect) {
    redirectToStore(ctx, req, res, digest.value, redirect, notModified);
    return;
  }
  // A conditional or ranged GET for a blob the store lacks may need no content at all (304,
  // 416): that is decided from what the blob is (a HEAD upstream at most), before a download
  // starts. A stored blob is opened as any other.
  if ((notModified || req.headers.range !== undefined) && !(await ctx.blobs.isStored(ref))) {
    const info = await ctx.blobs.stat(ref);
    if (!info) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    if (notModified) {
      markCache(res, info.origin);
      blobHeaders(res, digest.value);
      res.status(304).end();
      return;
    }
    if (info.size !== undefined) satisfiableRange(req.headers.range, info.size);
  }
  const source = await ctx.blobs.open(ref);
  try {
    markCache(res, source.origin);
    if (source.origin === 'cache') ctx.usage?.blob(digest.value);
    // If-None-Match before Range (RFC 9110 13.2.2): a client that has the blob gets a 304.
    if (notModified) {
      blobHeaders(res, digest.value);
      res.status(304).end();
      return;
    }
    const size = source.size;
    const range = size === undefined || !source.ranged ? undefined : satisfiableRange(req.headers.range, size);
    blobHeaders(res, digest.value);
    if (range) {
      res.status(206);
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      res.setHeader('Content-Length', range.end - range.start + 1);
    } else {
      res.status(200);
      if (size !== undefined) res.setHeader('Content-Length', size);
    }
    await sendBounded(res, source, range, ctx.sendTimeoutMs, 'http.sendtimeout');
  } finally {
    source.release();
  }
}

/**
 * storage.redirect: a stored blob is fetched by the client from the bucket (307 to a presigned
 * GET, which keeps the method and the client's Range). What needs no content is still answered
 * here: a 304 for a client that has the blob, a 416 for a range past its end. The 307 names the
 * digest and is not to be cached (its URL expires); the use is recorded as a hit's is.
 */
function redirectToStore(ctx: RegistryContext, req: Request, res: Response, digest: string, to: { url: string; size: number }, notModified: boolean): void {
  markCache(res, 'cache');
  ctx.usage?.blob(digest);
  if (notModified) {
    blobHeaders(res, digest);
    res.status(304).end();
    return;
  }
  satisfiableRange(req.headers.range, to.size);
  res.setHeader('Docker-Content-Digest', digest);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Location', to.url);
  res.status(307).end();
}

/** The range a `Range` header asks of a blob of `size` bytes; throws the 416 when it cannot be met. */
function satisfiableRange(header: string | undefined, size: number): ByteRange | undefined {
  const range = resolveRange(header, size);
  if (range === 'unsatisfiable') {
    throw new RegistryError('RANGE_NOT_SATISFIABLE', 'requested range not satisfiable', { detail: { size }, headers: { 'Content-Range': `bytes */${size}` } });
  }
  return range;
}

/**
 * Whether an `If-None-Match` header names the blob (its ETag is its quoted digest): one of a
 * list of entity tags, weak or strong (a GET compares weakly), or `*`.
 */
function etagMatches(header: string | undefined, digest: string): boolean {
  if (!header) return false;
  return header.split(',').some((tag) => {
    const value = tag.trim();
    return value === '*' || value.replace(/^W\//, '') === `"${digest}"`;
  });
}
