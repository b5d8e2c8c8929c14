import type { Request, Response } from 'express';
import { parseDigest, type Digest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import { MediaType } from '../../registry/media-types.ts';
import { referrersIndex } from '../../registry/referrers.ts';
import { markCache, resolveRepository, type RegistryContext } from '../context.ts';

/** Referrers per page unless the client asks for fewer (`?n=`): a page stays far below a manifest's size limit. */
export const REFERRERS_PAGE = 256;

/**
 * `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1): always an image index, empty when
 * nothing refers (never 404); `?artifactType=` filters, said by `OCI-Filters-Applied`; a long
 * list comes in pages linked by `Link: <…>; rel="next"` (`?n=` and `?last=` carry the place).
 */
export async function listReferrers(ctx: RegistryContext, req: Request, res: Response, rawName: string, rawDigest: string): Promise<void> {
  const { remote, name } = resolveRepository(ctx, req, res, rawName);
  const subject = subjectDigest(rawDigest);
  const query = (key: string) => (typeof req.query[key] === 'string' ? (req.query[key]) : undefined);
  // The spec has no `n` here (nor an error code for it): a bad one is ignored, as registries ignore it for tags.
  const n = query('n');
  const pageSize = n !== undefined && /^[1-9]\d{0,5}$/.test(n) ? Math.min(Number(n), REFERRERS_PAGE) : REFERRERS_PAGE;
  const artifactType = query('artifactType');
  const last = query('last');

  const result = await ctx.referrers.list(remote, name, subject);
  let descriptors = result.descriptors;
  if (artifactType !== undefined) {
    descriptors = descriptors.filter((descriptor) => descriptor.artifactType === artifactType);
    res.setHeader('OCI-Filters-Applied', 'artifactType');
  }
  const start = last === undefined ? 0 : descriptors.findIndex((descriptor) => descriptor.digest === last) + 1;
  // A `last` no longer in the list (it changed between pages) ends the listing rather than repeat it.
  const page = last !== undefined && start === 0 ? [] : descriptors.slice(start, start + pageSize);
  if (page.length > 0 && start + pageSize < descriptors.length) {
    const next = new URLSearchParams();
    const ns = query('ns');
    if (ns) next.set('ns', ns);
    next.set('n', String(pageSize));
    next.set('last', page.at(-1)!.digest);
    if (artifactType !== undefined) next.set('artifactType', artifactType);
    res.setHeader('Link', `</v2/${rawName}/referrers/${subject.value}?${next}>; rel="next"`);
  }
  markCache(res, result.origin);
  if (result.origin === 'stale') res.setHeader('Warning', '110 pullmirror "Response is Stale"');
  const body = referrersIndex(page);
  res.status(200).setHeader('Content-Type', MediaType.ociIndex);
  res.setHeader('Content-Length', body.length);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** The subject: any digest this mirror cannot use (bad hex, an unknown algorithm) is 400 DIGEST_INVALID, as the spec asks. */
function subjectDigest(raw: string): Digest {
  try {
    return parseDigest(raw);
  } catch (error) {
    if (!(error instanceof RegistryError)) throw error;
    throw new RegistryError('DIGEST_INVALID', error.message, { detail: error.detail });
  }
}
