import { request } from 'undici';
import { MANIFEST_ACCEPT, MediaType } from '../registry/media-types.ts';

/*
 * Warming: pulling images through a running mirror's own HTTP API, as a client would, so the
 * mirror fetches and stores them. Used by `pullmirror warm` and by the cron warm list
 * (proxy.warm). A blob the mirror already holds (HEAD says X-Pullmirror-Cache: hit) is not
 * downloaded again; a tag is always asked for, so a moved tag is refreshed.
 */

export interface ImageRef {
  /** Repository name as sent to the mirror (`library/alpine`, `team/app`). */
  name: string;
  /** Tag or digest. */
  reference: string;
  /** containerd's `ns` for a registry other than Docker Hub, when the reference named one. */
  ns?: string;
  /** The reference as given, for messages. */
  input: string;
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `alpine`, `alpine:3.20`, `docker.io/library/alpine@sha256:…`, `ghcr.io/o/r:v1` → its parts. */
export function parseImageRef(input: string): ImageRef {
  let rest = input.trim();
  let reference: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    reference ??= rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  let ns: string | undefined;
  const first = rest.split('/')[0];
  if (rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/i.test(first)) {
      throw new Error(`not an image reference: ${JSON.stringify(input)} (bad registry host)`);
    }
    rest = rest.slice(first.length + 1);
    if (DOCKER_HUB.has(first)) {
      if (!rest.includes('/')) rest = `library/${rest}`;
    } else {
      ns = first;
    }
  }
  if (!/^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/.test(rest)) {
    throw new Error(`not an image reference: ${JSON.stringify(input)}`);
  }
  reference ??= 'latest';
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(reference) && !/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/.test(reference)) {
    throw new Error(`not a tag or digest in ${JSON.stringify(input)}`);
  }
  return { name: rest, reference, ns, input };
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** `linux/arm64/v8` → { os, architecture, variant }. */
export function parsePlatform(value: string): Platform {
  const [os, architecture, variant, extra] = value.split('/');
  if (!os || !architecture || extra !== undefined) throw new Error(`not a platform: ${JSON.stringify(value)} (expected os/arch[/variant])`);
  return { os, architecture, variant };
}

function platformMatches(wanted: Platform[], actual: Partial<Platform> | undefined): boolean {
  return wanted.some(
    (w) => w.os === actual?.os && w.architecture === actual?.architecture && (w.variant === undefined || w.variant === actual?.variant),
  );
}

