import { errors as undiciErrors, type Dispatcher } from 'undici';
import { RegistryError, type ErrorCode } from '../registry/errors.ts';

/**
 * Translates a failed upstream exchange into the error the client gets. Network failures and
 * timeouts become 502/504 promptly; a 429 keeps Docker Hub's Retry-After; a 404 becomes the
 * caller's "unknown" code. Messages carry no header values, so no credential can leak.
 */
export function upstreamStatusError(response: Dispatcher.ResponseData, notFound: ErrorCode): RegistryError {
  const status = response.statusCode;
  if (status === 404) return new RegistryError(notFound, undefined, { detail: { upstream: 404 } });
  if (status === 429) {
    const retryAfter = header(response, 'retry-after');
    return new RegistryError('TOOMANYREQUESTS', 'upstream registry rate limit reached', {
      headers: retryAfter ? { 'Retry-After': retryAfter } : {},
    });
  }
  if (status === 401 || status === 403) {
    return new RegistryError('DENIED', 'upstream registry denied access: the repository may not exist or may be private', {
      detail: { upstream: status },
    });
  }
  if (status === 503) return new RegistryError('UNAVAILABLE', 'upstream registry unavailable', { detail: { upstream: status } });
  if (status === 504) return new RegistryError('UPSTREAM_TIMEOUT', 'upstream registry timed out', { detail: { upstream: status } });
  return new RegistryError('UPSTREAM_UNAVAILABLE', `upstream registry answered ${status}`, { detail: { upstream: status } });
}

export function upstreamNetworkError(error: unknown): RegistryError {
  if (error instanceof RegistryError) return error;
  if (
    error instanceof undiciErrors.ConnectTimeoutError ||
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError
  ) {
    return new RegistryError('UPSTREAM_TIMEOUT', 'upstream registry timed out', { cause: error });
  }
  const code = (error as NodeJS.ErrnoException)?.code;
  return new RegistryError('UPSTREAM_UNAVAILABLE', `upstream registry unreachable${code ? ` (${code})` : ''}`, { cause: error });
}

export function header(response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
