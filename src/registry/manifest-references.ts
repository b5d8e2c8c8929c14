import { parseDigest } from './digest.ts';

/**
 * The blobs an image manifest references: its config and layers (OCI and Docker schema 2),
 * `fsLayers[].blobSum` (schema 1), and an OCI artifact's `blobs`. An index references
 * manifests, not blobs, so it yields nothing; its children are linked when they are fetched.
 * What is not JSON or not a digest is left out: this only widens what a repository may serve.
 */
export function referencedBlobs(bytes: Uint8Array): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return [];
  }
  if (parsed === null || typeof parsed !== 'object') return [];
  const manifest = parsed as { config?: { digest?: unknown }; layers?: unknown; blobs?: unknown; fsLayers?: unknown };
  const found = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value !== 'string') return;
    try {
      found.add(parseDigest(value).value);
    } catch {
      // not a digest this mirror knows: left out
    }
  };
  add(manifest.config?.digest);
  for (const list of [manifest.layers, manifest.blobs]) {
    if (Array.isArray(list)) for (const entry of list) add((entry as { digest?: unknown } | null)?.digest);
  }
  if (Array.isArray(manifest.fsLayers)) for (const entry of manifest.fsLayers) add((entry as { blobSum?: unknown } | null)?.blobSum);
  return [...found];
}
