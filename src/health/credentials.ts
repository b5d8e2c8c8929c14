import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import { bindCredentialsSource } from '../metrics/metrics.ts';
import { credentialKeys, startCredentialCheck } from '../upstream/credential-check.ts';
import type { UpstreamRegistry } from '../upstream/upstream-registry.ts';
import { CachedCheck, upstreamCredentialsProbe, type Readiness } from './checks.ts';

/**
 * Everything that watches the mirror's upstream credentials, wired in one call: the start-up
 * check and its log lines, the `upstream-credentials` readiness check (re-asked every
 * health.upstream interval while refused), and pullmirror_upstream_credentials_refused. The
 * status page reads upstream.credentialStatus itself.
 */
export function watchUpstreamCredentials(upstream: UpstreamRegistry, readiness: Readiness, config: Config, logger: Logger): void {
  if (!upstream.hasCredentials) return;
  startCredentialCheck(upstream, logger.child({ component: 'upstream' }), credentialKeys(config.proxy));
  readiness.add(new CachedCheck('upstream-credentials', upstreamCredentialsProbe(upstream), { intervalMs: config.health.upstream.interval, threshold: 1 }));
  bindCredentialsSource(() => upstream.credentialStatus);
}
