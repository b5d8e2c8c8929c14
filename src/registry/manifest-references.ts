import { fields, parseUntrustedJson } from '../util/untrusted-json.ts';
import { parseDigest } from './digest.ts';

/**
 * What one manifest references: child manifests (of an index or list), blobs (config, layers),
 * and the manifest it is about (OCI 1.1 `subject`: a signature, SBOM or attestation names the
 * image it attaches to).
 */
export interface ManifestReferences {
  manifests: string[];
  blobs: string[];
  subject?: string;
}

/**
 * The digests a manifest references, by its shape rather than its declared media type
 * (upstreams mislabel): an index or list has `manifests`, an image manifest `config` and
 * `layers`, schema 1 `fsLayers[].blobSum`, the short-lived OCI artifact manifest `blobs`.
 * What is not JSON, or not a digest this mirror knows, is left out. The one parser for both
 * uses: the blobs a repository may serve (links written with a manifest), and what keeps what
 * alive in an eviction pass (where an artifact lives and goes with its `subject`).
 */
export function manifestReferences(bytes: Uint8Array): ManifestReferences {
  const manifests = new Set<string>();
  const blobs = new Set<string>();
  const parsed = fields(parseUntrustedJson(Buffer.from(bytes).toString('utf8')));
  if (!parsed) return { manifests: [], blobs: [] };
  const add = (into: Set<string>, value: unknown): void => {
    if (typeof value !== 'string') return;
    try {
      into.add(parseDigest(value).value);
    } catch {
      // not a digest this mirror knows: left out
    }
  };
  const each = (list: unknown, into: Set<string>, field: string): void => {
    if (Array.isArray(list)) for (const entry of list) add(into, fields(entry)?.[field]);
  };
  each(parsed.manifests, manifests, 'digest');
  add(blobs, fields(parsed.config)?.digest);
  each(parsed.layers, blobs, 'digest');
  each(parsed.blobs, blobs, 'digest');
  each(parsed.fsLayers, blobs, 'blobSum');
  const subject = new Set<string>();
  add(subject, fields(parsed.subject)?.digest);
  const [about] = subject;
  return { manifests: [...manifests], blobs: [...blobs], ...(about ? { subject: about } : {}) };
}
