import { verify } from 'node:crypto';
import { parseDigest, type Digest } from '../registry/digest.ts';
import type { TrustedKey } from './signature-rules.ts';

/*
 * cosign's signature format, as `cosign sign --key` writes it: the signature artifact at tag
 * `sha256-<hex>.sig` is an image manifest whose layers are simple-signing payloads
 * (`application/vnd.dev.cosign.simplesigning.v1+json`), each carrying its signature, base64,
 * in the `dev.cosignproject.cosign/signature` annotation. The payload names what was signed:
 *
 *   {"critical":{"identity":{"docker-reference":"index.docker.io/library/alpine"},
 *                "image":{"docker-manifest-digest":"sha256:…"},
 *                "type":"cosign container image signature"},"optional":null}
 *
 * The signature is over the payload bytes exactly as stored: ECDSA and RSA (PKCS#1 v1.5) over
 * their SHA-256, Ed25519 over the bytes themselves — what `openssl dgst -sha256 -sign` and
 * `openssl pkeyutl -sign -rawin` make.
 */

export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';

/** One signed payload of a signature artifact: the payload blob and the signature over it. */
export interface SignatureLayer {
  payload: Digest;
  size: number;
  signature: Buffer;
}

/** The signed layers of a signature manifest; what is not JSON or carries no signature is left out. */
export function signatureLayers(manifest: Uint8Array): SignatureLayer[] {
  let parsed: { layers?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(manifest).toString('utf8')) as typeof parsed;
  } catch {
    return [];
  }
  if (!parsed || !Array.isArray(parsed.layers)) return [];
  const out: SignatureLayer[] = [];
  for (const layer of parsed.layers as { digest?: unknown; size?: unknown; annotations?: Record<string, unknown> }[]) {
    const signature = layer?.annotations?.[SIGNATURE_ANNOTATION];
    if (typeof signature !== 'string' || typeof layer.digest !== 'string' || typeof layer.size !== 'number') continue;
    try {
      out.push({ payload: parseDigest(layer.digest), size: layer.size, signature: Buffer.from(signature, 'base64') });
    } catch {
      // a digest this mirror does not know: not a signature it can check
    }
  }
  return out;
}

/** The key among `keys` that made `signature` over `payload`, if any. */
export function signingKey(payload: Buffer, signature: Buffer, keys: TrustedKey[]): TrustedKey | undefined {
  return keys.find(({ key }) => {
    try {
      if (key.asymmetricKeyType === 'ed25519') return verify(null, payload, key, signature);
      if (verify('sha256', payload, key, signature)) return true;
      // cosign signs with SHA-256 whatever the curve; sigstore's defaults use SHA-384 with P-384.
      return key.asymmetricKeyDetails?.namedCurve === 'secp384r1' && verify('sha384', payload, key, signature);
    } catch {
      return false; // a signature of the wrong shape for this key type
    }
  });
}

/**
 * Whether a payload names the manifest `digest` of `repository` (`host/name`): undefined when
 * it does, else what it names instead. Docker Hub's hosts are one registry (cosign writes
 * `index.docker.io/…`); a tag or digest after the repository is ignored, as cosign ignores it.
 */
export function payloadMismatch(payload: Buffer, digest: string, repository: string): string | undefined {
  let claims: { critical?: { identity?: { 'docker-reference'?: unknown }; image?: { 'docker-manifest-digest'?: unknown }; type?: unknown } };
  try {
    claims = JSON.parse(payload.toString('utf8')) as typeof claims;
  } catch {
    return 'a payload that is not JSON';
  }
  const critical = claims?.critical;
  if (critical?.type !== 'cosign container image signature') return 'a payload that is not a cosign image signature';
  const signedDigest = critical.image?.['docker-manifest-digest'];
  if (signedDigest !== digest) return `manifest ${String(signedDigest).slice(0, 80)}`;
  const reference = critical.identity?.['docker-reference'];
  if (typeof reference !== 'string' || canonicalRepository(reference) !== canonicalRepository(repository)) return `repository ${String(reference).slice(0, 200)}`;
  return undefined;
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `index.docker.io/library/alpine:3` → `docker.io/library/alpine`. */
function canonicalRepository(reference: string): string {
  const withoutDigest = reference.split('@')[0];
  const slash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  const repository = colon > slash ? withoutDigest.slice(0, colon) : withoutDigest;
  const first = repository.indexOf('/');
  const host = repository.slice(0, first).toLowerCase();
  return `${DOCKER_HUB.has(host) ? 'docker.io' : host}${repository.slice(first)}`;
}
