/** What the mirror knows of a stored blob without reading it. */
export interface BlobDescriptor {
  digest: string;
  size: number;
  mediaType?: string;
}

/** distribution refuses manifests above 4 MiB; so do we, so no upstream can make us buffer more. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
