/** Manifest media types a mirror must pass through byte for byte. */
export const MediaType = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
} as const;

/**
 * What the mirror asks upstream for: every manifest kind, so that the stored copy is the
 * upstream's own and any client can be served from it.
 */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
  `${MediaType.dockerSchema1Signed};q=0.5`,
  `${MediaType.dockerSchema1};q=0.5`,
].join(', ');

/**
 * The media type of a manifest whose upstream sent none usable: the `mediaType` field, else
 * the shape (an index has `manifests`, an image manifest has `config`).
 */
export function sniffManifestMediaType(bytes: Uint8Array): string {
  try {
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
    if (typeof parsed.mediaType === 'string') return parsed.mediaType;
    if (Array.isArray(parsed.manifests)) return MediaType.ociIndex;
    if (parsed.config) return MediaType.ociManifest;
    if (parsed.schemaVersion === 1) return MediaType.dockerSchema1Signed;
  } catch {
    // not JSON: fall through to the generic type
  }
  return 'application/octet-stream';
}
