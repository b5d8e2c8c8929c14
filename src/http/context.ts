import type { Request, Response } from 'express';
import type { AccessRecorder } from '../eviction/access-recorder.ts';
import type { Logger } from '../logging/logger.ts';
import type { ProxyBlobStore } from '../proxy/proxy-blob-store.ts';
import type { ProxyManifestStore } from '../proxy/proxy-manifest-store.ts';
import type { ProxyReferrers } from '../proxy/proxy-referrers.ts';
import type { PrivateAccess } from '../proxy/private-access.ts';
import type { Remote, Remotes } from '../upstream/remotes.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';

/** What the handlers need, built once by the composition root. */
export interface RegistryContext {
  blobs: ProxyBlobStore;
  manifests: ProxyManifestStore;
  /** The referrers API (OCI 1.1) through the mirror. */
  referrers: ProxyReferrers;
  /** Every registry served, and the routing of a request to one of them. */
  remotes: Remotes;
  logger: Logger;
  /** http.sendtimeout: a blob response that makes no progress this long is closed. */
  sendTimeoutMs: number;
  /** Records last use for eviction (fire-and-forget); absent when the store is read-only. */
  usage?: AccessRecorder;
  /** Refuses private upstream content to clients the mirror has not authenticated (proxy.privaterepos). */
  access?: PrivateAccess;
}

/** What a request is about: its registry, the repository name there, and the store's key of it. */
export interface ResolvedRepository {
  remote: Remote;
  upstream: UpstreamRegistry;
  /** The name as the registry knows it (`library/alpine`, `owner/image` of `/v2/ghcr.io/owner/image`). */
  name: string;
  /** The store's key (paths.ts repositoryKey): what access records, links and caches are keyed by. */
  key: string;
}

/**
 * The registry and repository a request is about, decided once (Remotes.route: `?ns=`, a path
 * prefix, or the default remote). An unknown `ns` or registry is NAME_UNKNOWN before any content.
 */
export function resolveRepository(ctx: RegistryContext, req: Request, res: Response, rawName: string): ResolvedRepository {
  // The access check and the handler both ask: resolve once per request.
  const known = res.locals.repository;
  if (known?.raw === rawName) return known;
  const ns = typeof req.query.ns === 'string' ? req.query.ns : undefined;
  const { remote, name } = ctx.remotes.route(ns, rawName);
  // As the OCI spec suggests, the namespace a client asked for is echoed.
  if (ns) res.setHeader('OCI-Namespace', ns);
  const resolved = { raw: rawName, remote, upstream: remote.upstream, name, key: remote.key(name) };
  res.locals.repository = resolved;
  return resolved;
}

/** Marks how a response was served, for the access log and the X-Pullmirror-Cache header. */
export function markCache(res: Response, origin: 'cache' | 'upstream' | 'stale'): void {
  const label = origin === 'cache' ? 'hit' : origin === 'upstream' ? 'miss' : 'stale';
  res.locals.cache = label;
  res.setHeader('X-Pullmirror-Cache', label);
}
