import type { Request, Response } from 'express';
import { isDigest, parseDigest } from '../../registry/digest.ts';
import { validateTag } from '../../registry/names.ts';
import { markCache, resolveRepository, type RegistryContext } from '../context.ts';

/** Serves a manifest by tag or digest, byte for byte, with its own media type. */
export async function serveManifest(ctx: RegistryContext, req: Request, res: Response, rawName: string, reference: string): Promise<void> {
  const { remote, name, key } = resolveRepository(ctx, req, res, rawName);
  const result = isDigest(reference)
    ? await ctx.manifests.byDigest(remote, name, parseDigest(reference))
    : await ctx.manifests.byTag(remote, name, validateTag(reference));
  await ctx.manifests.admit(remote, name, result, isDigest(reference) ? undefined : reference);
  const { descriptor } = result;
  ctx.usage?.manifest(key, descriptor.digest);
  if (!isDigest(reference)) ctx.usage?.tag(key, reference);
  markCache(res, result.origin);
  if (result.origin === 'stale') res.setHeader('Warning', '110 pullmirror "Response is Stale"');
  res.setHeader('Content-Type', descriptor.mediaType);
  res.setHeader('Docker-Content-Digest', descriptor.digest);
  res.setHeader('ETag', `"${descriptor.digest}"`);
  res.setHeader('Content-Length', descriptor.size);
  if (req.headers['if-none-match'] === `"${descriptor.digest}"`) {
    res.removeHeader('Content-Length');
    res.status(304).end();
    return;
  }
  if (req.method === 'HEAD') {
    res.status(200).end();
    return;
  }
  res.status(200).end(await ctx.manifests.bytesFor(remote, name, result));
}
