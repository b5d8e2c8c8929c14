import type { TLSSocket } from 'node:tls';
import type { NextFunction, Request, Response } from 'express';
import type { Htpasswd, LoginOutcome } from '../../auth/htpasswd.ts';
import { grants, type TokenVerifier } from '../../auth/token-verifier.ts';
import { RegistryError } from '../../registry/errors.ts';
import { matchRoute } from '../route.ts';

/** auth.token: the token server clients are sent to, and the verifier of what they bring back. */
export interface TokenAuthOptions {
  verifier: TokenVerifier;
  realm: string;
  service: string;
  /** The scope name of a request's repository (`?ns=` and the path's name), see Remotes.scopeName. */
  scopeName: (ns: string | undefined, rawName: string) => string | undefined;
}

export interface AuthOptions {
  /** Neither: the mirror has no auth; every client is anonymous and credentials are ignored. */
  htpasswd?: Htpasswd;
  token?: TokenAuthOptions;
  /** The Basic realm (auth.htpasswd.realm). */
  realm: string;
  /** ours (auth.htpasswd.anonymouspull): clients without credentials may pull public images. */
  anonymousPull: boolean;
}

/** The 401 every refusal sends: the challenge tells clients to retry with Basic credentials. */
export function unauthorized(realm: string, message = 'authentication required'): RegistryError {
  return new RegistryError('UNAUTHORIZED', message, {
    headers: { 'WWW-Authenticate': challengeFor(realm) },
  });
}

/** 429 TOOMANYREQUESTS with Retry-After: throttled logins and a full bcrypt queue. */
function tooManyRequests(message: string, retryAfterS: number): RegistryError {
  return new RegistryError('TOOMANYREQUESTS', message, { headers: { 'Retry-After': String(retryAfterS) } });
}

