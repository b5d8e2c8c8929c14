import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { RegistryError } from '../registry/errors.ts';
import type { AccessVerdict, RepositoryLinks } from '../storage/repository-links.ts';
import type { Remote } from '../upstream/remotes.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { SingleFlight } from '../util/single-flight.ts';

/**
 * Learns whether the upstream serves a repository to anonymous clients ("public") or only with
 * credentials ("private"), as the mirror's own account may pull both.
 *
 * How: ask the upstream's token server for an anonymous pull token and read its `access` claim
 * (Docker Hub and distribution drop `pull` for a private repository: no registry request, no
 * pull counted). When the token says nothing (an opaque token), an anonymous `HEAD` of what the
 * client asked for settles it: 401/403 is private. The verdict is kept in memory for
 * proxy.privaterepos.checkttl (its registry's) and on disk (the repository's _access, paths.ts), which answers when the
 * upstream cannot be asked; with neither, the request fails with the upstream error (no content).
 */
export class RepositoryPrivacy {
  private readonly links: RepositoryLinks;
  private readonly logger: Logger;
  private readonly verdicts: LRUCache<string, AccessVerdict>;
  private readonly inflight = new SingleFlight<AccessVerdict>();
  /** Repositories whose outage was logged this window: one warning each, not one per request. */
  private readonly warned: LRUCache<string, true>;

  constructor(options: { links: RepositoryLinks; logger: Logger }) {
    this.links = options.links;
    this.logger = options.logger;
    // Each verdict lives for its registry's proxy.privaterepos.checkttl (set with it).
    this.verdicts = new LRUCache({ max: 50_000 });
    this.warned = new LRUCache({ max: 50_000 });
  }

  /** `probePath`: an upstream path for the anonymous HEAD, e.g. `/v2/<name>/manifests/<tag>`. */
  async verdict(remote: Remote, name: string, probePath: string): Promise<AccessVerdict> {
    const { upstream } = remote;
    const key = remote.key(name);
    const ttl = Math.max(remote.policy.privateRepos.checkTtlMs, 1);
    const cached = this.verdicts.get(key);
    if (cached) return cached;
    return this.inflight.do(key, async () => {
      let verdict: AccessVerdict;
      try {
        verdict = await this.askUpstream(upstream, name, probePath);
      } catch (error) {
        // Upstream cannot be asked: the verdict last recorded answers; without one, the client
        // gets the upstream error, never content.
        const saved = await this.links.readVerdict(key).catch(() => undefined);
        if (!this.warned.has(key)) {
          this.warned.set(key, true, { ttl: Math.max(ttl, 60_000) });
          this.logger.warn('repository privacy: upstream not asked', { repository: key, using: saved ?? 'none', error: (error as Error).message });
        }
        if (saved) return saved;
        throw error;
      }
      this.verdicts.set(key, verdict, { ttl });
      try {
        if ((await this.links.readVerdict(key)) !== verdict) {
          await this.links.writeVerdict(key, verdict);
          this.logger.info('repository privacy', { repository: key, verdict });
        }
      } catch (error) {
        this.logger.warn('repository privacy not recorded', { repository: key, error: (error as Error).message });
      }
      return verdict;
    });
  }

  private async askUpstream(upstream: UpstreamRegistry, name: string, probePath: string): Promise<AccessVerdict> {
    let granted: boolean | undefined;
    try {
      granted = await upstream.anonymousPullGrant(name);
    } catch (error) {
      // A token server that refuses anonymous clients outright serves nothing anonymously.
      if (error instanceof RegistryError && error.code === 'DENIED') return 'private';
      throw error;
    }
    if (granted !== undefined) return granted ? 'public' : 'private';
    const response = await upstream.request({ method: 'HEAD', path: probePath, repository: name, anonymous: true });
    await response.body.dump();
    const status = response.statusCode;
    if (status === 401 || status === 403) return 'private';
    if (status < 400 || status === 404) return 'public';
    throw new RegistryError('UPSTREAM_UNAVAILABLE', `anonymous probe answered ${status}`);
  }
}
