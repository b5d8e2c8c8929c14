import type { Logger } from '../logging/logger.ts';
import { RegistryError } from '../registry/errors.ts';
import { validateName } from '../registry/names.ts';
import { SignatureRules, type SignatureRuleSettings } from '../signatures/signature-rules.ts';
import { isRegistryHost, repositoryKey } from '../storage/paths.ts';
import { UpstreamRegistry } from './upstream-registry.ts';

/** What a remote decides besides where it is: the per-upstream keys of `proxy` and `proxy.remotes[]`. */
export interface RemotePolicy {
  ttlMs: number;
  tagFreshnessMs: number;
  rateLimitReserve: number;
  privateRepos: { protect: boolean; checkTtlMs: number };
  /** proxy.resume: how an interrupted blob download from this registry is resumed. */
  resume: { retries: number; backoffMs: number };
}

/** The per-upstream keys as the config schema gives them (proxy, or one entry of proxy.remotes). */
export interface RemoteSettings {
  namespace: string;
  prefix?: string;
  remoteurl: string;
  username?: string;
  password?: string;
  ttl: number;
  tagfreshness: number;
  ratelimitreserve: number;
  timeouts: { connect: number; headers: number; bodyidle: number };
  privaterepos: { protect: boolean; checkttl: number };
  resume: { retries: number; backoff: number };
  signatures?: SignatureRuleSettings[];
}

/** A host with an optional port, as a registry namespace is written (the config schema's rule). */
const REGISTRY_HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * One registry the mirror serves: its upstream client (own agent, credentials, token caches and
 * timeouts), the namespace clients name it by, and its policies. Everything named in the store
 * is keyed per remote (repositoryKey); blobs are shared by digest.
 */
export class Remote {
  readonly namespace: string;
  readonly prefix?: string;
  /** The remote of `proxy` itself: its repositories keep the store's original place. */
  readonly isDefault: boolean;
  readonly upstream: UpstreamRegistry;
  readonly policy: RemotePolicy;
  /** proxy.signatures (or the remote's): which repositories must be signed, and by whom. */
  readonly signatures: SignatureRules;

  /** `path`: where the settings sit in the config (`proxy`, `proxy.remotes.0`), for errors that name a key. */
  constructor(settings: RemoteSettings, isDefault: boolean, logger: Logger, path = isDefault ? 'proxy' : 'proxy.remotes') {
    this.namespace = settings.namespace;
    this.prefix = settings.prefix;
    this.isDefault = isDefault;
    this.upstream = new UpstreamRegistry({
      url: settings.remoteurl,
      namespace: settings.namespace,
      username: settings.username,
      password: settings.password,
      timeouts: settings.timeouts,
      logger: logger.child({ registry: settings.namespace }),
    });
    this.policy = {
      ttlMs: settings.ttl,
      tagFreshnessMs: settings.tagfreshness,
      rateLimitReserve: settings.ratelimitreserve,
      privateRepos: { protect: settings.privaterepos.protect, checkTtlMs: settings.privaterepos.checkttl },
      resume: { retries: settings.resume.retries, backoffMs: settings.resume.backoff },
    };
    this.signatures = new SignatureRules(settings.signatures ?? [], `${path}.signatures`);
  }

  /** Whether `ns` (containerd's parameter) names this registry; docker.io answers for its aliases too. */
  servesNamespace(ns: string): boolean {
    return ns === this.namespace || (this.namespace === 'docker.io' && DOCKER_HUB_ALIASES.has(ns));
  }

  /** Docker Hub keeps official images under library/: `alpine` means `library/alpine` there, and only there. */
  repositoryName(name: string): string {
    return this.namespace === 'docker.io' && !name.includes('/') ? `library/${name}` : name;
  }

  /** The store's key of one of this registry's repositories (see paths.ts). */
  key(name: string): string {
    return repositoryKey(this, name);
  }
}

/** A request's registry and the repository name as that registry knows it. */
export interface RoutedRepository {
  remote: Remote;
  name: string;
}

/** Every registry the mirror serves, and the one place that decides which one a request is for. */
export class Remotes {
  readonly default: Remote;
  readonly all: readonly Remote[];

  constructor(config: { proxy: RemoteSettings & { remotes: (RemoteSettings & { prefix?: string })[] } }, logger: Logger) {
    this.default = new Remote(config.proxy, true, logger);
    this.all = [this.default, ...config.proxy.remotes.map((settings, index) => new Remote(settings, false, logger, `proxy.remotes.${index}`))];
  }

  /** The remote an upstream client belongs to. */
  forUpstream(upstream: UpstreamRegistry): Remote | undefined {
    return this.all.find((remote) => remote.upstream === upstream);
  }

  forNamespace(ns: string): Remote | undefined {
    return this.all.find((remote) => remote.servesNamespace(ns));
  }

  /**
   * Routing, in order: `?ns=` names the registry (unknown: NAME_UNKNOWN, so containerd tries
   * its next host); else a first path component that is a registry host or a remote's prefix
   * (`ghcr.io/owner/image`, `ghcr/owner/image`); else the default remote. The name part is validated.
   */
  route(ns: string | undefined, name: string): RoutedRepository {
    if (ns !== undefined) {
      // A bad name is NAME_INVALID whatever the namespace.
      const valid = validateName(name);
      const remote = this.forNamespace(ns.toLowerCase());
      if (!remote) throw new RegistryError('NAME_UNKNOWN', `this mirror does not serve namespace ${ns.slice(0, 100)}`);
      return { remote, name: remote.repositoryName(valid) };
    }
    const slash = name.indexOf('/');
    if (slash > 0) {
      const first = name.slice(0, slash);
      const rest = name.slice(slash + 1);
      // A registry host by its shape (`..` has a dot but is no host: the name check refuses it below).
      const host = isRegistryHost(first) && REGISTRY_HOST.test(first);
      const remote = host ? this.forNamespace(first) : this.all.find((r) => r.prefix === first);
      if (remote) return { remote, name: remote.repositoryName(validateName(rest)) };
      if (host) {
        validateName(rest); // a bad name is NAME_INVALID whatever the registry
        throw new RegistryError('NAME_UNKNOWN', `this mirror does not serve registry ${first.slice(0, 100)}`);
      }
    }
    return { remote: this.default, name: this.default.repositoryName(validateName(name)) };
  }

  /**
   * The repository a request is for, named so that no two registries share a name: the scope
   * of auth.token's challenges and the name a token must grant. distribution puts the name of
   * the URL path there; with several registries behind one mirror that name is ambiguous
   * (`/v2/acme/app?ns=ghcr.io`, the alias `/v2/ghcr/acme/app` and Docker Hub's `acme/app` share
   * it), so it is the repository's key instead (repositoryKey): the name as the default
   * remote knows it (`library/alpine` for `alpine` on Docker Hub, what Docker Hub's own token
   * server scopes), `<namespace>/<name>` on any other (`ghcr.io/acme/app`, whatever prefix,
   * alias or `ns` the request used). A default-remote name is what existing token servers
   * were given before several registries existed. Undefined when the request routes nowhere
   * (a bad name, a registry not served): the router answers it.
   */
  scopeName(ns: string | undefined, rawName: string): string | undefined {
    try {
      const { remote, name } = this.route(ns, rawName);
      return remote.key(name);
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((remote) => remote.upstream.close()));
  }
}
