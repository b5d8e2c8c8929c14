import { createHash, createPublicKey, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** One grant of a token's `access` claim, as distribution's token servers write it. */
export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

/** A token's verdict: a value, so the middleware answers each case without exceptions. */
export type TokenCheck = { ok: true; subject: string; access: TokenAccess[] } | { ok: false; reason: string };

/** The JWS algorithms distribution accepts for its tokens, with their hash and key type. */
const ALGORITHMS: Record<string, { hash: string; keyType: 'rsa' | 'ec'; curve?: string }> = {
  RS256: { hash: 'sha256', keyType: 'rsa' },
  RS384: { hash: 'sha384', keyType: 'rsa' },
  RS512: { hash: 'sha512', keyType: 'rsa' },
  ES256: { hash: 'sha256', keyType: 'ec', curve: 'prime256v1' },
  ES384: { hash: 'sha384', keyType: 'ec', curve: 'secp384r1' },
  ES512: { hash: 'sha512', keyType: 'ec', curve: 'secp521r1' },
};

/** Clock skew forgiven on exp and nbf, as distribution's token verification does (60 s). */
const LEEWAY_S = 60;
/** A token longer than this is refused before any parsing. */
const MAX_TOKEN_LENGTH = 16 * 1024;
/**
 * Verified tokens remembered (by their text, at most this many and this many bytes of them): a
 * client sends one token with every request of a pull, and a signature check costs more than
 * the request it guards on the hit path.
 */
const VERIFIED_MAX = 1000;
const VERIFIED_MAX_BYTES = 4 * 1024 * 1024;

/** A verified token's verdict, good until `untilMs` (its exp with the leeway, or its x5c certificate's end). */
interface Verified {
  subject: string;
  access: TokenAccess[];
  untilMs: number;
}

export interface TokenVerifierOptions {
  /** The `iss` a token must carry (auth.token.issuer). */
  issuer: string;
  /** The `aud` a token must name (auth.token.service). */
  service: string;
  /** PEM certificates (auth.token.rootcertbundle): roots of an `x5c` chain, or keys named by `kid`. */
  rootCertBundle?: string;
  /** A JSON Web Key Set (auth.token.jwks): keys named by `kid`. */
  jwks?: string;
  /** The algorithms accepted (auth.token.signingalgorithms); every one above when absent. */
  algorithms?: string[];
}

/**
 * Verifies the Bearer tokens of distribution's token authentication (registry:2's
 * auth.token), with node:crypto only. The signing key is the leaf of the token's `x5c` chain,
 * which must lead to a certificate of rootcertbundle, or a trusted key named by `kid`: a key
 * of rootcertbundle under its libtrust key ID (what docker_auth and distribution's own tools
 * write) or a key of the JWKS under its `kid`. Then `iss` must be the issuer, `aud` name the
 * service, and `exp`/`nbf` hold (60 s leeway). `alg: none` and HMAC are never accepted, and the
 * key's type must fit the algorithm, so a public key cannot be used as an HMAC secret.
 */
export class TokenVerifier {
  private readonly issuer: string;
  private readonly service: string;
  private readonly roots: X509Certificate[];
  private readonly keys = new Map<string, KeyObject>();
  private readonly algorithms: Set<string>;
  private readonly verified = new LRUCache<string, Verified>({ max: VERIFIED_MAX, maxSize: VERIFIED_MAX_BYTES, sizeCalculation: (_verdict, token) => token.length });
  private signatures = 0;

  /** Signatures checked so far: a token seen again before it expires is answered from memory. */
  get signaturesChecked(): number {
    return this.signatures;
  }

  /** Throws naming what is wrong with the bundle or the JWKS, so start-up stops. */
  constructor(options: TokenVerifierOptions) {
    this.issuer = options.issuer;
    this.service = options.service;
    this.roots = options.rootCertBundle === undefined ? [] : parseBundle(options.rootCertBundle);
    if (options.rootCertBundle !== undefined && this.roots.length === 0) throw new Error('no PEM certificate in rootcertbundle');
    for (const root of this.roots) this.keys.set(libtrustKeyId(root.publicKey), root.publicKey);
    if (options.jwks !== undefined) {
      const set = JSON.parse(options.jwks) as { keys?: unknown };
      if (!Array.isArray(set.keys)) throw new Error('the JWKS has no "keys" array');
      for (const jwk of set.keys as { kid?: unknown }[]) {
        if (typeof jwk.kid !== 'string') throw new Error('a JWKS key has no "kid"');
        this.keys.set(jwk.kid, createPublicKey({ key: jwk, format: 'jwk' }));
      }
    }
    if (this.keys.size === 0) throw new Error('no key to verify tokens with');
    const unknown = (options.algorithms ?? []).filter((alg) => !Object.hasOwn(ALGORITHMS, alg));
    if (unknown.length > 0) throw new Error(`unsupported signing algorithms: ${unknown.join(', ')} (supported: ${Object.keys(ALGORITHMS).join(', ')})`);
    this.algorithms = new Set(options.algorithms?.length ? options.algorithms : Object.keys(ALGORITHMS));
  }

  /**
   * A token's verdict. A valid one is remembered until it expires (exp plus the leeway, or the
   * end of its x5c certificate if that comes first), so the same token again costs a lookup;
   * a refused one is checked again every time (nothing a client sends can fill the memory
   * with refusals, and a token refused for its nbf may become valid).
   */
  verify(token: string, nowMs = Date.now()): TokenCheck {
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'token too long' };
    const known = this.verified.get(token);
    if (known && nowMs <= known.untilMs) return { ok: true, subject: known.subject, access: known.access };
    const check = this.check(token, nowMs);
    if (check.ok) this.verified.set(token, { subject: check.subject, access: check.access, untilMs: check.untilMs });
    else if (known) this.verified.delete(token);
    return check.ok ? { ok: true, subject: check.subject, access: check.access } : check;
  }

  private check(token: string, nowMs: number): (TokenCheck & { ok: false }) | (Verified & { ok: true }) {
    const parts = token.split('.');
    if (parts.length !== 3) return { ok: false, reason: 'not a JWT' };
    const header = decodeJson(parts[0]);
    const claims = decodeJson(parts[1]);
    if (!header || !claims) return { ok: false, reason: 'malformed JWT' };
    const alg = typeof header.alg === 'string' ? header.alg : '';
    const algorithm = this.algorithms.has(alg) ? ALGORITHMS[alg] : undefined;
    if (!algorithm) return { ok: false, reason: `signing algorithm not accepted: ${alg.slice(0, 20)}` };
    const signer = this.signingKey(header, nowMs);
    if (typeof signer === 'string') return { ok: false, reason: signer };
    const { key, notAfterMs } = signer;
    if (key.asymmetricKeyType !== algorithm.keyType || (algorithm.curve && key.asymmetricKeyDetails?.namedCurve !== algorithm.curve)) {
      return { ok: false, reason: `the signing key does not fit ${alg}` };
    }
    const signature = Buffer.from(parts[2], 'base64url');
    this.signatures += 1;
    const signed = verify(algorithm.hash, Buffer.from(`${parts[0]}.${parts[1]}`), algorithm.keyType === 'ec' ? { key, dsaEncoding: 'ieee-p1363' } : key, signature);
    if (!signed) return { ok: false, reason: 'bad signature' };
    if (claims.iss !== this.issuer) return { ok: false, reason: 'wrong issuer' };
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(this.service)) return { ok: false, reason: 'wrong audience' };
    const now = nowMs / 1000;
    if (typeof claims.exp !== 'number' || now > claims.exp + LEEWAY_S) return { ok: false, reason: 'expired' };
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now + LEEWAY_S < claims.nbf)) return { ok: false, reason: 'not yet valid' };
    const untilMs = Math.min((claims.exp + LEEWAY_S) * 1000, notAfterMs);
    return { ok: true, subject: typeof claims.sub === 'string' ? claims.sub : '', access: accessOf(claims.access), untilMs };
  }

  /** The key that signed the token and until when it may be trusted, or why none is trusted. */
  private signingKey(header: Record<string, unknown>, nowMs: number): { key: KeyObject; notAfterMs: number } | string {
    if (Array.isArray(header.x5c)) {
      let chain: X509Certificate[];
      try {
        chain = header.x5c.map((der) => new X509Certificate(Buffer.from(String(der), 'base64')));
      } catch {
        return 'malformed x5c certificate';
      }
      if (chain.length === 0 || chain.length > 8) return 'x5c chain empty or too long';
      const now = new Date(nowMs);
      for (const cert of chain) {
        if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) return 'x5c certificate outside its validity';
      }
      // Each certificate issued by the next, which must be a CA; the last one is a certificate
      // of the bundle itself (a self-signed token certificate, as many setups have) or issued by one that is a CA.
      for (let i = 0; i + 1 < chain.length; i++) {
        if (!chain[i + 1].ca || !chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) return 'x5c chain broken';
      }
      const top = chain[chain.length - 1];
      const trusted = this.roots.some(
        (root) => root.fingerprint256 === top.fingerprint256 || (root.ca && top.checkIssued(root) && top.verify(root.publicKey)),
      );
      if (!trusted) return 'x5c chain not signed by rootcertbundle';
      return { key: chain[0].publicKey, notAfterMs: Math.min(...chain.map((cert) => new Date(cert.validTo).getTime())) };
    }
    if (typeof header.kid === 'string') {
      const key = this.keys.get(header.kid);
      return key ? { key, notAfterMs: Infinity } : 'unknown kid';
    }
    return 'no x5c or kid in the header';
  }
}

