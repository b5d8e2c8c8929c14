import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { header, upstreamStatusError } from '../../upstream/upstream-errors.ts';
import { resolveRepository, type RegistryContext } from '../context.ts';

/** Tag lists always come from upstream: a mirror's own list would be a partial view. */
export async function listTags(ctx: RegistryContext, req: Request, res: Response, rawName: string): Promise<void> {
  const { upstream, name } = resolveRepository(ctx, req, res, rawName);
  const query = new URLSearchParams();
  if (typeof req.query.n === 'string' && /^\d{1,6}$/.test(req.query.n)) query.set('n', req.query.n);
  if (typeof req.query.last === 'string' && req.query.last.length <= 256) query.set('last', req.query.last);
  const suffix = query.size > 0 ? `?${query}` : '';
  const response = await upstream.request({ method: 'GET', path: `/v2/${name}/tags/list${suffix}`, repository: name });
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw upstreamStatusError(response, 'NAME_UNKNOWN');
  }
  res.status(200).setHeader('Content-Type', 'application/json');
  const link = header(response, 'link');
  if (link) res.setHeader('Link', link);
  await pipeline(response.body, res);
}
