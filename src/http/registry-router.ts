import { Router, type NextFunction, type Request, type Response } from 'express';
import { parseDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { validateName } from '../registry/names.ts';
import type { AccessRequest } from '../proxy/private-access.ts';
import { resolveRepository, type RegistryContext } from './context.ts';
import { getBlob, headBlob } from './handlers/blobs.ts';
import { serveManifest } from './handlers/manifests.ts';
import { listReferrers } from './handlers/referrers.ts';
import { listTags } from './handlers/tags.ts';
import { matchRoute, type Route } from './route.ts';

const READ_METHODS = new Set(['GET', 'HEAD']);

/**
 * The /v2 API of a pull-through mirror: the read side of the distribution spec. Every write
 * (push, upload, delete) is answered 405 UNSUPPORTED, as a mirror cannot accept content.
 */
export function registryRouter(ctx: RegistryContext): Router {
  const router = Router();
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    try {
      await dispatch(ctx, req, res);
    } catch (error) {
      next(error);
    }
  });
  return router;
}

async function dispatch(ctx: RegistryContext, req: Request, res: Response): Promise<void> {
  const route = matchRoute(req.path);
  res.locals.route = route;
  if (route.kind === 'upload' || !READ_METHODS.has(req.method)) {
    if ('name' in route) validateName(route.name);
    throw new RegistryError('UNSUPPORTED', 'this registry is a pull-through mirror: pushes and deletes are not supported', {
      headers: { Allow: 'GET, HEAD' },
    });
  }
  await refusePrivate(ctx, req, res, route);
  switch (route.kind) {
    case 'base':
      res.status(200).json({});
      return;
    case 'manifest':
      return serveManifest(ctx, req, res, route.name, route.reference);
    case 'blob':
      return req.method === 'HEAD'
        ? headBlob(ctx, req, res, route.name, route.digest)
        : getBlob(ctx, req, res, route.name, route.digest);
    case 'tags':
      return listTags(ctx, req, res, route.name);
    case 'catalog':
      throw new RegistryError('UNSUPPORTED', 'a mirror does not list its repositories', { status: 404 });
    case 'referrers':
      return listReferrers(ctx, req, res, route.name, route.digest);
  }
}

/**
 * proxy.privaterepos: an anonymous client gets nothing the upstream would refuse it (see
 * PrivateAccess): 401 with the challenge when the mirror has auth (it may retry with
 * credentials), else 403; a blob through a repository that does not hold it is BLOB_UNKNOWN.
 */
async function refusePrivate(ctx: RegistryContext, req: Request, res: Response, route: Route): Promise<void> {
  if (!ctx.access || res.locals.user !== undefined) return;
  if (route.kind !== 'manifest' && route.kind !== 'blob' && route.kind !== 'tags' && route.kind !== 'referrers') return;
  const { remote, name, key } = resolveRepository(ctx, req, res, route.name);
  // Referrers are asked of the repository as a whole, as its tag list is.
  const request: AccessRequest =
    route.kind === 'blob' ? { kind: 'blob', digest: parseDigest(route.digest) } : route.kind === 'manifest' ? { kind: 'manifest', reference: route.reference } : { kind: 'tags' };
  const decision = await ctx.access.check(remote, name, request);
  if (decision === 'allowed') return;
  if (decision === 'not-in-repository' && request.kind === 'blob') {
    throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: request.digest.value } });
  }
  res.locals.log.info('private repository refused to an anonymous client', { repository: key });
  const message = 'this repository is private upstream: the mirror serves it to authenticated clients only';
  throw res.locals.refuseAnonymous?.(message) ?? new RegistryError('DENIED', message);
}
