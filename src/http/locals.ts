import type { Logger } from '../logging/logger.ts';
import type { RegistryError } from '../registry/errors.ts';
import type { ResolvedRepository } from './context.ts';
import type { Route } from './route.ts';

/*
 * What the middleware and handlers of one request tell each other through `res.locals`, typed
 * once here instead of cast at every use.
 */
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The request's child logger (made on first use, see request-context). */
      log: Logger;
      /** The client's address (behind http.trustedproxies, the one they name): logs and login throttling. */
      remote?: string;
      /** The authenticated client (`user`, or `cert:<CN>`); absent for an anonymous one. */
      user?: string;
      /** When the mirror has auth: the 401 (challenge included) for a client it did not authenticate. */
      refuseAnonymous?: (message: string) => RegistryError;
      /** The /v2 route the request matched. */
      route?: Route;
      /** An ops route's name, for the request metrics. */
      routeLabel?: string;
      /** The registry and repository resolved for the request (once per request). */
      repository?: ResolvedRepository & { raw: string };
      /** How the answer was served, for the access log. */
      cache?: 'hit' | 'miss' | 'stale';
      /** Why a transfer was broken off after its headers went out. */
      streamError?: string;
    }
  }
}

export {};
