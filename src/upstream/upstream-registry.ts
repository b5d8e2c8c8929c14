import { Agent, request, type Dispatcher } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { upstreamDuration, upstreamReachable } from '../metrics/metrics.ts';
import { parseChallenge, type Challenge } from './challenge.ts';
import { CredentialsRefusedError, TokenCache, type Credentials } from './token-cache.ts';
import { header, upstreamNetworkError } from './upstream-errors.ts';

export interface UpstreamOptions {
  url: string;
  /** The registry this upstream stands for (proxy.namespace); default docker.io for Docker Hub's URL, else the URL's host. */
  namespace?: string;
  username?: string;
  password?: string;
  timeouts: { connect: number; headers: number; bodyidle: number };
  logger: Logger;
}

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Path below the registry root, e.g. `/v2/library/alpine/manifests/3.20`. */
  path: string;
  /** The repository the request is about; its pull scope is what a token is asked for. */
  repository?: string;
  headers?: Record<string, string>;
  /** Send without the mirror's credentials (anonymous token or none): what any client could get. */
  anonymous?: boolean;
}

export interface RateLimit {
  limit?: number;
  remaining: number;
  /** The window the numbers are for, in seconds (Docker Hub: 21600). */
  windowS: number;
  observedAt: number;
}

/** `76;w=21600` → { value: 76, window: 21600 }. */
function parseLimitHeader(value: string | undefined): { value: number; window?: number } | undefined {
  const match = /^\s*(\d+)(?:\s*;\s*w=(\d+))?/.exec(value ?? '');
  if (!match) return undefined;
  return { value: Number(match[1]), window: match[2] ? Number(match[2]) : undefined };
}

/** Whether the registry answers: since when, and the last network error while it does not. */
export interface Reachability {
  state: 'unknown' | 'reachable' | 'unreachable';
  since: number;
  error?: string;
}

/**
 * What the upstream made of the mirror's own credentials: `none` configured, `unchecked` yet,
 * `accepted`, `refused` (by `realm`, with `status`), or `unused` (the upstream asks for none).
 */
export interface CredentialStatus {
  state: 'none' | 'unchecked' | 'accepted' | 'refused' | 'unused';
  realm?: string;
  status?: number;
  since: number;
}

const DOCKER_HUB_HOSTS = new Set(['registry-1.docker.io', 'index.docker.io', 'docker.io']);
const MAX_REDIRECTS = 5;

/**
 * One upstream registry: an undici agent with keep-alive, the registry's auth flow (Bearer
 * tokens per scope, or Basic) and redirect following for blob downloads that land on a CDN.
 * The proxy asks it for responses; it never decides what to cache.
 */
export class UpstreamRegistry {
  readonly url: URL;
  /** The `ns` value clients such as containerd send for this upstream (docker.io for Hub). */
  readonly namespace: string;
  readonly isDockerHub: boolean;
  readonly tokens: TokenCache;
  /** Tokens asked for without credentials: they tell what an anonymous client may pull. */
  private readonly anonymousTokens: TokenCache;
  private readonly agent: Agent;
  private readonly credentials?: Credentials;
  private readonly logger: Logger;
  /** pullmirror_upstream_reachable of this registry: set by every exchange, requests and probes alike. */
  private readonly reachable: ReturnType<typeof upstreamReachable.labels>;
  /**
   * What the last exchange (a request or a readiness probe) found, as the gauge says it: for
   * /health, /api/status and the status page. Never a reason to refuse clients: cached images
   * are served whatever it says.
   */
  reachability: Reachability = { state: 'unknown', since: Date.now() };
  /** The last challenge seen: lets requests carry a token up front instead of eating a 401. */
  private challenge?: Challenge;
  /** The first `GET /v2/` in flight, which learns the challenge before any real request. */
  private ping?: Promise<void>;
  /** Docker Hub's pull allowance as its last response stated it. */
  rateLimit?: RateLimit;
  /** performance.now() when rateLimit was observed: its window runs on a monotonic clock (observedAt is for people). */
  private rateLimitObserved = -Infinity;
  /**
   * Whether the upstream takes the mirror's credentials. While they are refused every request
   * goes anonymously instead (public images keep being served); a later check may accept them.
   */
  credentialStatus: CredentialStatus;
  private readonly credentialListeners: ((status: CredentialStatus) => void)[] = [];

