import { Router, type NextFunction, type Request, type Response } from 'express';
import type { EvictionPreviewer } from '../browse/eviction-preview.ts';
import type { StoreBrowser } from '../browse/store-browser.ts';
import type { PassRecord } from '../eviction/scheduler.ts';
import type { FleetHeartbeat } from '../fleet/heartbeat.ts';
import { parseDigest } from '../registry/digest.ts';
import { validateName } from '../registry/names.ts';
import type { Remote, Remotes } from '../upstream/remotes.ts';

/** What the eviction view reads from the scheduler (absent: storage.delete.enabled is false). */
export interface EvictionStatus {
  scheduled: boolean;
  schedule: string;
  /** Why nothing is scheduled, when nothing is. */
  reason?: string;
  nextRun: number | null;
  running: boolean;
  passes: PassRecord[];
}

export interface BrowseContext {
  browser: StoreBrowser;
  previewer: EvictionPreviewer;
  remotes: Remotes;
  eviction(): EvictionStatus;
  fleet: FleetHeartbeat;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;

/** A bad parameter: 400 with a message naming it (plain JSON, as the other /api routes). */
class BadParameter {
  readonly message: string;
  readonly status: number;
  constructor(message: string, status = 400) {
    this.message = message;
    this.status = status;
  }
}

/**
 * The browser's JSON API, under the same `protect` as the status page (with auth configured,
 * an unauthenticated client gets 401 here too):
 *
 *   GET /api/browse/registries
 *   GET /api/browse/repositories?registry=&q=&cursor=&limit=
 *   GET /api/browse/tags?registry=&repository=&cursor=&limit=
 *   GET /api/browse/manifest?registry=&repository=&digest=
 *   GET /api/eviction              the last passes and the next one
 *   GET /api/eviction/preview      what a pass would remove now (as gc --dry-run; cached 30 s)
 *   GET /api/fleet                 every instance sharing the Redis
 *
 * `registry` is a namespace the mirror serves (default: the default remote), `repository` a
 * name in it, `cursor` the `next` of the previous page.
 */
export function browseRouter(context: BrowseContext, protect: (req: Request, res: Response, next: NextFunction) => void): Router {
  const router = Router();
  const route = (path: string, handler: (req: Request) => Promise<unknown>) =>
    router.get(path, label, protect, async (req: Request, res: Response, next: NextFunction) => {
      res.setHeader('Cache-Control', 'no-store');
      try {
        const body = await handler(req);
        if (body instanceof BadParameter) res.status(body.status).json({ error: body.message });
        else res.json(body);
      } catch (error) {
        next(error);
      }
    });
  const { browser, remotes } = context;

  route('/api/browse/registries', async () => ({ registries: await browser.registries() }));

  route('/api/browse/repositories', async (req) => {
    const params = read(req, ['registry', 'q', 'cursor', 'limit']);
    if (params instanceof BadParameter) return params;
    const remote = registryOf(remotes, params.registry);
    if (remote instanceof BadParameter) return remote;
    const q = params.q?.trim().toLowerCase();
    if (q !== undefined && !/^[a-z0-9._/-]{0,255}$/.test(q)) return new BadParameter('q: a repository name or part of one (a-z, 0-9, . _ - /)');
    const limit = limitOf(params.limit);
    if (limit instanceof BadParameter) return limit;
    return { registry: remote.namespace, q: q ?? '', ...(await browser.repositories(remote, { q: q || undefined, cursor: params.cursor, limit })) };
  });

  route('/api/browse/tags', async (req) => {
    const params = read(req, ['registry', 'repository', 'cursor', 'limit']);
    if (params instanceof BadParameter) return params;
    const target = repositoryOf(remotes, params);
    if (target instanceof BadParameter) return target;
    const limit = limitOf(params.limit);
    if (limit instanceof BadParameter) return limit;
    const page = await browser.tags(target.remote, target.name, { cursor: params.cursor, limit });
    if (!page) return new BadParameter(`the store holds no repository ${target.name} of ${target.remote.namespace}`, 404);
    return { registry: target.remote.namespace, repository: target.name, ...page };
  });

  route('/api/browse/manifest', async (req) => {
    const params = read(req, ['registry', 'repository', 'digest']);
    if (params instanceof BadParameter) return params;
    const target = repositoryOf(remotes, params);
    if (target instanceof BadParameter) return target;
    if (!params.digest) return new BadParameter('digest: required (sha256:…)');
    try {
      parseDigest(params.digest);
    } catch {
      return new BadParameter('digest: not a digest (sha256: and 64 lowercase hex digits)');
    }
    const view = await browser.manifest(target.remote, target.name, params.digest);
    if (!view) return new BadParameter(`repository ${target.name} of ${target.remote.namespace} holds no manifest ${params.digest}`, 404);
    return { registry: target.remote.namespace, repository: target.name, ...view };
  });

  route('/api/eviction', async () => context.eviction());
  route('/api/eviction/preview', async () => context.previewer.get());
  route('/api/fleet', async () => context.fleet.list());
  return router;
}

function label(_req: Request, res: Response, next: NextFunction): void {
  res.locals.routeLabel = 'status';
  next();
}

/** The named query parameters, each one string at most (a repeated one is refused). */
function read<K extends string>(req: Request, names: K[]): Partial<Record<K, string>> | BadParameter {
  const out: Partial<Record<K, string>> = {};
  for (const name of names) {
    const value = req.query[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') return new BadParameter(`${name}: give it once, as a string`);
    if (value.length > 512) return new BadParameter(`${name}: too long`);
    out[name] = value;
  }
  return out;
}

function registryOf(remotes: Remotes, namespace: string | undefined): Remote | BadParameter {
  if (!namespace) return remotes.default;
  return remotes.forNamespace(namespace.toLowerCase()) ?? new BadParameter(`registry: this mirror serves no registry ${namespace.slice(0, 100)}`, 404);
}

function repositoryOf(remotes: Remotes, params: { registry?: string; repository?: string }): { remote: Remote; name: string } | BadParameter {
  const remote = registryOf(remotes, params.registry);
  if (remote instanceof BadParameter) return remote;
  if (!params.repository) return new BadParameter('repository: required (a repository name, e.g. library/alpine)');
  try {
    validateName(params.repository);
  } catch {
    return new BadParameter('repository: not a repository name (lowercase components a-z 0-9 . _ - joined by /)');
  }
  return { remote, name: params.repository };
}

function limitOf(value: string | undefined): number | BadParameter {
  if (value === undefined) return DEFAULT_LIMIT;
  const limit = Number(value);
  if (!/^\d+$/.test(value) || limit < 1 || limit > MAX_LIMIT) return new BadParameter(`limit: a whole number from 1 to ${MAX_LIMIT}`);
  return limit;
}
