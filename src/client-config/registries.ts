import type { Config } from '../config/schema.ts';

/** One registry the mirror serves, as a client config names it. */
export interface ServedRegistry {
  /** What image names start with (`docker.io`, `ghcr.io`) and containerd sends as `?ns=`. */
  namespace: string;
  /** The remote's short path alias on the mirror (`/v2/ghcr/…`), if it has one. */
  prefix?: string;
  /** The remote of `proxy` itself: the mirror's root path (`/v2/<name>`) routes to it. */
  isDefault: boolean;
  /**
   * The registry a client would use without the mirror, as an origin: containerd's `server`
   * (its fallback after the mirror) and podman's `location`.
   */
  server: string;
}

/** Docker Hub is named docker.io in image names but answers at registry-1.docker.io. */
const DOCKER_HUB_SERVER = 'https://registry-1.docker.io';

/**
 * Every registry the config serves, the default remote first, in config order. The fallback
 * (`server`) is the registry the image names name, not `remoteurl`: the mirror may reach a
 * registry through an address a client cannot or should not use (a company's Docker Hub
 * proxy, an internal name, the mirror's own credentials). When `remoteurl` is that registry's
 * own address it is used as written, so a registry served over plain HTTP stays http.
 */
export function servedRegistries(config: Config): ServedRegistry[] {
  const entry = (namespace: string, remoteurl: string, isDefault: boolean, prefix?: string): ServedRegistry => ({
    namespace,
    ...(prefix !== undefined ? { prefix } : {}),
    isDefault,
    server: serverOf(namespace, remoteurl),
  });
  return [
    entry(config.proxy.namespace, config.proxy.remoteurl, true),
    ...config.proxy.remotes.map((remote) => entry(remote.namespace, remote.remoteurl, false, remote.prefix)),
  ];
}

function serverOf(namespace: string, remoteurl: string): string {
  if (namespace === 'docker.io') return DOCKER_HUB_SERVER;
  const url = new URL(remoteurl);
  return url.host === namespace ? url.origin : `https://${namespace}`;
}
