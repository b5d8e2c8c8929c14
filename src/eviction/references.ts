import { isDigest } from '../registry/digest.ts';

/** What one manifest keeps alive: child manifests (of an index or list) and blobs (config, layers). */
export interface ManifestReferences {
  manifests: string[];
  blobs: string[];
}

/**
 * The digests a stored manifest references, by its shape rather than its declared media type
 * (upstreams mislabel): an index or list has `manifests`, an image manifest `config` and
 * `layers`, schema 1 `fsLayers[].blobSum`, the short-lived OCI artifact manifest `blobs`.
 * Unparseable content references nothing: it keeps only itself.
 */
export function manifestReferences(bytes: Uint8Array): ManifestReferences {
  const found: ManifestReferences = { manifests: [], blobs: [] };
  let parsed: any;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return found;
  }
  if (parsed === null || typeof parsed !== 'object') return found;
  const add = (list: string[], value: unknown): void => {
    if (typeof value === 'string' && isDigest(value)) list.push(value);
  };
  if (Array.isArray(parsed.manifests)) for (const child of parsed.manifests) add(found.manifests, child?.digest);
  add(found.blobs, parsed.config?.digest);
  if (Array.isArray(parsed.layers)) for (const layer of parsed.layers) add(found.blobs, layer?.digest);
  if (Array.isArray(parsed.blobs)) for (const blob of parsed.blobs) add(found.blobs, blob?.digest);
  if (Array.isArray(parsed.fsLayers)) for (const layer of parsed.fsLayers) add(found.blobs, layer?.blobSum);
  return found;
}
