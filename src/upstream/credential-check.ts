import type { Logger } from '../logging/logger.ts';
import type { CredentialStatus, UpstreamRegistry } from './upstream-registry.ts';

/**
 * The start-up check of the mirror's upstream credentials (one token request), and the log of
 * every change of their status: a wrong proxy.password would otherwise show only as 502s on
 * every pull. While they are refused the mirror pulls anonymously (public images keep being
 * served) and says so once; readiness, /api/status and a metric show it meanwhile.
 *
 * `keys` names where the credentials came from (`proxy.username, proxy.password`), so the log
 * says which setting to fix; never their values.
 */
export function startCredentialCheck(upstream: UpstreamRegistry, logger: Logger, keys: string): void {
  if (!upstream.hasCredentials) return;
  upstream.onCredentialStatus((status: CredentialStatus) => {
    if (status.state === 'refused') {
      logger.warn('upstream credentials refused; pulling anonymously: public images are served, private ones fail', {
        keys,
        realm: status.realm,
        status: status.status,
      });
    } else if (status.state === 'accepted') {
      logger.info('upstream credentials accepted', { keys });
    } else if (status.state === 'unused') {
      logger.warn('upstream asks for no credentials; the configured ones are not used', { keys });
    }
  });
  upstream.checkCredentials().catch((error: unknown) => {
    // Unreachable now: the readiness check asks again, and the first real request tells too.
    logger.warn('upstream credentials not checked: upstream unreachable', { keys, error: (error as Error).message });
  });
}

/** The config keys the credentials came from, for the log. */
export function credentialKeys(proxy: { passwordfile?: string }, prefix = 'proxy'): string {
  return proxy.passwordfile ? `${prefix}.username, ${prefix}.passwordfile` : `${prefix}.username, ${prefix}.password`;
}
