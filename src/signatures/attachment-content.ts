/**
 * Whether manifest bytes describe something attached to an image (a signature, attestation,
 * SBOM, a referrers index) rather than an image a runtime could run. The signature policy
 * exempts attachments: fetched by digest (as `oras discover` and the referrers API lead
 * clients to) they have no tag to tell them by.
 *
 * Judged by what a runtime would refuse, so that no runnable image can pass for an attachment:
 * an image manifest is an attachment when its config is not an image config or none of its
 * layers is an image layer (cosign's `.sig` has an image config but simple-signing layers);
 * an index when every entry declares an `artifactType` (the referrers tag schema's index) or
 * it has none. `artifactType` on an image manifest proves nothing: anyone can set it on a
 * runnable image.
 */
export function isAttachmentContent(bytes: Uint8Array): boolean {
  let parsed: { manifests?: unknown; config?: { mediaType?: unknown }; layers?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof parsed;
  } catch {
    return false;
  }
  if (!parsed || typeof parsed !== 'object') return false;
  if (Array.isArray(parsed.manifests)) return parsed.manifests.every((entry) => typeof (entry as { artifactType?: unknown })?.artifactType === 'string');
  if (!parsed.config || !Array.isArray(parsed.layers)) return false;
  if (!IMAGE_CONFIGS.has(String(parsed.config.mediaType))) return true;
  return !parsed.layers.some((layer) => IMAGE_LAYER.test(String((layer as { mediaType?: unknown })?.mediaType)));
}

const IMAGE_CONFIGS = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);
const IMAGE_LAYER = /^application\/vnd\.(oci\.image\.layer\.|docker\.image\.rootfs\.)/;
