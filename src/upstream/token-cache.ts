import { LRUCache } from 'lru-cache';
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { tokensFetched } from '../metrics/metrics.ts';
import { RegistryError } from '../registry/errors.ts';
import { SingleFlight } from '../util/single-flight.ts';

export interface Credentials {
  username: string;
  password: string;
}

interface TokenResponse {
  token?: string;
  access_token?: string;
  expires_in?: number;
  issued_at?: string;
}

/**
 * The token server refused the mirror's own credentials (401/403 to a request carrying them):
 * a configuration fault, not a client's. UpstreamRegistry falls back to anonymous tokens on it.
 */
export class CredentialsRefusedError extends RegistryError {
  readonly realm: string;
  readonly upstreamStatus: number;

  constructor(realm: string, upstreamStatus: number) {
    super('DENIED', "upstream token server refused the mirror's credentials", { status: 502 });
    this.realm = realm;
    this.upstreamStatus = upstreamStatus;
  }
}

/** Tokens live at least this long per the spec when the server gives no expiry. */
const DEFAULT_EXPIRES_IN_S = 60;

/**
 * Fetches and caches Bearer tokens per (realm, service, scope), each until shortly before it
 * expires; concurrent requests for one scope share one token request.
 */
export class TokenCache {
  private readonly tokens = new LRUCache<string, string>({ max: 10_000, ttlAutopurge: false });
  private readonly inflight = new SingleFlight<string>();
  private readonly dispatcher: Dispatcher;
  private readonly credentials?: Credentials;
  private readonly logger: Logger;
  /** How many tokens were fetched: the benchmark and tests read it. */
  fetched = 0;

  constructor(options: { dispatcher: Dispatcher; credentials?: Credentials; logger: Logger }) {
    this.dispatcher = options.dispatcher;
    this.credentials = options.credentials;
    this.logger = options.logger;
  }

  async get(realm: string, service: string | undefined, scope: string): Promise<string> {
    const key = `${realm}|${service ?? ''}|${scope}`;
    const cached = this.tokens.get(key);
    if (cached) return cached;
    return this.inflight.do(key, async () => {
      const { token, ttlMs } = await this.fetchToken(realm, service, scope);
      if (ttlMs > 0) this.tokens.set(key, token, { ttl: ttlMs });
      return token;
    });
  }

  invalidate(realm: string, service: string | undefined, scope: string): void {
    this.tokens.delete(`${realm}|${service ?? ''}|${scope}`);
  }

  private async fetchToken(realm: string, service: string | undefined, scope: string): Promise<{ token: string; ttlMs: number }> {
    const url = new URL(realm);
    if (service) url.searchParams.set('service', service);
    if (scope) url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (this.credentials) {
      headers.authorization = `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
    }
    // Wall time only to compare with the server's issued_at; the token's life runs on a monotonic clock.
    const started = Date.now();
    const startedMono = performance.now();
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { method: 'GET', headers, dispatcher: this.dispatcher });
    } catch (error) {
      throw new RegistryError('UPSTREAM_UNAVAILABLE', `token server unreachable: ${(error as Error).message}`, { cause: error });
    }
    this.fetched++;
    tokensFetched.inc();
    if (response.statusCode !== 200) {
      await response.body.dump();
      this.logger.warn('upstream token refused', { realm: url.origin + url.pathname, scope, status: response.statusCode });
      if ((response.statusCode === 401 || response.statusCode === 403) && this.credentials) {
        throw new CredentialsRefusedError(url.origin + url.pathname, response.statusCode);
      }
      if (response.statusCode === 401 || response.statusCode === 403) {
        throw new RegistryError('DENIED', 'upstream token server refused an anonymous token', { status: 502 });
      }
      throw new RegistryError('UPSTREAM_UNAVAILABLE', `upstream token server answered ${response.statusCode}`);
    }
    const body = (await response.body.json()) as TokenResponse;
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError('UPSTREAM_UNAVAILABLE', 'upstream token server sent no token');
    const expiresInMs = (body.expires_in && body.expires_in > 0 ? body.expires_in : DEFAULT_EXPIRES_IN_S) * 1000;
    const issuedAt = body.issued_at ? Date.parse(body.issued_at) : NaN;
    // A token issued before we asked (by the server's clock) has already lived that long.
    const livedBeforeAsked = Number.isFinite(issuedAt) ? Math.max(0, started - issuedAt) : 0;
    // Renew a little early (10%, at least 5 s) so no request leaves with a token about to lapse.
    const ttlMs = expiresInMs - livedBeforeAsked - (performance.now() - startedMono) - Math.max(5_000, expiresInMs / 10);
    this.logger.debug('upstream token fetched', { scope, expiresInS: expiresInMs / 1000 });
    return { token, ttlMs };
  }
}
