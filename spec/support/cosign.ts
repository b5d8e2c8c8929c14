/**
 * Cosign-format signatures made by tools nobody here wrote: keys and signatures by `openssl`,
 * the signature manifest pushed to a registry by `skopeo`.
 *
 * Why: Debian's skopeo and podman have sigstore signing patched out and cosign is not
 * packaged, so a fixture signs as cosign does with a key (`cosign sign --key`): an ECDSA (or
 * RSA, Ed25519) signature over the simple-signing payload JSON, carried by an OCI image
 * manifest tagged `sha256-<hex>.sig` whose one layer is the payload
 * (`application/vnd.dev.cosign.simplesigning.v1+json`) with the base64 signature in the
 * `dev.cosignproject.cosign/signature` annotation. What a client saves of it (skopeo's
 * `signature-1` in a `dir:` copy) is verified with `openssl` again, never with our own code.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { attachmentTag } from '../../src/registry/attachment-tags.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { MT, sha256Digest } from './images.ts';
import { skopeoCopy } from './skopeo.ts';
import { tempDir } from './processes.ts';

const run = promisify(execFile);

export const COSIGN = {
  payloadMediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
  signatureAnnotation: 'dev.cosignproject.cosign/signature',
  payloadType: 'cosign container image signature',
} as const;

/** What containers/image writes before a sigstore signature in `signature-N` (`\0sigstore-json\n`, 15 bytes). */
export const SIGSTORE_BLOB_PREFIX = Buffer.from('\0sigstore-json\n', 'latin1');

export type KeyKind = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa' | 'ed25519';

export interface SigningKey {
  kind: KeyKind;
  /** PEM private key (PKCS#8), as openssl wrote it. */
  privateKeyPath: string;
  /** PEM public key (SubjectPublicKeyInfo): what a verifier, and the mirror's policy, is given. */
  publicKeyPath: string;
  publicKeyPem: string;
}

const GENPKEY: Record<KeyKind, string[]> = {
  'ecdsa-p256': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  'ecdsa-p384': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  rsa: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  ed25519: ['-algorithm', 'ED25519'],
};

/** A new key pair in `dir` (`<name>.key`, `<name>.pub`), made by `openssl genpkey`. */
export async function makeSigningKey(dir: string, name = 'cosign', kind: KeyKind = 'ecdsa-p256'): Promise<SigningKey> {
  mkdirSync(dir, { recursive: true });
  const privateKeyPath = path.join(dir, `${name}.key`);
  const publicKeyPath = path.join(dir, `${name}.pub`);
  await run('openssl', ['genpkey', ...GENPKEY[kind], '-out', privateKeyPath]);
  await run('openssl', ['pkey', '-in', privateKeyPath, '-pubout', '-out', publicKeyPath]);
  return { kind, privateKeyPath, publicKeyPath, publicKeyPem: readFileSync(publicKeyPath, 'utf8') };
}

/**
 * cosign's simple-signing payload for a manifest: `reference` is the image's repository as the
 * signer named it (`index.docker.io/library/alpine`), `digest` the manifest's.
 */
export function simpleSigningPayload(reference: string, digest: string, optional: Record<string, string> | null = null): Buffer {
  return Buffer.from(
    JSON.stringify({ critical: { identity: { 'docker-reference': reference }, image: { 'docker-manifest-digest': digest }, type: COSIGN.payloadType }, optional }),
  );
}

/** Signs `payload` as cosign does with a key: SHA-256 over the bytes (Ed25519: the bytes themselves). DER for ECDSA. */
export async function signPayload(key: SigningKey, payload: Buffer): Promise<Buffer> {
  const own = tempDir('pullmirror-sign');
  try {
    const payloadPath = path.join(own.path, 'payload');
    const signaturePath = path.join(own.path, 'signature');
    writeFileSync(payloadPath, payload);
    const args =
      key.kind === 'ed25519'
        ? ['pkeyutl', '-sign', '-rawin', '-inkey', key.privateKeyPath, '-in', payloadPath, '-out', signaturePath]
        : ['dgst', '-sha256', '-sign', key.privateKeyPath, '-out', signaturePath, payloadPath];
    await run('openssl', args);
    return readFileSync(signaturePath);
  } finally {
    await own.cleanup();
  }
}

/** Whether `openssl` verifies `signature` over `payload` with a PEM public key (`openssl dgst -sha256 -verify`). */
export async function opensslVerifies(publicKeyPath: string, payload: Buffer, signature: Buffer, kind: KeyKind = 'ecdsa-p256'): Promise<boolean> {
  const own = tempDir('pullmirror-verify');
  try {
    const payloadPath = path.join(own.path, 'payload');
    const signaturePath = path.join(own.path, 'signature');
    writeFileSync(payloadPath, payload);
    writeFileSync(signaturePath, signature);
    const args =
      kind === 'ed25519'
        ? ['pkeyutl', '-verify', '-rawin', '-pubin', '-inkey', publicKeyPath, '-in', payloadPath, '-sigfile', signaturePath]
        : ['dgst', '-sha256', '-verify', publicKeyPath, '-signature', signaturePath, payloadPath];
    await run('openssl', args);
    return true;
  } catch {
    return false;
  }
}

