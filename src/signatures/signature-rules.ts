import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/load.ts';
import { parseKeepPattern, type KeepPattern } from '../eviction/keep.ts';

/** One public key a signature may be made with, named as the config names it (never its content). */
export interface TrustedKey {
  /** `proxy.signatures.0.keys.1 (/etc/pullmirror/cosign.pub)`: what logs and errors say. */
  name: string;
  key: KeyObject;
}

export type SignatureMode = 'enforce' | 'warn';

/** One rule: the repositories it covers, the keys that may sign them, what happens otherwise. */
export interface SignatureRule {
  /** The rule's config path (`proxy.remotes.1.signatures.0`), for logs and the status page. */
  name: string;
  patterns: KeepPattern[];
  keys: TrustedKey[];
  mode: SignatureMode;
}

/** A rule as the config schema gives it. */
export interface SignatureRuleSettings {
  repositories: string[];
  keys: string[];
  mode: SignatureMode;
}

/**
 * The key types cosign signs with and node:crypto verifies: ECDSA on P-256 or P-384, RSA,
 * Ed25519. Anything else (DSA, another curve) stops start-up rather than never verifying.
 */
const EC_CURVES = new Set(['prime256v1', 'secp384r1']);

/**
 * A registry's signature rules (proxy.signatures, proxy.remotes[].signatures), keys loaded and
 * checked once at start-up: a key that cannot be read or is not a usable public key throws a
 * ConfigError naming it. Patterns are storage.eviction.keep's (src/eviction/keep.ts).
 */
export class SignatureRules {
  readonly rules: SignatureRule[];

  /** `path`: where these rules sit in the config (`proxy.signatures`). */
  constructor(settings: SignatureRuleSettings[], path: string) {
    this.rules = settings.map((rule, index) => ({
      name: `${path}.${index}`,
      patterns: rule.repositories.map(parseKeepPattern),
      keys: rule.keys.map((source, keyIndex) => loadKey(source, `${path}.${index}.keys.${keyIndex}`)),
      mode: rule.mode,
    }));
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** The first rule covering a repository (its name as the registry knows it: `library/alpine`). */
  ruleFor(name: string): SignatureRule | undefined {
    return this.rules.find((rule) => rule.patterns.some((pattern) => pattern.repository.test(name)));
  }
}

/** A key from a file, or the PEM text itself; the error names the key's config path and file, never the content. */
export function loadKey(source: string, path: string): TrustedKey {
  const inline = source.trimStart().startsWith('-----BEGIN');
  const name = inline ? path : `${path} (${source})`;
  let pem: string;
  try {
    pem = inline ? source : readFileSync(source, 'utf8');
  } catch (error) {
    throw new ConfigError(`${path}: cannot read ${source}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new ConfigError(`${name}: not a PEM public key`);
  }
  const type = key.asymmetricKeyType;
  if (type === 'ec' && !EC_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '')) {
    throw new ConfigError(`${name}: ECDSA keys must be on P-256 or P-384 (this one is on ${key.asymmetricKeyDetails?.namedCurve})`);
  }
  if (type !== 'ec' && type !== 'rsa' && type !== 'ed25519') throw new ConfigError(`${name}: ${type} keys are not supported (ECDSA P-256/P-384, RSA, Ed25519)`);
  return { name, key };
}
