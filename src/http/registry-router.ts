import { Router, type NextFunction, type Request, type Response } from 'express';
import { RegistryError } from '../registry/errors.ts';
import { validateName } from '../registry/names.ts';
import type { RegistryContext } from './context.ts';
import { getBlob, headBlob } from './handlers/blobs.ts';
import { serveManifest } from './handlers/manifests.ts';
import { listTags } from './handlers/tags.ts';
import { matchRoute } from './route.ts';

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
  await ctx.access?.authorize(ctx, req, res, route);
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
      validateName(route.name);
      // OCI 1.1: a 404 here tells clients to fall back to the referrers tag schema.
      throw new RegistryError('NOT_FOUND', 'the referrers API is not supported by this mirror');
  }
}