  constructor(options: UpstreamOptions) {
    this.url = new URL(options.url.replace(/\/+$/, ''));
    this.namespace = options.namespace ?? (DOCKER_HUB_HOSTS.has(this.url.hostname) ? 'docker.io' : this.url.host);
    this.isDockerHub = this.namespace === 'docker.io';
    this.logger = options.logger;
    this.reachable = upstreamReachable.labels(this.namespace);
    // An empty username (compose's `${REGISTRY_PROXY_USERNAME:-}` when unset) means anonymous.
    if (options.username && options.password !== undefined) {
      this.credentials = { username: options.username, password: options.password };
    }
    this.agent = new Agent({
      connections: 128,
      keepAliveTimeout: 30_000,
      connect: { timeout: options.timeouts.connect },
      headersTimeout: options.timeouts.headers,
      bodyTimeout: options.timeouts.bodyidle,
    });
    this.credentialStatus = { state: this.credentials ? 'unchecked' : 'none', since: Date.now() };
    this.tokens = new TokenCache({ dispatcher: this.agent, credentials: this.credentials, logger: this.logger });
    this.anonymousTokens = new TokenCache({ dispatcher: this.agent, logger: this.logger });
  }

  /** Whether the mirror pulls with an account (and so may hold content anonymous clients cannot get). */
  get hasCredentials(): boolean {
    return this.credentials !== undefined;
  }

  /**
   * Whether the upstream grants an anonymous client pull on `repository`, when its token says:
   * a Bearer token is asked for without credentials and its JWT `access` claim read (Docker Hub
   * and distribution's token servers drop the pull action for a private repository rather than
   * refuse). Undefined when the token is opaque: the caller must ask the registry itself.
   * An upstream without auth grants everything; one with Basic auth grants nothing anonymously.
   */
  async anonymousPullGrant(repository: string): Promise<boolean | undefined> {
    if (!this.challenge) await this.learnChallenge();
    const challenge = this.challenge;
    if (!challenge) return true;
    if (challenge.scheme === 'basic') return false;
    if (!challenge.params.realm) return undefined;
    const token = await this.anonymousTokens.get(challenge.params.realm, challenge.params.service, `repository:${repository}:pull`);
    const access = jwtAccessClaim(token);
    if (!access) return undefined;
    return access.some((entry) => entry.type === 'repository' && entry.name === repository && entry.actions?.includes('pull'));
  }

  /** Called on every change of credentialStatus (the start-up check, a refusal, a recovery). */
  onCredentialStatus(listener: (status: CredentialStatus) => void): void {
    this.credentialListeners.push(listener);
  }

  /**
   * Asks the upstream once whether it takes the mirror's credentials: one token request without
   * a scope for a Bearer upstream (Docker Hub: no pull counted), one `GET /v2/` with them for a
   * Basic one. A network error is thrown (nothing learned); any answer updates credentialStatus.
   */
  async checkCredentials(): Promise<CredentialStatus> {
    if (!this.credentials) return this.credentialStatus;
    await this.learnChallenge();
    const challenge = this.challenge;
    if (!challenge || (challenge.scheme === 'bearer' && !challenge.params.realm)) {
      this.setCredentialStatus({ state: 'unused' });
    } else if (challenge.scheme === 'bearer') {
      this.tokens.invalidate(challenge.params.realm, challenge.params.service, '');
      try {
        await this.tokens.get(challenge.params.realm, challenge.params.service, '');
        this.setCredentialStatus({ state: 'accepted' });
      } catch (error) {
        if (!(error instanceof CredentialsRefusedError)) throw error;
        this.setCredentialStatus({ state: 'refused', realm: error.realm, status: error.upstreamStatus });
      }
    } else {
      const response = await this.send({ method: 'GET', path: '/v2/' }, this.basicAuthorization());
      await response.body.dump();
      const refused = response.statusCode === 401 || response.statusCode === 403;
      this.setCredentialStatus(refused ? { state: 'refused', realm: this.url.origin, status: response.statusCode } : { state: 'accepted' });
    }
    return this.credentialStatus;
  }