export interface CosignSignature {
  payload: Buffer;
  /** The raw signature (DER for ECDSA); base64 in the annotation. */
  signature: Buffer;
}

export interface SignatureManifest {
  /** `sha256-<hex>.sig` of the subject. */
  tag: string;
  digest: string;
  bytes: Buffer;
  config: Buffer;
}

/** cosign's signature image for `signatures` (one layer each), as `cosign sign` pushes it. */
export function signatureManifest(subject: string, signatures: CosignSignature[]): SignatureManifest {
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: signatures.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: signatures.map((s) => sha256Digest(s.payload)) },
      config: {},
    }),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, size: config.length, digest: sha256Digest(config) },
    layers: signatures.map((s) => ({
      mediaType: COSIGN.payloadMediaType,
      size: s.payload.length,
      digest: sha256Digest(s.payload),
      annotations: { [COSIGN.signatureAnnotation]: s.signature.toString('base64') },
    })),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { tag: attachmentTag(parseDigest(subject), 'signature'), digest: sha256Digest(bytes), bytes, config };
}

export interface PushSignatureOptions {
  /** The registry as `host:port` (skopeo's docker:// reference, plain HTTP). */
  registry: string;
  /** `user:password` for the push. */
  creds: string;
  name: string;
  /** The signed manifest's digest. */
  subject: string;
  signatures: CosignSignature[];
}

/**
 * Pushes the signature manifest of `subject` with skopeo (`dir:` → `docker://…:sha256-<hex>.sig`,
 * digests preserved, so the registry holds exactly the bytes built here).
 */
export async function pushSignature(options: PushSignatureOptions): Promise<SignatureManifest> {
  const manifest = signatureManifest(options.subject, options.signatures);
  const own = tempDir('pullmirror-cosign');
  try {
    const dir = path.join(own.path, 'image');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'version'), 'Directory Transport Version: 1.1\n');
    writeFileSync(path.join(dir, 'manifest.json'), manifest.bytes);
    for (const blob of [manifest.config, ...options.signatures.map((s) => s.payload)]) writeFileSync(path.join(dir, sha256Digest(blob).slice('sha256:'.length)), blob);
    await skopeoCopy(`dir:${dir}`, `docker://${options.registry}/${options.name}:${manifest.tag}`, { destCreds: options.creds, extraArgs: ['--preserve-digests'] });
  } finally {
    await own.cleanup();
  }
  return manifest;
}

/** Signs `subject` with `key` (identity `reference`) and pushes the signature: the whole of `cosign sign --key`. */
export async function signImage(options: Omit<PushSignatureOptions, 'signatures'> & { key: SigningKey; reference: string }): Promise<SignatureManifest & CosignSignature> {
  const payload = simpleSigningPayload(options.reference, options.subject);
  const signature = await signPayload(options.key, payload);
  const pushed = await pushSignature({ ...options, signatures: [{ payload, signature }] });
  return { ...pushed, payload, signature };
}

export interface SavedSignature {
  mimeType: string;
  payload: Buffer;
  annotations: Record<string, string>;
  /** The annotation's signature, decoded. */
  signature: Buffer;
}

/**
 * Reads a sigstore signature as containers/image saves it (`signature-N` of a `dir:` copy): the
 * 15-byte `\0sigstore-json\n` prefix, then `{mimeType, payload (base64), annotations}`.
 */
export function readSavedSignature(file: string): SavedSignature {
  return readSignatureBlob(readFileSync(file), file);
}

/** The same from the bytes (what podman keeps in its image store, say); `source` names them in errors. */
export function readSignatureBlob(blob: Buffer, source = 'signature'): SavedSignature {
  if (!blob.subarray(0, SIGSTORE_BLOB_PREFIX.length).equals(SIGSTORE_BLOB_PREFIX)) throw new Error(`${source}: not a sigstore signature (starts ${JSON.stringify(blob.subarray(0, 16).toString('latin1'))})`);
  const json = JSON.parse(blob.subarray(SIGSTORE_BLOB_PREFIX.length).toString('utf8')) as { mimeType: string; payload: string; annotations: Record<string, string> };
  return {
    mimeType: json.mimeType,
    payload: Buffer.from(json.payload, 'base64'),
    annotations: json.annotations,
    signature: Buffer.from(json.annotations[COSIGN.signatureAnnotation] ?? '', 'base64'),
  };
}

/** registries.d content that makes containers/image read and write sigstore attachments for every registry. */
export const SIGSTORE_ATTACHMENTS_EVERYWHERE = 'default-docker:\n  use-sigstore-attachments: true\n';
