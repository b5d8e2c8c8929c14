import type { Request, Response } from 'express';
import type { AccessRecorder } from '../eviction/access-recorder.ts';
import type { Logger } from '../logging/logger.ts';
import type { ProxyBlobStore } from '../proxy/proxy-blob-store.ts';
import type { ProxyManifestStore } from '../proxy/proxy-manifest-store.ts';
import type { PrivateAccess } from '../proxy/private-access.ts';
import { validateName } from '../registry/names.ts';
import { RegistryError } from '../registry/errors.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';

/** What the handlers need, built once by the composition root. */
export interface RegistryContext {
  blobs: ProxyBlobStore;
  manifests: ProxyManifestStore;
  /** Picks the upstream for a request; `ns` is containerd's namespace parameter, if sent. */
  upstreamFor(ns: string | undefined): UpstreamRegistry | undefined;
  logger: Logger;
  /** http.sendtimeout: a blob response that makes no progress this long is closed. */
  sendTimeoutMs: number;
  /** Records last use for eviction (fire-and-forget); absent when the store is read-only. */
  usage?: AccessRecorder;
  /** Refuses private upstream content to clients the mirror has not authenticated (proxy.privaterepos). */
  access?: PrivateAccess;
}

/** The upstream and the upstream-side repository name a request is about. */
export function resolveRepository(ctx: RegistryContext, req: Request, res: Response, rawName: string): { upstream: UpstreamRegistry; name: string } {
  // The access check and the handler both ask: resolve once per request.
  const known = res.locals.repository;
  if (known?.raw === rawName) return known;
  const ns = typeof req.query.ns === 'string' ? req.query.ns : undefined;
  const name = validateName(rawName);
  const upstream = ctx.upstreamFor(ns);
  if (!upstream) {
    throw new RegistryError('NAME_UNKNOWN', `this mirror does not serve namespace ${ns?.slice(0, 100)}`);
  }
  if (ns) res.setHeader('OCI-Namespace', ns);
  const resolved = { raw: rawName, upstream, name: upstream.repositoryName(name) };
  res.locals.repository = resolved;
  return resolved;
}

/** Marks how a response was served, for the access log and the X-Pullmirror-Cache header. */
export function markCache(res: Response, origin: 'cache' | 'upstream' | 'stale'): void {
  const label = origin === 'cache' ? 'hit' : origin === 'upstream' ? 'miss' : 'stale';
  res.locals.cache = label;
  res.setHeader('X-Pullmirror-Cache', label);
}
