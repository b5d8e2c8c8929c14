import { Router, type Request, type Response } from 'express';
import { renderClientConfig } from '../client-config/client-config.ts';
import { CLIENT_KINDS, generateClientConfig, isClientKind } from '../client-config/generate.ts';
import { parseMirrorUrl, type MirrorUrlResult } from '../client-config/mirror-url.ts';
import type { Config } from '../config/schema.ts';
import { ClientAddress } from './client-address.ts';

/** The answer's type per kind: what the text is (one JSON file, or TOML files with header lines). */
const CONTENT_TYPES = {
  docker: 'application/json; charset=utf-8',
  containerd: 'text/plain; charset=utf-8',
  podman: 'text/plain; charset=utf-8',
} as const;

/**
 * `GET /api/client-config/<kind>`: the text `pullmirror client-config <kind>` prints for this
 * mirror's config, byte for byte (`?format=json`: `{files: [{path, content}], notes}`). The
 * mirror's URL is `?mirror=`, else the address the client reached it by: the Host header, and
 * the scheme of the connection or, from a proxy of http.trustedproxies only, X-Forwarded-Proto
 * (anyone else could make the answer point clients at another host's scheme).
 *
 * Behind `protect`, as /api/status: a config names no secret, but it names every registry
 * served, which a mirror with auth shows to authenticated clients only.
 */
export function clientConfigRouter(config: Config, options: { protect?: (req: Request, res: Response, next: (error?: unknown) => void) => void } = {}): Router {
  const protect = options.protect ?? ((_req: Request, _res: Response, next: () => void) => next());
  const proxies = new ClientAddress(config.http.trustedproxies);
  const router = Router();
  router.get(
    '/api/client-config/:kind',
    (_req: Request, res: Response, next: () => void) => {
      res.locals.routeLabel = 'client-config';
      next();
    },
    protect,
    (req: Request, res: Response) => {
      res.setHeader('Cache-Control', 'no-store');
      const kind = String(req.params.kind);
      if (!isClientKind(kind)) {
        res.status(404).json({ error: `unknown client kind ${JSON.stringify(kind.slice(0, 50))}; kinds: ${CLIENT_KINDS.join(', ')}` });
        return;
      }
      const mirror = mirrorOf(req, proxies);
      if (!mirror.ok) {
        res.status(400).json({ error: mirror.error });
        return;
      }
      const format = req.query.format ?? 'text';
      if (format !== 'text' && format !== 'json') {
        res.status(400).json({ error: 'format: expected text (the default) or json' });
        return;
      }
      const generated = generateClientConfig(kind, config, mirror.url);
      if (format === 'json') {
        res.json({ files: generated.files.map(({ path, content }) => ({ path, content })), notes: generated.notes });
        return;
      }
      res.setHeader('Content-Type', CONTENT_TYPES[kind]);
      res.end(renderClientConfig(generated));
    },
  );
  return router;
}

function mirrorOf(req: Request, proxies: ClientAddress): MirrorUrlResult {
  const given = req.query.mirror;
  if (given !== undefined) {
    if (typeof given !== 'string') return { ok: false, error: 'give ?mirror= once' };
    return parseMirrorUrl(given);
  }
  const host = req.headers.host;
  if (host === undefined || host === '') return { ok: false, error: 'the request has no Host header: give the mirror URL as ?mirror=' };
  const peer = req.socket.remoteAddress;
  const forwarded = peer !== undefined && proxies.isTrusted(peer) ? String(req.headers['x-forwarded-proto'] ?? '').split(',')[0].trim().toLowerCase() : '';
  const scheme = forwarded === 'http' || forwarded === 'https' ? forwarded : 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  const derived = parseMirrorUrl(`${scheme}://${host}`);
  return derived.ok ? derived : { ok: false, error: `${derived.error} (derived from the Host header: give the mirror URL as ?mirror=)` };
}