  private setCredentialStatus(next: Omit<CredentialStatus, 'since'>): void {
    const current = this.credentialStatus;
    if (current.state === next.state && current.realm === next.realm && current.status === next.status) return;
    this.credentialStatus = { ...next, since: Date.now() };
    for (const listener of this.credentialListeners) listener(this.credentialStatus);
  }

  /** Credentials are sent unless the upstream refused them: then everything goes anonymously. */
  private get sendsCredentials(): boolean {
    return this.credentials !== undefined && this.credentialStatus.state !== 'refused';
  }

  private basicAuthorization(): string | undefined {
    return this.credentials ? `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}` : undefined;
  }

  /**
   * Sends a request with the right credentials. On a 401 it learns the challenge, fetches a
   * fresh token and retries once. The caller owns the returned body and must consume it.
   */
  async request(req: UpstreamRequest): Promise<Dispatcher.ResponseData> {
    const scope = req.repository ? `repository:${req.repository}:pull` : '';
    if (!this.challenge) await this.learnChallenge();
    let response = await this.send(req, await this.authorization(scope, req.anonymous));
    if (response.statusCode === 401) {
      const challenge = parseChallenge(header(response, 'www-authenticate'));
      await response.body.dump();
      if (!challenge) return response;
      if (this.challenge?.scheme === 'bearer' && challenge.scheme === 'bearer') {
        (req.anonymous || !this.sendsCredentials ? this.anonymousTokens : this.tokens).invalidate(this.challenge.params.realm, this.challenge.params.service, scope);
      }
      this.challenge = challenge;
      const retryScope = challenge.params.scope ?? scope;
      response = await this.send(req, await this.authorization(retryScope, req.anonymous));
    }
    return response;
  }

  /**
   * Asks `GET /v2/` once, as docker clients do, so the first blob or manifest request already
   * carries a token: one upstream GET per blob, not an unauthenticated one and a retry.
   * A network error is the caller's (the upstream is down); other answers are just learned from.
   */
  private learnChallenge(): Promise<void> {
    this.ping ??= (async () => {
      const response = await this.send({ method: 'GET', path: '/v2/' }, undefined);
      await response.body.dump();
      const challenge = response.statusCode === 401 ? parseChallenge(header(response, 'www-authenticate')) : undefined;
      if (challenge) this.challenge ??= challenge;
    })().catch((error: unknown) => {
      this.ping = undefined;
      throw error;
    });
    return this.ping;
  }

