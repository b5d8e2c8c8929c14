import type { TLSSocket } from 'node:tls';
import type { NextFunction, Request, Response } from 'express';
import type { Htpasswd, LoginOutcome } from '../../auth/htpasswd.ts';
import { RegistryError } from '../../registry/errors.ts';

export interface AuthOptions {
  /** Absent: the mirror has no auth; every client is anonymous and credentials are ignored. */
  htpasswd?: Htpasswd;
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
 * log shows it; the private-repository guard trusts it).
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
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const certificateUser = verifiedCertificateUser(req);
    if (certificateUser !== undefined) res.locals.user = certificateUser;
    if (!htpasswd) return next();
    res.locals.authRealm = realm;
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
