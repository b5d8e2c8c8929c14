import type { NextFunction, Request, Response } from 'express';
import { cacheResults, httpRequests, servedBytes, type TallyCell } from '../../metrics/metrics.ts';
import type { CacheResult, TrafficRecorder } from '../../metrics/traffic.ts';

/**
 * Counts every response once it is over (Prometheus counters and the status page's traffic).
 * The warm blob path pays one 'close' listener, two map look-ups and a few additions: the
 * counters are plain numbers in cells (see Tally) that prom-client reads at scrape time.
 */
export function requestMetrics(traffic: TrafficRecorder) {
  const requestCells = new Map<string, TallyCell>();
  const cacheCells = new Map<string, TallyCell>();
  const fromCache = servedBytes.cell('cache');
  const fromUpstream = servedBytes.cell('upstream');

  return (req: Request, res: Response, next: NextFunction): void => {
    res.on('close', () => {
      const route = res.locals.route;
      const label: string = route?.kind ?? res.locals.routeLabel ?? (req.originalUrl.startsWith('/v2') ? 'v2' : 'other');
      const status = res.statusCode;
      const method = req.method;
      const key = `${label} ${method} ${status}`;
      let cell = requestCells.get(key);
      if (!cell) requestCells.set(key, (cell = httpRequests.cell(label, method, String(status))));
      cell.value++;
      if (route?.kind !== 'blob' && route?.kind !== 'manifest') return;
      const cache: CacheResult | undefined = res.locals.cache;
      let bytes = 0;
      if (method === 'GET' && (status === 200 || status === 206) && res.writableFinished && !res.locals.streamError) {
        bytes = Number(res.getHeader('content-length')) || 0;
      }
      const repository = res.locals.repository;
      if (cache) {
        // Per registry (its namespace), so one registry's misses are told from another's.
        const registry = repository?.remote.namespace ?? '';
        const cacheKey = `${route.kind} ${cache} ${registry}`;
        let cacheCell = cacheCells.get(cacheKey);
        if (!cacheCell) cacheCells.set(cacheKey, (cacheCell = cacheResults.cell(route.kind, cache, registry)));
        cacheCell.value++;
        (cache === 'miss' ? fromUpstream : fromCache).value += bytes;
      }
      traffic.response(cache, bytes);
      if (route.kind === 'manifest' && status === 200 && cache && !route.reference.includes(':')) {
        const digest = res.getHeader('docker-content-digest');
        traffic.pull({ at: Date.now(), repository: repository?.key ?? route.name, reference: route.reference, digest: typeof digest === 'string' ? digest : undefined, cache });
      }
    });
    next();
  };
}