/** Whether the grants allow `action` (or `*`) on the repository. */
export function grants(access: TokenAccess[], repository: string, action: string): boolean {
  return access.some((entry) => entry.type === 'repository' && entry.name === repository && (entry.actions.includes(action) || entry.actions.includes('*')));
}

/**
 * libtrust's key ID, which distribution and docker_auth put in `kid`: the SHA-256 of the DER
 * SubjectPublicKeyInfo, its first 240 bits in base32, in twelve groups of four joined by ':'.
 */
export function libtrustKeyId(key: KeyObject): string {
  const digest = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest().subarray(0, 30);
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const byte of digest) bits += byte.toString(2).padStart(8, '0');
  let encoded = '';
  for (let i = 0; i < bits.length; i += 5) encoded += ALPHABET[parseInt(bits.slice(i, i + 5), 2)];
  return encoded.match(/.{4}/g)!.join(':');
}

function parseBundle(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((block) => new X509Certificate(block));
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function accessOf(claim: unknown): TokenAccess[] {
  if (!Array.isArray(claim)) return [];
  return claim.flatMap((entry) => {
    const { type, name, actions } = (entry ?? {}) as Record<string, unknown>;
    if (typeof type !== 'string' || typeof name !== 'string' || !Array.isArray(actions)) return [];
    return [{ type, name, actions: actions.filter((action): action is string => typeof action === 'string') }];
  });
}
