import { parseDigest } from './digest.ts';
import { MediaType } from './media-types.ts';

/**
 * The OCI 1.1 referrers list ("Listing Referrers"): an image index whose `manifests` are the
 * descriptors of every manifest whose `subject` is a digest, each with its `artifactType`
 * and annotations. The same shape is what the referrers tag schema (`<alg>-<hex>`) holds, so
 * one parser reads an upstream's API answer and a tag-schema index alike.
 */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * The descriptors of an index's `manifests`; undefined when the bytes are no index. Entries
 * that are not descriptors (no media type, a digest this mirror does not know, no size) are
 * left out: they would only mislead a client.
 */
export function parseReferrers(bytes: Uint8Array): ReferrerDescriptor[] | undefined {
  let parsed: { manifests?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof parsed;
  } catch {
    return undefined;
  }
  if (!parsed || !Array.isArray(parsed.manifests)) return undefined;
  const out: ReferrerDescriptor[] = [];
  for (const entry of parsed.manifests as Record<string, unknown>[]) {
    if (!entry || typeof entry.mediaType !== 'string' || typeof entry.digest !== 'string' || !Number.isSafeInteger(entry.size)) continue;
    try {
      parseDigest(entry.digest);
    } catch {
      continue;
    }
    const descriptor: ReferrerDescriptor = { mediaType: entry.mediaType, digest: entry.digest, size: entry.size as number };
    if (typeof entry.artifactType === 'string') descriptor.artifactType = entry.artifactType;
    if (entry.annotations && typeof entry.annotations === 'object' && !Array.isArray(entry.annotations)) {
      descriptor.annotations = Object.fromEntries(Object.entries(entry.annotations).filter(([, value]) => typeof value === 'string'));
    }
    out.push(descriptor);
  }
  return out;
}

/** The index a referrers answer is, for a list of descriptors (one page of them). */
export function referrersIndex(descriptors: ReferrerDescriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: descriptors }));
}
