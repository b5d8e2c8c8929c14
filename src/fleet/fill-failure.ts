import { ERROR_CODES, RegistryError, type ErrorCode } from '../registry/errors.ts';
import type { FillFailure } from './fill-coordinator.ts';

/**
 * The codes a failed fill can tell its followers, each with the statuses a fill of ours gives
 * it (see upstreamStatusError and the writer: a 404 upstream is BLOB_UNKNOWN, bad content from
 * upstream is a 502, a full store a 503). A record naming anything else did not come from a
 * pullmirror fill.
 */
const FILL_FAILURE_STATUSES: Partial<Record<ErrorCode, readonly number[]>> = {
  BLOB_UNKNOWN: [404],
  DENIED: [403, 502],
  TOOMANYREQUESTS: [429],
  DIGEST_INVALID: [502],
  SIZE_INVALID: [502],
  UPSTREAM_UNAVAILABLE: [502],
  UPSTREAM_TIMEOUT: [504],
  UNAVAILABLE: [503],
};

/** Longer messages are not ours: a client is never handed an arbitrary amount of text from Redis. */
const MAX_MESSAGE = 300;
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * A failure record as read from Redis, checked field by field; undefined when it is not one a
 * pullmirror fill writes. Own properties only: `code in ERROR_CODES` would accept
 * `constructor` or `__proto__`. Anyone who can write the Redis keys could otherwise make a
 * follower answer any status with any code.
 */
export function parseFillFailure(text: string): FillFailure | undefined {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return undefined;
  const { code, message, status, epoch } = record as Record<string, unknown>;
  if (typeof code !== 'string' || !Object.hasOwn(FILL_FAILURE_STATUSES, code)) return undefined;
  const statuses = FILL_FAILURE_STATUSES[code as ErrorCode]!;
  if (typeof status !== 'number' || !statuses.includes(status)) return undefined;
  if (typeof message !== 'string' || message.length > MAX_MESSAGE || CONTROL.test(message)) return undefined;
  if (epoch !== undefined && !(typeof epoch === 'number' && Number.isSafeInteger(epoch) && epoch > 0)) return undefined;
  return { code, message, status, ...(epoch === undefined ? {} : { epoch }) };
}

/** What followers in other instances are told when this instance's download fails. */
export function fillFailureOf(error: unknown): FillFailure {
  if (error instanceof RegistryError && FILL_FAILURE_STATUSES[error.code]?.includes(error.status)) {
    return { code: error.code, message: error.message.replace(new RegExp(CONTROL, 'g'), ' ').slice(0, MAX_MESSAGE), status: error.status };
  }
  return { code: 'UPSTREAM_UNAVAILABLE', message: 'the upstream download failed', status: 502 };
}

/** The error a follower's clients get for a holder's (checked) failure. */
export function fillFailureError(failure: FillFailure): RegistryError {
  const code: ErrorCode = Object.hasOwn(FILL_FAILURE_STATUSES, failure.code) ? (failure.code as ErrorCode) : 'UPSTREAM_UNAVAILABLE';
  const status = FILL_FAILURE_STATUSES[code]!.includes(failure.status ?? -1) ? failure.status : ERROR_CODES[code].status;
  return new RegistryError(code, failure.message, { status });
}
