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

/** `unsigned`: the manifest has no signature artifact of its own (it may pass with its index). */
type Verdict = { verified: true } | { verified: false; reason: string; unsigned?: boolean };

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
  private readonly parents: (remote: Remote, name: string, child: string) => Promise<{ digest: string; bytes: Buffer }[]>;
  private readonly logger: Logger;
  /** `<repository key>@<digest>` → the signature artifact it verified with (a new one is checked again). */
  private readonly verified = new LRUCache<string, string>({ max: 50_000 });
  /** `<repository key>@<digest>` of platform manifests of an index that verified, and of attachments. */
  private readonly passed = new LRUCache<string, true>({ max: 50_000 });
  private readonly summaries = new Map<Remote, SignatureSummary>();

  constructor(options: {
    lookup: (remote: Remote, name: string, tag: string) => Promise<SignatureLookup>;
    payload: (remote: Remote, name: string, digest: string, limit: number) => Promise<Buffer | undefined>;
    /**
     * The stored indexes of a repository that list a manifest: a platform manifest asked of an
     * instance that did not verify its index (another one of a fleet, or before a restart)
     * passes through them.
     */
    parents: (remote: Remote, name: string, child: string) => Promise<{ digest: string; bytes: Buffer }[]>;
    logger: Logger;
  }) {
    this.lookup = options.lookup;
    this.payload = options.payload;
    this.parents = options.parents;
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
    const verdict = await this.check(remote, name, digest, rule, bytes);
    if (verdict.verified || (verdict.unsigned && (await this.passesWithAnIndex(remote, name, digest, rule)))) return;
    const summary = this.summary(remote);
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

  /**
   * Whether the manifest's signature verifies (a verdict for this signature artifact is
   * remembered); a verified index passes its platform manifests with it.
   */
  private async check(remote: Remote, name: string, digest: string, rule: SignatureRule, bytes: Buffer): Promise<Verdict> {
    const key = `${remote.key(name)}@${digest}`;
    const signature = await this.lookup(remote, name, attachmentTag(parseDigest(digest), 'signature'));
    if (!signature.found) {
      return { verified: false, unsigned: true, reason: signature.reason === 'absent' ? 'no signature' : 'no signature at hand (upstream unavailable) and never verified' };
    }
    if (this.verified.get(key) === signature.digest) return { verified: true };
    const verdict = await this.verify(remote, name, digest, rule, signature.bytes);
    if (!verdict.verified) return verdict;
    this.verified.set(key, signature.digest);
    for (const child of manifestReferences(bytes).manifests) this.passed.set(`${remote.key(name)}@${child}`, true);
    this.summary(remote).verified++;
    signatureChecks.labels(remote.namespace, 'verified').inc();
    return verdict;
  }

  /** A manifest without a signature of its own passes when a stored index listing it verifies. */
  private async passesWithAnIndex(remote: Remote, name: string, digest: string, rule: SignatureRule): Promise<boolean> {
    for (const parent of await this.parents(remote, name, digest)) {
      if ((await this.check(remote, name, parent.digest, rule, parent.bytes)).verified) return true;
    }
    return false;
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
