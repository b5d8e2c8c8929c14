import type { Digest, DigestAlgorithm } from './digest.ts';

/**
 * The tags that attach something to an image by its digest rather than name an image:
 * - the OCI 1.1 referrers tag schema, `<alg>-<hex>` (the fallback index of everything whose
 *   `subject` is that digest; the spec truncates `<hex>` to 64 characters), and
 * - cosign's tags, `sha256-<hex>.sig` (signatures), `.att` (attestations), `.sbom` (SBOMs).
 *
 * The one place that knows this grammar: the manifest store (an attachment a mirror never saw
 * is a 404 during an outage, not a 502), eviction (attachments live and die with their image),
 * the referrers API and the signature policy all ask here.
 */
export type AttachmentKind = 'referrers' | 'signature' | 'attestation' | 'sbom';

export interface AttachmentTag {
  kind: AttachmentKind;
  /** The subject's digest algorithm. */
  algorithm: DigestAlgorithm;
  /** The subject's hex, as the tag holds it (at most 64 characters: a sha512 is truncated). */
  hex: string;
}

const SUFFIX_KIND = { '': 'referrers', '.sig': 'signature', '.att': 'attestation', '.sbom': 'sbom' } as const satisfies Record<string, AttachmentKind>;
const KIND_SUFFIX: Record<AttachmentKind, string> = { referrers: '', signature: '.sig', attestation: '.att', sbom: '.sbom' };
const ATTACHMENT_TAG = /^(sha256|sha512)-([0-9a-f]{64})(\.sig|\.att|\.sbom)?$/;
/** The referrers tag schema's limit on the hex part (a tag holds at most 128 characters). */
const TAG_HEX_LENGTH = 64;

/** What an attachment tag attaches, or undefined for a tag that names an image. */
export function parseAttachmentTag(tag: string): AttachmentTag | undefined {
  const match = ATTACHMENT_TAG.exec(tag);
  if (!match) return undefined;
  const [, algorithm, hex, suffix = ''] = match;
  return { kind: SUFFIX_KIND[suffix as keyof typeof SUFFIX_KIND], algorithm: algorithm as DigestAlgorithm, hex };
}

export function isAttachmentTag(tag: string): boolean {
  return ATTACHMENT_TAG.test(tag);
}

/** The tag of one kind of attachment to `subject` (`sha256-<hex>.sig` for a signature). */
export function attachmentTag(subject: Digest, kind: AttachmentKind): string {
  return `${subject.algorithm}-${subject.hex.slice(0, TAG_HEX_LENGTH)}${KIND_SUFFIX[kind]}`;
}

/** Every attachment tag that may refer to `subject`, one per kind. */
export function attachmentTagsOf(subject: Digest): string[] {
  return (Object.keys(KIND_SUFFIX) as AttachmentKind[]).map((kind) => attachmentTag(subject, kind));
}

/** Whether an attachment tag refers to the manifest with digest `subject` (`algorithm:hex`). */
export function attachesTo(tag: AttachmentTag, subject: string): boolean {
  const colon = subject.indexOf(':');
  return subject.slice(0, colon) === tag.algorithm && subject.slice(colon + 1, colon + 1 + TAG_HEX_LENGTH) === tag.hex;
}
