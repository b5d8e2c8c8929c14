import { Router, type Request, type Response } from 'express';
import type { Readiness } from '../health/checks.ts';
import { metricsRegistry } from '../metrics/metrics.ts';
import type { TrafficRecorder } from '../metrics/traffic.ts';
import type { LiveStoreFigures } from '../storage/store-stats.ts';
import type { Remotes } from '../upstream/remotes.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import type { StoreCapacity } from '../browse/store-capacity.ts';
import type { FleetTraffic } from '../fleet/fleet-traffic.ts';
import type { SignatureGate } from '../signatures/signature-gate.ts';
import { browseRouter, type BrowseContext } from './browse-router.ts';
import type { StatusPageAssets } from './status-page/assets.ts';
import { STATUS_PAGE, STATUS_PAGE_CSP } from './status-page/page.ts';

/** What the operator endpoints read; built once by the composition root. */
export interface OpsContext {
  readiness: Readiness;
  traffic: TrafficRecorder;
  storeStats: LiveStoreFigures;
  /** The default remote's upstream (the figures of a mirror of one registry, as before). */
  upstream: UpstreamRegistry;
  /** Every registry served, for per-registry figures. */
  remotes: Remotes;
  fillsInFlight: () => number;
  version: string;
  /** The store browser, eviction and fleet views (src/browse, src/fleet/heartbeat.ts). */
  browse?: BrowseContext;
  /** The store's size against storage.eviction.maxsize and the disk's free space. */
  capacity?(bytes: number): Promise<StoreCapacity>;
  /** With a Redis: every instance's traffic, for a fleet-wide overview (src/fleet/fleet-traffic.ts). */
  fleetTraffic?: FleetTraffic;
  /** The status page's script and stylesheet (src/http/status-page/assets.ts). */
  pageAssets?: StatusPageAssets;
  /** The signature policy, when a registry has one: its rules and what it verified and refused. */
  signatures?: SignatureGate;
}


/**
 * The operator's side of the main address, mounted before /v2: liveness and readiness for a
 * load balancer, the status page and its JSON, and (unless a debug address takes them)
 * Prometheus metrics.
 */
export function opsRouter(
  ops: OpsContext,
  options: {
    metricsPath?: string;
    /**
     * Guards the status page and its JSON (they name repositories): with auth.htpasswd, only an
     * authenticated client sees them. Health and metrics stay open for load balancers and scrapers.
     */
    protect?: (req: Request, res: Response, next: (error?: unknown) => void) => void;
  },
): Router {
  const protect = options.protect ?? ((_req: Request, _res: Response, next: () => void) => next());
  const router = Router();
  const label = (name: string) => (_req: Request, res: Response, next: () => void) => {
    res.locals.routeLabel = name;
    next();
  };
  router.get('/health', label('health'), livenessHandler(ops));
  router.get('/health/ready', label('health'), readinessHandler(ops));
  if (options.metricsPath) router.get(options.metricsPath, label('metrics'), metricsHandler);
  router.get('/api/status', label('status'), protect, async (_req: Request, res: Response, next: (error?: unknown) => void) => {
    try {
      res.setHeader('Cache-Control', 'no-store');
      res.json(await statusDocument(ops));
    } catch (error) {
      next(error);
    }
  });
  if (ops.browse) router.use(browseRouter(ops.browse, protect));
  router.get('/', label('status'), protect, (_req: Request, res: Response) => {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Content-Security-Policy', STATUS_PAGE_CSP);
    res.end(STATUS_PAGE);
  });
  const assets = ops.pageAssets;
  if (assets) {
    const asset = (type: string, body: Buffer) => (_req: Request, res: Response) => {
      res.setHeader('Content-Type', type);
      // no-cache: revalidated each time, so a page after an upgrade never runs an old script.
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.end(body);
    };
    router.get('/status-page.js', label('status'), protect, asset('text/javascript; charset=utf-8', assets.script));
    router.get('/status-page.css', label('status'), protect, asset('text/css; charset=utf-8', assets.styles));
  }
  return router;
}

/** distribution's debug server: metrics and /debug/health on their own address. */
export function debugRouter(ops: OpsContext, options: { metricsPath?: string }): Router {
  const router = Router();
  if (options.metricsPath) router.get(options.metricsPath, metricsHandler);
  router.get('/debug/health', readinessHandler(ops));
  router.get('/health', livenessHandler(ops));
  router.get('/health/ready', readinessHandler(ops));
  return router;
}

/**
 * 200 while the process runs, whatever the upstream does (an outage must not restart pods),
 * with each registry's upstream state as details: whether it answers (since when, the last
 * error) and what it made of the mirror's credentials. It waits for no probe; the due
 * readiness checks are started in the background, so the details stay current where nothing
 * polls /health/ready.
 */
