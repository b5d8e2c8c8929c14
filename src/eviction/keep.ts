import { splitRepositoryKey } from '../storage/paths.ts';

/**
 * storage.eviction.keep: images that neither the TTL nor the size cap ever evict, written as a
 * client names them: `docker.io/library/alpine:*`, `ghcr.io/acme/base:stable`,
 * `quay.io/org/app@sha256:…`, or a whole repository (`docker.io/library/node`). `*` matches
 * within one path component or tag, `**` across components (`ghcr.io/acme/**`).
 *
 * A kept tag keeps the manifest it points at (and, through the plan, that manifest's children,
 * config and layers); a kept repository keeps every tag and manifest in it.
 */
export interface KeepPattern {
  /** The pattern as written in the config (what the status page and `gc` show). */
  source: string;
  registry: string;
  repository: RegExp;
  /** undefined: the whole repository. */
  tag?: RegExp;
  digest?: string;
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Parses one pattern; throws with a message saying what is wrong (the config schema shows it). */
export function parseKeepPattern(source: string): KeepPattern {
  const text = source.trim();
  const slash = text.indexOf('/');
  if (slash <= 0) throw new Error(`"${source}": name the registry first (e.g. docker.io/library/alpine:*)`);
  const registry = normalizeRegistry(text.slice(0, slash));
  if (!/[.:]/.test(registry) && registry !== 'localhost') throw new Error(`"${source}": "${registry}" is not a registry host (e.g. docker.io, ghcr.io)`);
  let rest = text.slice(slash + 1);
  let tag: string | undefined;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new Error(`"${source}": "${digest}" is not a digest`);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!/^[\w*][\w.*-]{0,127}$/.test(tag)) throw new Error(`"${source}": "${tag}" is not a tag or tag pattern`);
    }
  }
  if (!/^[a-z0-9*]+(?:[._/-]*[a-z0-9*]+)*$/.test(rest)) throw new Error(`"${source}": "${rest}" is not a repository name or pattern`);
  // Docker Hub's official images: `docker.io/alpine` is `docker.io/library/alpine`, as docker pull says.
  if (DOCKER_HUB.has(registry) && !rest.includes('/') && !rest.includes('*')) rest = `library/${rest}`;
  return { source, registry, repository: glob(rest, '[^/]*', '.*'), ...(tag === undefined ? {} : { tag: glob(tag, '.*', '.*') }), ...(digest ? { digest } : {}) };
}

function normalizeRegistry(host: string): string {
  const lower = host.toLowerCase();
  return DOCKER_HUB.has(lower) ? 'docker.io' : lower;
}

function glob(pattern: string, star: string, doubleStar: string): RegExp {
  const parts = pattern.split('**').map((part) => part.split('*').map((piece) => piece.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join(star));
  return new RegExp(`^${parts.join(doubleStar)}$`);
}

/** The rules of one config, answering for repository keys of the store (see paths.ts repositoryKey). */
export class KeepRules {
  readonly patterns: KeepPattern[];
  private readonly defaultRegistry: string;

  /** `defaultNamespace`: proxy.namespace, the registry of keys without a host. */
  constructor(patterns: string[], defaultNamespace: string) {
    this.patterns = patterns.map(parseKeepPattern);
    this.defaultRegistry = normalizeRegistry(defaultNamespace);
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** The pattern that keeps this tag, if any. */
  keepsTag(repositoryKey: string, tag: string): KeepPattern | undefined {
    return this.matching(repositoryKey).find((pattern) => !pattern.digest && (!pattern.tag || pattern.tag.test(tag)));
  }

  /** The pattern that keeps this manifest for itself (a whole repository, or its digest), if any. */
  keepsManifest(repositoryKey: string, digest: string): KeepPattern | undefined {
    return this.matching(repositoryKey).find((pattern) => (!pattern.tag && !pattern.digest) || pattern.digest === digest);
  }

  private matching(repositoryKey: string): KeepPattern[] {
    if (this.patterns.length === 0) return [];
    const { namespace, name } = splitRepositoryKey(repositoryKey);
    const registry = namespace === undefined ? this.defaultRegistry : normalizeRegistry(namespace);
    return this.patterns.filter((pattern) => pattern.registry === registry && pattern.repository.test(name));
  }
}