function challengeFor(realm: string): string {
  return `Basic realm="${realm.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * HTTP Basic authentication against auth.htpasswd, as distribution does it: `GET /v2/` without
 * credentials is challenged (clients learn there that the mirror wants credentials), wrong
 * credentials are always 401 UNAUTHORIZED, and a request without credentials is 401 unless
 * anonymous pulls are allowed (then the ping answers 200, carrying the challenge). Sets `res.locals.user` for an authenticated client (the access
 * log shows it; the private-repository guard trusts it). A throttled login (too many failures
 * from the address or for the name) or a full bcrypt queue is 429 TOOMANYREQUESTS with
 * Retry-After (Htpasswd.login decides). With auth.token, tokenAuthentication below instead.
 *
 * A client certificate verified against http.tls.clientcas authenticates too (the user is its
 * CN): it is how a dockerd fleet can be let in, as dockerd sends a mirror that challenges it
 * its Docker Hub login, not credentials of the mirror's own.
 *
 * Empty credentials (`Basic Og==`, what skopeo sends after a challenge when it has none) count
 * as none. Without auth configured, credentials a client sends anyway are ignored: dockerd
 * sends its Docker Hub login to a mirror that challenges it, others send what they have.
 */
export function authentication(options: AuthOptions) {
  const { htpasswd, realm, anonymousPull } = options;
  if (options.token) return tokenAuthentication(options.token);
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const certificateUser = verifiedCertificateUser(req);
    if (certificateUser !== undefined) res.locals.user = certificateUser;
    if (!htpasswd) return next();
    res.locals.refuseAnonymous = (message) => unauthorized(realm, message);
    const credentials = basicCredentials(req.headers.authorization);
    if (!credentials) {
      if (certificateUser !== undefined) return next();
      if (!anonymousPull) return next(unauthorized(realm));
      // Anonymous pulls allowed: the ping answers 200, or a dockerd without a login for the
      // mirror (it has none to give) falls back to Docker Hub for every image. The challenge
      // rides along on the 200, so a client that has credentials (skopeo --creds) still learns
      // to send them; dockerd reads challenges from 401s only.
      if (req.path === '/v2/' || req.path === '/v2') res.setHeader('WWW-Authenticate', challengeFor(realm));
      return next();
    }
    let outcome: LoginOutcome;
    try {
      outcome = await htpasswd.login(credentials.user, credentials.password, res.locals.remote ?? 'unknown');
    } catch (error) {
      return next(error);
    }
    switch (outcome.kind) {
      case 'valid':
        res.locals.user = credentials.user;
        return next();
      case 'invalid':
        res.locals.log?.info('authentication failed', { user: credentials.user.slice(0, 100) });
        return next(unauthorized(realm, 'invalid username or password'));
      case 'throttled':
        return next(tooManyRequests('too many failed logins: try again later', outcome.retryAfterS));
      case 'busy':
        return next(tooManyRequests('too many logins being checked: try again shortly', outcome.retryAfterS));
    }
  };
}

/**
 * distribution's token authentication (auth.token): a request without a Bearer token is
 * answered 401 with `Bearer realm=…,service=…,scope=repository:NAME:pull` (NAME names the
 * repository across every registry the mirror serves, see Remotes.scopeName; no scope for
 * `GET /v2/`), and a token must be valid (TokenVerifier) and, for a repository, grant `pull`
 * on it; else 401 with `error="invalid_token"` or `error="insufficient_scope"`, as distribution
 * answers. A token with a subject authenticates that subject (`res.locals.user`, so private
 * upstream repositories are served to it); a token the server gave an anonymous client
 * (empty `sub`) lets it pull what the token grants, as an anonymous client. A client
 * certificate verified against http.tls.clientcas authenticates without a token.
 */
function tokenAuthentication(options: TokenAuthOptions) {
  const { verifier } = options;
  return (req: Request, res: Response, next: NextFunction): void => {
    const raw = repositoryOf(req.path);
    const repository = raw === undefined ? undefined : options.scopeName(typeof req.query.ns === 'string' ? req.query.ns : undefined, raw);
    const challenge = (error?: 'invalid_token' | 'insufficient_scope') => bearerChallenge(options, repository, error);
    res.locals.refuseAnonymous = (message) => new RegistryError('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': challenge('insufficient_scope') } });
    const certificateUser = verifiedCertificateUser(req);
    if (certificateUser !== undefined) res.locals.user = certificateUser;
    const token = /^\s*bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    if (token === undefined) {
      if (certificateUser !== undefined) return next();
      return next(new RegistryError('UNAUTHORIZED', 'authentication required', { headers: { 'WWW-Authenticate': challenge() }, detail: accessDetail(repository) }));
    }
    const check = verifier.verify(token);
    if (!check.ok) {
      res.locals.log?.info('token refused', { reason: check.reason });
      return next(new RegistryError('UNAUTHORIZED', `invalid token: ${check.reason}`, { headers: { 'WWW-Authenticate': challenge('invalid_token') } }));
    }
    if (repository !== undefined && !grants(check.access, repository, 'pull')) {
      res.locals.log?.info('token does not grant pull', { repository, subject: check.subject.slice(0, 100) });
      return next(
        new RegistryError('UNAUTHORIZED', 'the token does not grant pull on this repository', {
          headers: { 'WWW-Authenticate': challenge('insufficient_scope') },
          detail: accessDetail(repository),
        }),
      );
    }
    if (check.subject !== '') res.locals.user = check.subject;
    next();
  };
}

function bearerChallenge(options: TokenAuthOptions, repository: string | undefined, error?: string): string {
  const quote = (value: string) => `"${value.replace(/["\\]/g, '\\$&')}"`;
  let challenge = `Bearer realm=${quote(options.realm)},service=${quote(options.service)}`;
  if (repository !== undefined) challenge += `,scope=${quote(`repository:${repository}:pull`)}`;
  if (error) challenge += `,error=${quote(error)}`;
  return challenge;
}

/** distribution's detail of an UNAUTHORIZED answer: the access the request needs. */
function accessDetail(repository: string | undefined): unknown {
  return repository === undefined ? undefined : [{ Type: 'repository', Class: '', Name: repository, Action: 'pull' }];
}

/** The repository a /v2 request is for, when its name is well-formed (it goes into a header). */
function repositoryOf(path: string): string | undefined {
  if (!path.startsWith('/v2/')) return undefined;
  let route;
  try {
    route = matchRoute(path.slice(3));
  } catch {
    return undefined; // no route: the router answers it
  }
  if (!('name' in route) || route.name.length > 255) return undefined;
  return /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/.test(route.name) ? route.name : undefined;
}

/** `cert:<CN>` of a client certificate the TLS server verified (only with http.tls.clientcas). */
function verifiedCertificateUser(req: Request): string | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (!socket.encrypted || !socket.authorized || typeof socket.getPeerCertificate !== 'function') return undefined;
  const certificate = socket.getPeerCertificate();
  if (!certificate || Object.keys(certificate).length === 0) return undefined;
  const cn = certificate.subject?.CN;
  return `cert:${(Array.isArray(cn) ? cn[0] : cn) ?? 'unnamed'}`;
}

/** `Basic base64(user:password)` → the pair; undefined for none, another scheme, or an empty user. */
function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
