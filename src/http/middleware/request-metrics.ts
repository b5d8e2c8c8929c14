import type { NextFunction, Request, Response } from 'express';
import { cacheResults, httpRequests, servedBytes } from '../../metrics/metrics.ts';
import type { CacheResult, TrafficRecorder } from '../../metrics/traffic.ts';
import type { Route } from '../route.ts';

type Child = { inc(value?: number): void };

/**
 * Counts every response once it is over (Prometheus counters and the status page's traffic).
 * The warm blob path pays one 'close' listener and a few map look-ups; label children are
 * cached so no label object is hashed per request.
 */
export function requestMetrics(traffic: TrafficRecorder, options: { onMiss?: () => void } = {}) {
  const requestChildren = new Map<string, Child>();
  const cacheChildren = new Map<string, Child>();
  const fromCache = servedBytes.labels('cache');
  const fromUpstream = servedBytes.labels('upstream');
  const child = (map: Map<string, Child>, key: string, make: () => Child): Child => {
    let found = map.get(key);
    if (!found) map.set(key, (found = make()));
    return found;
  };

  return (req: Request, res: Response, next: NextFunction): void => {
    res.once('close', () => {
      const route = res.locals.route as Route | undefined;
      const label: string = route?.kind ?? res.locals.routeLabel ?? (req.originalUrl.startsWith('/v2') ? 'v2' : 'other');
      const status = res.statusCode;
      const method = req.method;
      child(requestChildren, `${label} ${method} ${status}`, () => httpRequests.labels(label, method, String(status))).inc();
      if (route?.kind !== 'blob' && route?.kind !== 'manifest') return;
      const cache = res.locals.cache as CacheResult | undefined;
      let bytes = 0;
      if (method === 'GET' && (status === 200 || status === 206) && res.writableFinished && !res.locals.streamError) {
        bytes = Number(res.getHeader('content-length')) || 0;
      }
      if (cache) {
        child(cacheChildren, `${route.kind} ${cache}`, () => cacheResults.labels(route.kind, cache)).inc();
        if (bytes > 0) (cache === 'miss' ? fromUpstream : fromCache).inc(bytes);
        if (cache === 'miss') options.onMiss?.();
      }
      traffic.response(cache, bytes);
      if (route.kind === 'manifest' && status === 200 && !route.reference.includes(':') && cache) {
        const digest = res.getHeader('docker-content-digest');
        traffic.pull({ at: Date.now(), repository: route.name, reference: route.reference, digest: typeof digest === 'string' ? digest : undefined, cache });
      }
    });
    next();
  };
}
