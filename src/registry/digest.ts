import { createHash } from 'node:crypto';
import { RegistryError } from './errors.ts';

/** The algorithms the OCI spec registers, with the length of their hex encoding. */
const ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof ALGORITHMS;

/** A parsed, validated content digest (`algorithm:hex`). */
export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** The canonical string form, `algorithm:hex`. */
  readonly value: string;
}

const DIGEST_SHAPE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/**
 * Parses a digest string. Only lowercase hex of the registered algorithms is accepted: that is
 * what makes a digest safe to use as a file name in the store.
 */
export function parseDigest(value: string): Digest {
  const match = DIGEST_SHAPE.exec(value);
  if (!match) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest: value.slice(0, 200) } });
  const [, algorithm, hex] = match;
  if (!Object.hasOwn(ALGORITHMS, algorithm)) {
    throw new RegistryError('UNSUPPORTED', `unsupported digest algorithm ${algorithm}`, { status: 400, detail: { digest: value.slice(0, 200) } });
  }
  const length = ALGORITHMS[algorithm as DigestAlgorithm];
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) {
    throw new RegistryError('DIGEST_INVALID', `invalid ${algorithm} digest`, { detail: { digest: value.slice(0, 200) } });
  }
  return { algorithm: algorithm as DigestAlgorithm, hex, value };
}

export function isDigest(value: string): boolean {
  return value.includes(':');
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
