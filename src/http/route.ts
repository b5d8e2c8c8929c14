import { RegistryError } from '../registry/errors.ts';

/** What a request under /v2 asks for, before any validation of its parts. */
export type Route =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'upload'; name: string }
  | { kind: 'catalog' }
  | { kind: 'referrers'; name: string; digest: string };

/** Matches a path below /v2 (as sent, not decoded) to a route of the pull API. */
export function matchRoute(path: string): Route {
  if (path === '/' || path === '') return { kind: 'base' };
  if (path === '/_catalog') return { kind: 'catalog' };
  let m = /^\/(.+)\/manifests\/([^/]+)$/.exec(path);
  if (m) return { kind: 'manifest', name: m[1], reference: m[2] };
  m = /^\/(.+)\/blobs\/uploads(?:\/[^/]*)?$/.exec(path);
  if (m) return { kind: 'upload', name: m[1] };
  m = /^\/(.+)\/blobs\/([^/]+)$/.exec(path);
  if (m) return { kind: 'blob', name: m[1], digest: m[2] };
  m = /^\/(.+)\/tags\/list$/.exec(path);
  if (m) return { kind: 'tags', name: m[1] };
  m = /^\/(.+)\/referrers\/([^/]+)$/.exec(path);
  if (m) return { kind: 'referrers', name: m[1], digest: m[2] };
  throw new RegistryError('NOT_FOUND', 'no such endpoint in the registry API');
}