  private async authorization(scope: string, anonymous = false): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      if (!this.sendsCredentials || anonymous) return undefined;
      return this.basicAuthorization();
    }
    if (!challenge.params.realm) return undefined;
    if (!anonymous && this.sendsCredentials) {
      try {
        return `Bearer ${await this.tokens.get(challenge.params.realm, challenge.params.service, scope)}`;
      } catch (error) {
        if (!(error instanceof CredentialsRefusedError)) throw error;
        // Refused credentials must not fail public pulls: anonymous from now on, said once.
        this.setCredentialStatus({ state: 'refused', realm: error.realm, status: error.upstreamStatus });
      }
    }
    return `Bearer ${await this.anonymousTokens.get(challenge.params.realm, challenge.params.service, scope)}`;
  }

  /** One exchange, following redirects; credentials never follow to another origin. */
  private async send(req: UpstreamRequest, authorization: string | undefined): Promise<Dispatcher.ResponseData> {
    let url = new URL(this.url.pathname.replace(/\/$/, '') + req.path, this.url);
    let auth = authorization;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'pullmirror', ...req.headers };
      if (auth) headers.authorization = auth;
      let response: Dispatcher.ResponseData;
      const started = performance.now();
      try {
        response = await request(url, { method: req.method, headers, dispatcher: this.agent });
      } catch (error) {
        upstreamDuration.labels(this.namespace, req.method, 'error').observe((performance.now() - started) / 1000);
        this.observeReachability(error);
        throw upstreamNetworkError(error);
      }
      this.observeReachability();
      upstreamDuration.labels(this.namespace, req.method, String(response.statusCode)).observe((performance.now() - started) / 1000);
      this.observeRateLimit(response);
      const location = header(response, 'location');
      if (![301, 302, 303, 307, 308].includes(response.statusCode) || !location || hop >= MAX_REDIRECTS) return response;
      await response.body.dump();
      const next = new URL(location, url);
      if (next.origin !== url.origin) auth = undefined;
      url = next;
    }
  }

  /** An HTTP answer (no error): reachable; a network error or a timeout: unreachable, and why. */
  private observeReachability(error?: unknown): void {
    this.reachable.set(error === undefined ? 1 : 0);
    if (error === undefined) {
      if (this.reachability.state !== 'reachable') this.reachability = { state: 'reachable', since: Date.now() };
      return;
    }
    const cause = (error as Error & { cause?: Error }).cause;
    const reason = (error as Error).name === 'TimeoutError' ? 'no answer in time' : (cause?.message ?? (error as Error).message);
    this.reachability = { state: 'unreachable', since: this.reachability.state === 'unreachable' ? this.reachability.since : Date.now(), error: reason };
  }

  /**
   * Reads Docker Hub's `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
   * (and a 429) so the mirror can see the limit coming and spare it.
   */
  private observeRateLimit(response: Dispatcher.ResponseData): void {
    const remaining = parseLimitHeader(header(response, 'ratelimit-remaining'));
    if (!remaining && response.statusCode !== 429) return;
    const previous = this.rateLimit?.remaining;
    const limit = parseLimitHeader(header(response, 'ratelimit-limit'));
    const retryAfter = Number(header(response, 'retry-after'));
    this.rateLimit = {
      limit: limit?.value,
      remaining: response.statusCode === 429 ? 0 : remaining!.value,
      windowS: remaining?.window ?? (Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 60),
      observedAt: Date.now(),
    };
    this.rateLimitObserved = performance.now();
    if (previous !== this.rateLimit.remaining) {
      this.logger.info('upstream rate limit', { limit: this.rateLimit.limit, remaining: this.rateLimit.remaining, windowS: this.rateLimit.windowS });
    }
  }

  /**
   * For readiness: asks `GET /v2/` without credentials and answers the status (any status
   * means the registry is reachable); throws on a network error or after `timeoutMs`.
   */
  async probe(timeoutMs: number): Promise<number> {
    const url = new URL(this.url.pathname.replace(/\/$/, '') + '/v2/', this.url);
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'GET',
        headers: { 'user-agent': 'pullmirror' },
        dispatcher: this.agent,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      this.observeReachability(error);
      throw error;
    }
    this.observeReachability();
    await response.body.dump();
    return response.statusCode;
  }

  /** Whether Docker Hub said no more than `reserve` pulls remain, within its window. */
  rateLimitLow(reserve: number): boolean {
    const state = this.rateLimit;
    return !!state && state.remaining <= reserve && performance.now() - this.rateLimitObserved < state.windowS * 1000;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** The `access` claim of a JWT, read without verifying (the mirror only learns from it); undefined if not a JWT. */
function jwtAccessClaim(token: string): { type?: string; name?: string; actions?: string[] }[] | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { access?: unknown };
    // No claim at all: a token of another design; the registry is asked instead.
    return Array.isArray(claims.access) ? (claims.access as { type?: string; name?: string; actions?: string[] }[]) : undefined;
  } catch {
    return undefined;
  }
}
