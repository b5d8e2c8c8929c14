import type { Request, Response } from 'express';
import { parseDigest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import { markCache, resolveRepository, type RegistryContext } from '../context.ts';
import { resolveRange } from '../range.ts';

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
  const { size, origin } = await ctx.blobs.stat(upstream, name, digest);
  blobHeaders(res, digest.value);
  markCache(res, origin);
  if (origin === 'cache') ctx.usage?.blob(digest.value);
  if (size !== undefined) res.setHeader('Content-Length', size);
  res.status(200).end();
}

/**
 * Sends a blob, whole or a range of it, from disk or from the fill in flight. Once headers
 * are out, an error (upstream dropped, digest mismatch) destroys the connection: a client
 * must see a broken transfer, never a clean end of bad content.
 */
export async function getBlob(ctx: RegistryContext, req: Request, res: Response, rawName: string, rawDigest: string): Promise<void> {
  const { upstream, name } = resolveRepository(ctx, req, res, rawName);
  const digest = parseDigest(rawDigest);
  const source = await ctx.blobs.open(upstream, name, digest);
  blobHeaders(res, digest.value);
  markCache(res, source.origin);
  if (source.origin === 'cache') ctx.usage?.blob(digest.value);
  if (req.headers['if-none-match'] === `"${digest.value}"`) {
    source.release();
    res.status(304).end();
    return;
  }
  const size = source.descriptor.size;
  const range = size === undefined || !source.ranged ? undefined : resolveRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    source.release();
    res.setHeader('Content-Range', `bytes */${size}`);
    throw new RegistryError('RANGE_NOT_SATISFIABLE', 'requested range not satisfiable', { detail: { size } });
  }
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.setHeader('Content-Length', range.end - range.start + 1);
  } else {
    res.status(200);
    if (size !== undefined) res.setHeader('Content-Length', size);
  }
  try {
    await (range ? source.send(res, range.start, range.end) : source.send(res));
  } catch (error) {
    res.locals.streamError = (error as Error).message;
    res.destroy();
  }
}
