import { LRUCache } from 'lru-cache';
import { SingleFlight } from '../util/single-flight.ts';
import type { Logger } from '../logging/logger.ts';
import type { Digest } from '../registry/digest.ts';
import type { Remote } from '../upstream/remotes.ts';
import { RegistryError } from '../registry/errors.ts';
import { isStoreUnwritable } from '../storage/blob-store.ts';
import type { RepositoryLinks } from '../storage/repository-links.ts';
import type { RepositoryPrivacy } from './repository-privacy.ts';

/** What an anonymous client asks for, as far as access is concerned. */
export type AccessRequest =
  | { kind: 'manifest'; reference: string }
  | { kind: 'blob'; digest: Digest }
  | { kind: 'tags' };

/** The answer: allowed; private upstream (refuse the client); or a blob the repository does not hold. */
export type AccessDecision = 'allowed' | 'private' | 'not-in-repository';

/**
 * Keeps what the mirror's upstream account can pull from reaching clients the upstream would
 * refuse (proxy.privaterepos.protect). A client the mirror authenticated may pull all the
 * account can, as distribution's proxy allows; for any other client:
 *
 * - a repository the upstream serves only with credentials is refused: 401 with the challenge
 *   when the mirror has auth (the client may retry with credentials), else 403 DENIED;
 * - a blob is served only through a repository that holds it: a manifest of that repository
 *   the mirror fetched references it, or the upstream confirms it (a HEAD with the mirror's
 *   account, whose verdict is then kept as a link). Otherwise BLOB_UNKNOWN, the answer the
 *   upstream itself gives for a digest that is not in the repository, which also does not
 *   tell whether the mirror holds the blob for some other repository.
 *
 * A mirror without upstream credentials only ever holds public content, so nothing is checked.
 */
export class PrivateAccess {
  private readonly privacy: RepositoryPrivacy;
  private readonly links: RepositoryLinks;
  private readonly logger: Logger;
  /** `<repository key>@digest` the repository is known to hold: spares the disk on the hot path. */
  private readonly known = new LRUCache<string, true>({ max: 100_000 });
  /** Concurrent first requests for one repository's blob share one upstream check. */
  private readonly checks = new SingleFlight<boolean>();

  constructor(options: { privacy: RepositoryPrivacy; links: RepositoryLinks; logger: Logger }) {
    this.privacy = options.privacy;
    this.links = options.links;
    this.logger = options.logger;
  }

  /** May an anonymous client have this from this repository? (Authenticated clients are not asked.) */
  async check(remote: Remote, name: string, request: AccessRequest): Promise<AccessDecision> {
    if (!remote.policy.privateRepos.protect || !remote.upstream.hasCredentials) return 'allowed';
    const probe =
      request.kind === 'manifest'
        ? `/v2/${name}/manifests/${encodeURIComponent(request.reference)}`
        : request.kind === 'blob'
          ? `/v2/${name}/blobs/${request.digest.value}`
          : `/v2/${name}/manifests/latest`;
    if ((await this.privacy.verdict(remote, name, probe)) === 'private') return 'private';
    if (request.kind === 'blob') return (await this.holdsBlob(remote, name, request.digest)) ? 'allowed' : 'not-in-repository';
    return 'allowed';
  }

  private async holdsBlob(remote: Remote, name: string, digest: Digest): Promise<boolean> {
    const repo = remote.key(name);
    const key = `${repo}@${digest.value}`;
    if (this.known.get(key)) return true;
    return this.checks.do(key, async () => {
      const holds = (await this.linkedInStore(repo, digest)) || (await this.confirmUpstream(remote, name, digest));
      if (holds) this.known.set(key, true);
      return holds;
    });
  }

  /** Whether the store links the blob to the repository; false when the store cannot be read now (upstream is asked instead). */
  private async linkedInStore(repo: string, digest: Digest): Promise<boolean> {
    try {
      return await this.links.hasBlob(repo, digest);
    } catch (error) {
      if (!isStoreUnwritable(error)) throw error;
      return false;
    }
  }

  /** Asks upstream, with the mirror's account, whether the repository holds the blob; links it if so. */
  private async confirmUpstream(remote: Remote, name: string, digest: Digest): Promise<boolean> {
    const repo = remote.key(name);
    const response = await remote.upstream.request({ method: 'HEAD', path: `/v2/${name}/blobs/${digest.value}`, repository: name });
    await response.body.dump();
    if (response.statusCode === 200) {
      await this.links.linkBlobs(repo, [digest.value]).catch((error: unknown) => {
        this.logger.warn('blob link not recorded', { repository: repo, digest: digest.value, error: (error as Error).message });
      });
      return true;
    }
    if (response.statusCode === 404 || response.statusCode === 401 || response.statusCode === 403) return false;
    throw new RegistryError('UPSTREAM_UNAVAILABLE', `upstream answered ${response.statusCode} checking the blob`);
  }
}