function livenessHandler(ops: OpsContext) {
  return (_req: Request, res: Response): void => {
    ops.readiness.refresh();
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).json({ status: 'ok', upstream: upstreamDetails(ops.remotes) });
  };
}

/** Per registry (by namespace): reachability and credential state, as /health and /api/status give them. */
function upstreamDetails(remotes: Remotes) {
  return Object.fromEntries(
    remotes.all.map((remote) => [remote.namespace, { url: remote.upstream.url.origin, reachability: remote.upstream.reachability, credentials: remote.upstream.credentialStatus.state }]),
  );
}

/** 200 when every check passes, 503 otherwise, with each check's answer in the body. */
function readinessHandler(ops: OpsContext) {
  return async (_req: Request, res: Response, next: (error?: unknown) => void) => {
    try {
      const { ready, checks } = await ops.readiness.status();
      res.setHeader('Cache-Control', 'no-store');
      res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', checks });
    } catch (error) {
      next(error);
    }
  };
}

async function metricsHandler(_req: Request, res: Response, next: (error?: unknown) => void): Promise<void> {
  try {
    const body = await metricsRegistry.metrics();
    res.setHeader('Content-Type', metricsRegistry.contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.end(body);
  } catch (error) {
    next(error);
  }
}

/** The figures the status page draws (also handy for scripts: `curl /api/status`). */
export async function statusDocument(ops: OpsContext) {
  const store = ops.storeStats.current();
  const { traffic, scope, fillsInFlight } = await trafficScope(ops);
  const rateLimit = ops.upstream.rateLimit;
  return {
    version: ops.version,
    now: Date.now(),
    upstream: {
      url: ops.upstream.url.origin,
      rateLimit: rateLimit ? { remaining: rateLimit.remaining, limit: rateLimit.limit, windowS: rateLimit.windowS, observedAt: rateLimit.observedAt } : null,
      // Whether the upstream takes the mirror's own credentials (refused: pulls go anonymously).
      credentials: ops.upstream.credentialStatus,
      // Whether it answers (unreachable: only cached images pull; the instance stays ready).
      reachability: ops.upstream.reachability,
    },
    // Per registry: where it is, what the upstream made of its credentials, its rate limit, what the store holds of it.
    registries: ops.remotes.all.map((remote) => {
      const limit = remote.upstream.rateLimit;
      return {
        namespace: remote.namespace,
        default: remote.isDefault,
        ...(remote.prefix ? { prefix: remote.prefix } : {}),
        url: remote.upstream.url.origin,
        credentials: remote.upstream.credentialStatus,
        reachability: remote.upstream.reachability,
        rateLimit: limit ? { remaining: limit.remaining, limit: limit.limit, windowS: limit.windowS, observedAt: limit.observedAt } : null,
        store: store.registries[remote.isDefault ? '' : remote.namespace] ?? { repositories: 0, tags: 0 },
        // proxy.signatures: the rules, manifests verified, refused and let through in warn mode, the last refusal.
        signatures: ops.signatures && !remote.signatures.empty ? ops.signatures.summary(remote) : null,
      };
    }),
    store,
    ...(ops.capacity ? { capacity: await ops.capacity(store.bytes) } : {}),
    // The eviction schedule at a glance (the eviction view asks /api/eviction for the passes).
    ...(ops.browse ? { eviction: evictionSummary(ops.browse) } : {}),
    fillsInFlight,
    ...traffic,
    scope,
    totals: { ...traffic.totals, bytesSaved: traffic.totals.bytesFromCache },
  };
}

/**
 * Whose traffic the overview shows: with a Redis, the fleet's (every instance on this store:
 * counters in Redis, downloads in flight from the live records), else this instance's. When
 * the Redis cannot be asked, this instance's, and the page says so.
 */
async function trafficScope(ops: OpsContext) {
  const own = () => ops.traffic.snapshot(60);
  if (!ops.fleetTraffic) return { traffic: own(), scope: { kind: 'instance' as const }, fillsInFlight: ops.fillsInFlight() };
  const [traffic, fleet] = await Promise.all([ops.fleetTraffic.snapshot(60), ops.browse?.fleet.list()]);
  if (!traffic || !fleet || fleet.redis !== 'ok') {
    return { traffic: own(), scope: { kind: 'unavailable' as const, reason: 'Redis unreachable' }, fillsInFlight: ops.fillsInFlight() };
  }
  const alive = fleet.instances.filter((instance) => instance.state === 'alive');
  return {
    traffic,
    scope: { kind: 'fleet' as const, instances: alive.length },
    fillsInFlight: alive.reduce((sum, instance) => sum + (instance.self ? ops.fillsInFlight() : instance.fillsInFlight), 0),
  };
}

function evictionSummary(browse: BrowseContext) {
  const { scheduled, reason, nextRun, running, passes } = browse.eviction();
  return { scheduled, ...(reason ? { reason } : {}), nextRun, running, lastPass: passes[0] ?? null };
}
