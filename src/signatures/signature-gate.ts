import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { signatureChecks } from '../metrics/metrics.ts';
import { attachmentTag, isAttachmentTag } from '../registry/attachment-tags.ts';
import { parseDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { manifestReferences } from '../registry/manifest-references.ts';
import type { Remote } from '../upstream/remotes.ts';
import { isAttachmentContent } from './attachment-content.ts';
import { payloadMismatch, signatureLayers, signingKey } from './cosign-signature.ts';
import type { SignatureRule } from './signature-rules.ts';

/** cosign's payloads are a few hundred bytes; anything this large is no signature payload. */
const MAX_PAYLOAD_BYTES = 256 * 1024;
/** How many signed payloads of one signature artifact are tried (cosign appends one per `sign`). */
const MAX_SIGNATURES = 32;

/** What the manifest store asks before it stores or serves a manifest: throws DENIED to refuse. */
export interface ManifestGate {
  /**
   * `content` reads the manifest's bytes (only called when a rule covers the repository);
   * `tag`: the tag the client asked for, when it asked by tag.
   */
  admit(remote: Remote, name: string, digest: string, content: () => Promise<Buffer>, tag?: string): Promise<void>;
}

/** A repository's signature artifact as the manifest store answers it. */
export type SignatureLookup = { found: true; digest: string; bytes: Buffer } | { found: false; reason: 'absent' | 'unavailable' };

/** What the status page shows of one registry's policy. */
export interface SignatureSummary {
  rules: { name: string; repositories: string[]; mode: string; keys: string[] }[];
  verified: number;
  refused: number;
  warned: number;
  lastRefusal: { repository: string; digest: string; reason: string; mode: string; at: number } | null;
}

type Verdict = { verified: true } | { verified: false; reason: string };

/**
 * The signature policy at the manifest store's door (proxy.signatures; see signature-rules.ts).
 * A manifest of a repository under a rule passes when a cosign signature at its `sha256-<hex>.sig`
 * verifies with one of the rule's keys and names its digest and repository; the platform
 * manifests of an index that passed pass with it; attachments pass (they are not images).
 * Otherwise `enforce` refuses (403 DENIED with the reason) and `warn` logs and lets it through.
 *
 * The signature artifact is read through the manifest store and its payloads through the blob
 * store, so both are cached: while upstream is down a digest verified earlier is verified
 * again from the store, and one never verified finds no signature and is refused.
 */
export class SignatureGate implements ManifestGate {
  private readonly lookup: (remote: Remote, name: string, tag: string) => Promise<SignatureLookup>;
  private readonly payload: (remote: Remote, name: string, digest: string, limit: number) => Promise<Buffer | undefined>;
  private readonly logger: Logger;
  /** `<repository key>@<digest>` → the signature artifact it verified with (a new one is checked again). */
  private readonly verified = new LRUCache<string, string>({ max: 50_000 });
  /** `<repository key>@<digest>` of platform manifests of an index that verified, and of attachments. */
  private readonly passed = new LRUCache<string, true>({ max: 50_000 });
  private readonly summaries = new Map<Remote, SignatureSummary>();

  constructor(options: {
    lookup: (remote: Remote, name: string, tag: string) => Promise<SignatureLookup>;
    payload: (remote: Remote, name: string, digest: string, limit: number) => Promise<Buffer | undefined>;
    logger: Logger;
  }) {
    this.lookup = options.lookup;
    this.payload = options.payload;
    this.logger = options.logger;
  }

  async admit(remote: Remote, name: string, digest: string, content: () => Promise<Buffer>, tag?: string): Promise<void> {
    const rule = remote.signatures.ruleFor(name);
    if (!rule || (tag !== undefined && isAttachmentTag(tag))) return;
    const key = `${remote.key(name)}@${digest}`;
    if (this.passed.has(key)) return;
    const bytes = await content();
    if (isAttachmentContent(bytes)) {
      this.passed.set(key, true);
      return;
    }
    const signature = await this.lookup(remote, name, attachmentTag(parseDigest(digest), 'signature'));
    if (signature.found && this.verified.get(key) === signature.digest) return;
    const verdict: Verdict = signature.found
      ? await this.verify(remote, name, digest, rule, signature.bytes)
      : { verified: false, reason: signature.reason === 'absent' ? 'no signature' : 'no signature at hand (upstream unavailable) and never verified' };
    const summary = this.summary(remote);
    if (verdict.verified) {
      this.verified.set(key, (signature as { digest: string }).digest);
      for (const child of manifestReferences(bytes).manifests) this.passed.set(`${remote.key(name)}@${child}`, true);
      summary.verified++;
      signatureChecks.labels(remote.namespace, 'verified').inc();
      return;
    }
    const repository = `${remote.namespace}/${name}`;
    summary.lastRefusal = { repository, digest, reason: verdict.reason, mode: rule.mode, at: Date.now() };
    if (rule.mode === 'warn') {
      summary.warned++;
      signatureChecks.labels(remote.namespace, 'warned').inc();
      this.logger.warn('signature policy (warn): serving a manifest enforce would refuse', { repository, digest, reason: verdict.reason, rule: rule.name });
      return;
    }
    summary.refused++;
    signatureChecks.labels(remote.namespace, 'refused').inc();
    this.logger.warn('signature policy refused a manifest', { repository, digest, reason: verdict.reason, rule: rule.name });
    throw new RegistryError('DENIED', `signature policy: ${verdict.reason}`, { detail: { repository, digest, reason: verdict.reason } });
  }

  /** The figures of one registry's policy (what the status page shows). */
  summary(remote: Remote): SignatureSummary {
    let summary = this.summaries.get(remote);
    if (!summary) {
      summary = {
        rules: remote.signatures.rules.map((rule) => ({ name: rule.name, repositories: rule.patterns.map((p) => p.source), mode: rule.mode, keys: rule.keys.map((k) => k.name) })),
        verified: 0,
        refused: 0,
        warned: 0,
        lastRefusal: null,
      };
      this.summaries.set(remote, summary);
    }
    return summary;
  }

  /**
   * Tries each signed payload: verified when one was made with a rule's key and names this
   * manifest of this repository. Otherwise the reason says how close it came: signed by
   * another key, or signed by a trusted key but for another manifest or repository.
   */
  private async verify(remote: Remote, name: string, digest: string, rule: SignatureRule, artifact: Buffer): Promise<Verdict> {
    const layers = signatureLayers(artifact).slice(0, MAX_SIGNATURES);
    if (layers.length === 0) return { verified: false, reason: 'no signature' };
    let otherIdentity: string | undefined;
    let unreadable = false;
    for (const layer of layers) {
      if (layer.size > MAX_PAYLOAD_BYTES) continue;
      let payload: Buffer | undefined;
      try {
        payload = await this.payload(remote, name, layer.payload.value, MAX_PAYLOAD_BYTES);
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        unreadable = true;
        continue;
      }
      if (!payload || !signingKey(payload, layer.signature, rule.keys)) continue;
      const mismatch = payloadMismatch(payload, digest, `${remote.namespace}/${name}`);
      if (!mismatch) return { verified: true };
      otherIdentity ??= mismatch;
    }
    if (otherIdentity) return { verified: false, reason: `other identity: signed by a trusted key for ${otherIdentity}` };
    if (unreadable) return { verified: false, reason: 'signature payload unavailable (upstream unavailable) and never verified' };
    return { verified: false, reason: 'wrong key: no signature made with a trusted key' };
  }
}