function platformName(p: Partial<Platform> | undefined): string {
  if (!p?.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

export interface ImageResult {
  ref: string;
  ok: boolean;
  error?: string;
  /** Platforms warmed (an image manifest without platform counts as one). */
  platforms: string[];
  manifests: number;
  /** The image's distinct blobs (configs and layers), shared ones included. */
  blobs: number;
  /** Of these, blobs an image before it in this run warmed already (not transferred again). */
  sharedBlobs: number;
  /** Blob bytes the mirror had to fetch for this image, and those it already held. */
  fetchedBytes: number;
  cachedBytes: number;
}

export interface WarmProgress {
  images: number;
  imagesDone: number;
  /** Blob bytes known so far (grows as manifests are read) and bytes done (fetched or found cached). */
  totalBytes: number;
  doneBytes: number;
  blobs: number;
  blobsDone: number;
  current?: string;
}

export interface WarmSummary {
  images: ImageResult[];
  failed: number;
  blobs: number;
  fetchedBytes: number;
  cachedBytes: number;
  ms: number;
}

export interface WarmOptions {
  /** The mirror's base URL, e.g. http://127.0.0.1:5000. */
  mirror: string;
  /** Only these platforms of an index; every one when absent. */
  platforms?: Platform[];
  /** Blob transfers at a time. */
  concurrency?: number;
  /** The mirror's own credentials (auth.htpasswd), sent as HTTP Basic. */
  credentials?: { username: string; password: string };
  onProgress?(progress: WarmProgress): void;
  onImage?(result: ImageResult): void;
}

interface Manifest {
  mediaType?: string;
  manifests?: { digest: string; mediaType?: string; platform?: Partial<Platform> }[];
  config?: { digest: string; size: number };
  layers?: { digest: string; size: number }[];
}

class WarmError extends Error {}

/** Warms every image in turn; one image failing does not stop the others. */
export async function warmImages(refs: string[], options: WarmOptions): Promise<WarmSummary> {
  const started = performance.now();
  const base = options.mirror.replace(/\/+$/, '');
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const headers: Record<string, string> = { 'user-agent': 'pullmirror-warm' };
  if (options.credentials) {
    headers.authorization = `Basic ${Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString('base64')}`;
  }
  const progress: WarmProgress = { images: refs.length, imagesDone: 0, totalBytes: 0, doneBytes: 0, blobs: 0, blobsDone: 0 };
  const report = () => options.onProgress?.({ ...progress });
  /**
   * Blobs warmed in this run, by digest: an image sharing layers with an earlier one does not
   * transfer them again, but still counts them as its own (and as already cached).
   */
  const warmed = new Map<string, { size: number; fetched: boolean }>();
  const results: ImageResult[] = [];

  for (const input of refs) {
    const result: ImageResult = { ref: input, ok: true, platforms: [], manifests: 0, blobs: 0, sharedBlobs: 0, fetchedBytes: 0, cachedBytes: 0 };
    progress.current = input;
    report();
    try {
      const ref = parseImageRef(input);
      const query = ref.ns ? `?ns=${encodeURIComponent(ref.ns)}` : '';
      const url = (kind: string, what: string) => `${base}/v2/${ref.name}/${kind}/${what}${query}`;
      const top = await getManifest(url('manifests', ref.reference), headers);
      result.manifests++;
      const images: { manifest: Manifest; platform: string }[] = [];
      if (Array.isArray(top.manifests)) {
        const chosen = top.manifests.filter((m) => !options.platforms || platformMatches(options.platforms, m.platform));
        if (chosen.length === 0) throw new WarmError(`no manifest for ${options.platforms!.map(platformName).join(', ')} in the index`);
        for (const entry of chosen) {
          images.push({ manifest: await getManifest(url('manifests', entry.digest), headers), platform: platformName(entry.platform) });
          result.manifests++;
        }
      } else {
        images.push({ manifest: top, platform: 'image' });
      }
      const blobs: { digest: string; size: number }[] = [];
      const own = new Set<string>();
      for (const { manifest, platform } of images) {
        result.platforms.push(platform);
        for (const blob of [manifest.config, ...(manifest.layers ?? [])]) {
          if (!blob || typeof blob.digest !== 'string' || own.has(blob.digest)) continue;
          own.add(blob.digest);
          const earlier = warmed.get(blob.digest);
          if (earlier) {
            result.blobs++;
            result.sharedBlobs++;
            result.cachedBytes += earlier.size;
            continue;
          }
          blobs.push({ digest: blob.digest, size: Number(blob.size) || 0 });
          progress.totalBytes += Number(blob.size) || 0;
          progress.blobs++;
        }
      }
      report();
      const errors: string[] = [];
      await runLimited(blobs, concurrency, async (blob) => {
        try {
          const fetched = await warmBlob(url('blobs', blob.digest), headers, (n) => {
            progress.doneBytes += n;
            report();
          }, blob.size);
          result.blobs++;
          warmed.set(blob.digest, { size: blob.size, fetched });
          if (fetched) result.fetchedBytes += blob.size;
          else result.cachedBytes += blob.size;
        } catch (error) {
          errors.push(`${blob.digest}: ${(error as Error).message}`);
        }
        progress.blobsDone++;
        report();
      });
      if (errors.length > 0) throw new WarmError(`${errors.length} blob(s) failed: ${errors[0]}`);
    } catch (error) {
      result.ok = false;
      result.error = (error as Error).message;
    }
    progress.imagesDone++;
    report();
    results.push(result);
    options.onImage?.(result);
  }
  return {
    images: results,
    failed: results.filter((r) => !r.ok).length,
    // Distinct blobs: a layer shared by several images is one blob, fetched (or found) once.
    blobs: warmed.size,
    fetchedBytes: [...warmed.values()].reduce((n, blob) => n + (blob.fetched ? blob.size : 0), 0),
    cachedBytes: [...warmed.values()].reduce((n, blob) => n + (blob.fetched ? 0 : blob.size), 0),
    ms: Math.round(performance.now() - started),
  };
}

async function getManifest(url: string, headers: Record<string, string>): Promise<Manifest> {
  const response = await request(url, { method: 'GET', headers: { ...headers, accept: MANIFEST_ACCEPT } });
  if (response.statusCode !== 200) throw new WarmError(await describeFailure(response.statusCode, response.body));
  const text = await response.body.text();
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch {
    throw new WarmError('the mirror sent a manifest that is not JSON');
  }
  if (manifest.mediaType === MediaType.dockerSchema1Signed || manifest.mediaType === MediaType.dockerSchema1) {
    throw new WarmError('schema 1 manifests are not supported for warming');
  }
  return manifest;
}

/**
 * Makes sure the mirror holds one blob: HEAD first (a hit needs nothing more), else GET and
 * read it to the end, which is when the mirror has verified and stored it. Answers whether
 * the blob had to be fetched. `onBytes` gets the bytes done as they happen.
 */
async function warmBlob(url: string, headers: Record<string, string>, onBytes: (n: number) => void, size: number): Promise<boolean> {
  const head = await request(url, { method: 'HEAD', headers });
  await head.body.dump();
  if (head.statusCode === 200 && head.headers['x-pullmirror-cache'] === 'hit') {
    onBytes(size);
    return false;
  }
  const response = await request(url, { method: 'GET', headers });
  if (response.statusCode !== 200) throw new WarmError(await describeFailure(response.statusCode, response.body));
  let received = 0;
  for await (const chunk of response.body) {
    received += (chunk as Buffer).length;
    onBytes((chunk as Buffer).length);
  }
  if (size > 0 && received !== size) throw new WarmError(`received ${received} of ${size} bytes`);
  return true;
}

async function describeFailure(status: number, body: { text(): Promise<string> }): Promise<string> {
  let detail = '';
  try {
    const parsed = JSON.parse(await body.text()) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) detail = `: ${first.code ?? ''} ${first.message ?? ''}`.trimEnd();
  } catch {
    // no OCI error body
  }
  return `mirror answered ${status}${detail}`;
}

async function runLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(workers);
}
