import { MAX_MANIFEST_BYTES } from '../registry/blob-descriptor.ts';
import { parseDigest } from '../registry/digest.ts';
import { sniffManifestMediaType } from '../registry/media-types.ts';
import type { StorageDriver } from '../storage/driver/storage-driver.ts';
import type { StorePaths } from '../storage/paths.ts';
import { blobKey } from '../storage/repository-walk.ts';
import { arrayField, fields, parseUntrustedJson, stringField, type JsonFields } from '../util/untrusted-json.ts';

/** What a summary reads blobs through. */
export interface BlobReader {
  driver: StorageDriver;
  paths: StorePaths;
}

/** Where an image runs, as an index lists it or an image config says. */
export interface Platform {
  os?: string;
  architecture?: string;
  variant?: string;
}

export interface BlobEntry {
  digest: string;
  /** As the manifest declares it. */
  size: number;
  mediaType?: string;
  /** Whether the store holds it now (only asked in the detail view). */
  stored?: boolean;
}

/** One image manifest: its config and layers, and what they weigh. */
export interface ImageSummary {
  digest: string;
  mediaType: string;
  manifestSize: number;
  platform?: Platform;
  config?: BlobEntry;
  layers: BlobEntry[];
  /** manifest + config + layers. */
  size: number;
  /** False when the store does not hold this manifest (a platform never pulled through the mirror). */
  stored: boolean;
}

/** A manifest as the browser shows it: an image, or an index with one image per platform. */
export interface ManifestSummary extends ImageSummary {
  kind: 'index' | 'image' | 'unknown';
  /** An index's children, with the platforms it names. */
  platforms?: (ImageSummary & { platform: Platform })[];
}

/**
 * Reads a stored manifest (and an index's stored children) and sums what it weighs: the
 * manifest, its config and its layers as declared, per platform for an index. `detail` also
 * reads image configs for the platform of a lone image and checks which blobs are stored.
 * Undefined when the store does not hold the manifest's bytes.
 */
export async function summarizeManifest(store: BlobReader, digest: string, options: { detail?: boolean } = {}): Promise<ManifestSummary | undefined> {
  const bytes = await readSmallBlob(store, digest, MAX_MANIFEST_BYTES);
  if (!bytes) return undefined;
  const parsed = parseJson(bytes);
  const mediaType = stringField(parsed, 'mediaType') ?? sniffManifestMediaType(bytes);
  const children = arrayField(parsed, 'manifests');
  if (children) {
    const platforms: (ImageSummary & { platform: Platform })[] = [];
    for (const child of children.slice(0, 64).map(fields)) {
      const childDigest = stringField(child, 'digest');
      if (childDigest === undefined || !safeDigest(childDigest)) continue;
      const platform = platformOf(child?.platform);
      const image = await summarizeImage(store, childDigest, { ...options, declaredSize: Number(child?.size) || 0, declaredType: child?.mediaType });
      platforms.push({ ...image, platform: image.platform ?? platform });
    }
    const size = bytes.length + platforms.reduce((sum, p) => sum + p.size, 0);
    return { kind: 'index', digest, mediaType, manifestSize: bytes.length, layers: [], size, stored: true, platforms };
  }
  const image = imageOf(digest, mediaType, bytes, parsed);
  if (options.detail) await fillDetail(store, image);
  return { ...image, kind: parsed?.config || arrayField(parsed, 'layers') || arrayField(parsed, 'fsLayers') ? 'image' : 'unknown' };
}

async function summarizeImage(
  store: BlobReader,
  digest: string,
  options: { detail?: boolean; declaredSize: number; declaredType?: unknown },
): Promise<ImageSummary> {
  const bytes = await readSmallBlob(store, digest, MAX_MANIFEST_BYTES);
  if (!bytes) {
    const mediaType = typeof options.declaredType === 'string' ? options.declaredType : 'application/octet-stream';
    return { digest, mediaType, manifestSize: options.declaredSize, layers: [], size: options.declaredSize, stored: false };
  }
  const parsed = parseJson(bytes);
  const image = imageOf(digest, stringField(parsed, 'mediaType') ?? sniffManifestMediaType(bytes), bytes, parsed);
  if (options.detail) await fillDetail(store, image);
  return image;
}

function imageOf(digest: string, mediaType: string, bytes: Buffer, parsed: JsonFields | undefined): ImageSummary {
  const entry = (value: unknown): BlobEntry | undefined => {
    const descriptor = fields(value);
    const entryDigest = stringField(descriptor, 'digest');
    if (entryDigest === undefined || !safeDigest(entryDigest)) return undefined;
    const entryType = stringField(descriptor, 'mediaType');
    return { digest: entryDigest, size: Number(descriptor?.size) || 0, ...(entryType !== undefined ? { mediaType: entryType } : {}) };
  };
  const config = entry(parsed?.config);
  // Schema 1 manifests list their layers as fsLayers[].blobSum.
  const declared = arrayField(parsed, 'layers') ?? arrayField(parsed, 'fsLayers')?.map((layer) => ({ digest: stringField(fields(layer), 'blobSum') })) ?? [];
  const layers = declared.map(entry).filter((layer): layer is BlobEntry => layer !== undefined);
  const size = bytes.length + (config?.size ?? 0) + layers.reduce((sum, layer) => sum + layer.size, 0);
  return { digest, mediaType, manifestSize: bytes.length, ...(config ? { config } : {}), layers, size, stored: true };
}

/** The detail view: the platform from the image config, and which blobs the store holds. */
async function fillDetail(store: BlobReader, image: ImageSummary): Promise<void> {
  if (image.config) {
    const config = await readSmallBlob(store, image.config.digest, 1024 * 1024);
    image.config.stored = config !== undefined;
    if (config) image.platform ??= platformOf(parseJson(config));
  }
  await Promise.all(image.layers.map(async (layer) => (layer.stored = await isStored(store, layer.digest))));
}

function platformOf(value: unknown): Platform {
  const platform = fields(value);
  const pick = (field: string) => {
    const text = stringField(platform, field);
    return text ? { [field]: text.slice(0, 64) } : {};
  };
  return { ...pick('os'), ...pick('architecture'), ...pick('variant') };
}

/** A digest the store can name a file by (parseDigest's rules), without throwing. */
function safeDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

function parseJson(bytes: Buffer): JsonFields | undefined {
  return fields(parseUntrustedJson(bytes.toString('utf8')));
}

async function isStored(store: BlobReader, digest: string): Promise<boolean> {
  const key = blobKey(store.paths, digest);
  return key !== undefined && (await store.driver.stat(key).catch(() => undefined)) !== undefined;
}

/** A blob's bytes when stored and at most `max` bytes (a manifest or config); undefined otherwise. */
async function readSmallBlob(store: BlobReader, digest: string, max: number): Promise<Buffer | undefined> {
  const key = blobKey(store.paths, digest);
  if (key === undefined) return undefined;
  // Larger than `max` ('too-large'), or unreadable: nothing to summarize.
  return store.driver.getContent(key, max).catch(() => undefined);
}
