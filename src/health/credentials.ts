import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import { bindCredentialsSource } from '../metrics/metrics.ts';
import { credentialKeys, startCredentialCheck } from '../upstream/credential-check.ts';
import type { Remote } from '../upstream/remotes.ts';
import { CachedCheck, upstreamCredentialsProbe, type Readiness } from './checks.ts';

/**
 * Everything that watches a remote's upstream credentials, wired in one call: the start-up
 * check and its log lines, the readiness check (re-asked every health.upstream interval while
 * refused): `upstream-credentials` for the default remote (with the
 * pullmirror_upstream_credentials_refused gauge), `upstream-credentials:<namespace>` for another.
 * Advisory: a refusal leaves public and cached images servable, and it is the same for every
 * instance (one Secret), so counting it would take the whole fleet out of its Service (the
 * PullmirrorUpstreamCredentialsRefused alert says it instead). The status page reads credentialStatus itself.
 */
export function watchUpstreamCredentials(remote: Remote, readiness: Readiness, config: Config, logger: Logger): void {
  const { upstream } = remote;
  if (!upstream.hasCredentials) return;
  const index = config.proxy.remotes.findIndex((settings) => settings.namespace === remote.namespace);
  const keys = remote.isDefault ? credentialKeys(config.proxy) : credentialKeys(config.proxy.remotes[index], `proxy.remotes.${index}`);
  startCredentialCheck(upstream, logger.child({ component: 'upstream', registry: remote.namespace }), keys);
  const name = remote.isDefault ? 'upstream-credentials' : `upstream-credentials:${remote.namespace}`;
  readiness.add(new CachedCheck(name, upstreamCredentialsProbe(upstream), { intervalMs: config.health.upstream.interval, threshold: 1, timeoutMs: config.health.upstream.timeout + 1_000, advisory: true }));
  if (remote.isDefault) bindCredentialsSource(() => upstream.credentialStatus);
}
