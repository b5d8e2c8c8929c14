/**
 * Fixture images made from bytes we generate, pushed to the upstream through
 * the plain registry HTTP API.
 *
 * Why: no internet, so no real Docker Hub images. Layers are REAL gzipped tar
 * archives (a dockerd may extract them later) built by hand (ustar), contents
 * are seeded pseudo-random bytes so that images can deliberately share or not
 * share layers, and the push goes through the real Bearer-token flow so the
 * harness itself exercises the token server.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';

// ---------------------------------------------------------------------------
// Media types

export const MT = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Reads a fetch response's body to the end, hashing as it streams (no whole body in memory). */
export async function sha256OfBody(response: Response): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of response.body!) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

// ---------------------------------------------------------------------------
// Deterministic pseudo-random bytes

const CHUNK = 1 << 20;
const ZEROS = Buffer.alloc(CHUNK);

/** A seeded keystream (AES-256-CTR keyed by sha256(label)): same label → same bytes. Fast enough for hundreds of MiB. */
function keystream(label: string): (n: number) => Buffer {
  const key = createHash('sha256').update(`pullmirror-fixture:${label}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(n <= CHUNK ? ZEROS.subarray(0, n) : Buffer.alloc(n));
}

/** `size` pseudo-random bytes determined by `label`. */
export function seededBytes(label: string, size: number): Buffer {
  return keystream(label)(size);
}

/** The same bytes as `seededBytes(label, size)`, as chunks of at most 1 MiB (constant memory). */
export function* seededChunks(label: string, size: number): Generator<Buffer> {
  const next = keystream(label);
  for (let left = size; left > 0; left -= CHUNK) yield next(Math.min(CHUNK, left));
}

// ---------------------------------------------------------------------------
// tar + gzip layers

export interface TarFile {
  name: string;
  content: Buffer;
  mode?: number;
}

function octal(value: number, width: number): string {
  // width-1 octal digits, then NUL
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One 512-byte ustar header for a regular file. */
function tarHeader(name: string, size: number, mode: number): Buffer {
  const h = Buffer.alloc(512);
  let prefix = '';
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    // ustar splits long paths at a '/' into prefix (155) + name (100).
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new Error(`tar: path too long: ${name}`);
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  h.write(base, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime: 0 keeps digests reproducible
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  h.write('0', 156, 'ascii'); // typeflag: regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii'); // uname
  h.write('root', 297, 'ascii'); // gname
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** An uncompressed tar archive holding `files` (regular files only; add "dir/file" names freely). */
export function makeTar(files: TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const name = f.name.replace(/^\/+/, '');
    parts.push(tarHeader(name, f.content.length, f.mode ?? 0o644), f.content);
    const pad = (512 - (f.content.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024)); // end-of-archive: two zero blocks
  return Buffer.concat(parts);
}

export interface Layer {
  /** gzip-compressed tar (what the registry stores). */
  bytes: Buffer;
  /** sha256 of `bytes` (the blob digest). */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar (config rootfs.diff_ids). */
  diffId: string;
}

export function makeLayer(opts: { files: TarFile[] }): Layer {
  const tar = makeTar(opts.files);
  // zlib's gzip header has mtime 0, so the same files always give the same digest.
  const bytes = gzipSync(tar);
  return { bytes, digest: sha256Digest(bytes), size: bytes.length, diffId: sha256Digest(tar) };
}

/** A layer with one file of `size` seeded random bytes: same label+size → same layer (shared), else distinct. */
export function randomLayer(label: string, size = 4096): Layer {
  const safe = label.replace(/[^A-Za-z0-9._-]/g, '_');
  return makeLayer({ files: [{ name: `data/${safe}.bin`, content: seededBytes(label, size) }] });
}

// ---------------------------------------------------------------------------
// Registry HTTP client with the Bearer challenge

export type RegistryRef = string | { url: string };
/** Basic credentials for the token realm; undefined = anonymous. */
export type RegistryAuth = { username: string; password: string } | undefined;

const tokenCache = new Map<string, string>();

function tokenCacheKey(reg: RegistryRef, auth: RegistryAuth, name: string): string {
  return `${baseUrl(reg)} ${name} ${auth?.username ?? ''}`;
}

function baseUrl(reg: RegistryRef): string {
  return (typeof reg === 'string' ? reg : reg.url).replace(/\/+$/, '');
}

/** Parse `Bearer realm="...",service="...",scope="..."`. */
export function parseBearerChallenge(header: string): Record<string, string> | undefined {
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[1].matchAll(/([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[p[1].toLowerCase()] = p[2] ?? p[3] ?? '';
  }
  return params;
}

/** Fetch a token for `scope` from the realm named by a 401's WWW-Authenticate. */
export async function fetchToken(challenge: string, auth: RegistryAuth, scope: string): Promise<string> {
  const params = parseBearerChallenge(challenge);
  if (!params?.realm) throw new Error(`not a Bearer challenge: ${challenge}`);
  const u = new URL(params.realm);
  if (params.service) u.searchParams.set('service', params.service);
  u.searchParams.append('scope', scope);
  const headers: Record<string, string> = {};
  if (auth) headers.authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  const res = await fetch(u, { headers });
  if (!res.ok) throw new Error(`token request ${u} → ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!token) throw new Error('token response without token');
  return token;
}

/**
 * fetch() against `${reg}${path}` for repository `name`, answering a 401 Bearer
 * challenge once with a `repository:NAME:pull,push` token (cached per
 * registry/name/account). Bodies must be re-creatable: pass `body` as a
 * function when it is a stream.
 */
export async function registryFetch(
  reg: RegistryRef,
  auth: RegistryAuth,
  name: string,
  pathOrUrl: string,
  init: Omit<RequestInit, 'body'> & { body?: RequestInit['body'] | (() => RequestInit['body']) } = {},
): Promise<Response> {
  const base = baseUrl(reg);
  const url = /^https?:/.test(pathOrUrl) ? pathOrUrl : `${base}${pathOrUrl}`;
  const cacheKey = tokenCacheKey(reg, auth, name);
  const send = (token: string | undefined): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (token) headers.set('authorization', `Bearer ${token}`);
    const body = typeof init.body === 'function' ? init.body() : init.body;
    const streaming = body instanceof ReadableStream;
    return fetch(url, { ...init, headers, body, ...(streaming ? { duplex: 'half' } : {}) });
  };
  let res = await send(tokenCache.get(cacheKey));
  if (res.status === 401) {
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.arrayBuffer();
    const token = await fetchToken(challenge, auth, `repository:${name}:pull,push`);
    tokenCache.set(cacheKey, token);
    res = await send(token);
  }
  return res;
}

/** Buffers are valid fetch bodies at run time; only the DOM typings disagree (ArrayBufferLike vs ArrayBuffer). */
function asBody(bytes: Buffer): BodyInit {
  return bytes as Uint8Array<ArrayBuffer>;
}

async function expectStatus(res: Response, ok: number[], what: string): Promise<void> {
  if (!ok.includes(res.status)) {
    throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  }
}

/** Absolute upload URL from a Location header (may be relative), plus `digest=` in the query. */
function withDigest(reg: RegistryRef, location: string, digest: string): string {
  const u = new URL(location, `${baseUrl(reg)}/`);
  u.searchParams.set('digest', digest);
  return u.toString();
}

async function blobExists(reg: RegistryRef, auth: RegistryAuth, name: string, digest: string): Promise<boolean> {
  const res = await registryFetch(reg, auth, name, `/v2/${name}/blobs/${digest}`, { method: 'HEAD' });
  await res.arrayBuffer();
  return res.status === 200;
}

/** Monolithic upload: POST /blobs/uploads/ then PUT <location>?digest=. Skips blobs already present (HEAD). */
export async function pushBlob(reg: RegistryRef, auth: RegistryAuth, name: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256Digest(bytes);
  if (await blobExists(reg, auth, name, digest)) return { digest, size: bytes.length };
  const start = await registryFetch(reg, auth, name, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
  await expectStatus(start, [202], `POST upload ${name}`);
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (!location) throw new Error('upload POST without Location');
  const put = await registryFetch(reg, auth, name, withDigest(reg, location, digest), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: asBody(bytes),
  });
  await expectStatus(put, [201], `PUT blob ${digest} to ${name}`);
  await put.arrayBuffer();
  return { digest, size: bytes.length };
}

/**
 * Push `sizeMiB` MiB of seeded random bytes as one blob without holding it in
 * memory: one pass to compute the digest, a second to stream the PUT body
 * (the generator is deterministic, so no temp file is needed). The POST goes
 * through registryFetch (Bearer challenge); the PUT reuses its token.
 */
export async function pushRandomBlob(
  reg: RegistryRef,
  auth: RegistryAuth,
  name: string,
  opts: { sizeMiB: number; label?: string },
): Promise<{ digest: string; size: number }> {
  const size = Math.round(opts.sizeMiB * 1024 * 1024);
  const label = opts.label ?? `big-blob-${size}`;
  const hash = createHash('sha256');
  for (const chunk of seededChunks(label, size)) hash.update(chunk);
  const digest = `sha256:${hash.digest('hex')}`;
  if (await blobExists(reg, auth, name, digest)) return { digest, size };
  const start = await registryFetch(reg, auth, name, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
  await expectStatus(start, [202], `POST upload ${name}`);
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (!location) throw new Error('upload POST without Location');
  // node:http, not fetch: Node 24's fetch (undici 7.29) kept every chunk of a
  // streamed request body alive until the request finished (RSS grew with the
  // blob size); node:http keeps memory flat and sends a real Content-Length.
  const token = tokenCache.get(tokenCacheKey(reg, auth, name));
  const put = await putStream(withDigest(reg, location, digest), token, size, seededChunks(label, size));
  if (put.status !== 201) throw new Error(`PUT big blob ${digest} to ${name}: HTTP ${put.status} ${put.body}`);
  return { digest, size };
}

/** PUT `chunks` (exactly `size` bytes) to `url` with node:http(s), honouring backpressure. */
async function putStream(url: string, token: string | undefined, size: number, chunks: Iterable<Buffer>): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': size };
  if (token) headers.authorization = `Bearer ${token}`;
  const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'PUT', headers });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.once('error', reject);
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
  });
  // If the server answers early (e.g. 401) the upload is cut short; report its answer, not EPIPE.
  await pipeline(Readable.from(chunks), req).catch(() => undefined);
  return response;
}

// ---------------------------------------------------------------------------
// Images, manifest lists, OCI indexes

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PushImageOptions {
  name: string;
  /** Tag to push the manifest under; without one it is pushed by digest. */
  tag?: string;
  layers: Layer[];
  platform?: Platform;
  format: 'docker' | 'oci';
  /** Extra config Labels, e.g. to make otherwise identical images differ. */
  labels?: Record<string, string>;
}

export interface PushedImage {
  name: string;
  tag?: string;
  manifestDigest: string;
  manifestBytes: Buffer;
  mediaType: string;
  configDigest: string;
  configBytes: Buffer;
  layerDigests: string[];
  platform: Platform;
}

/** A minimal valid image config (what `docker inspect` / containerd expect). */
export function makeImageConfig(layers: Layer[], platform: Platform, labels?: Record<string, string>): Buffer {
  const created = '2024-01-01T00:00:00Z';
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      WorkingDir: '/',
      ...(labels ? { Labels: labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_l, i) => ({ created, created_by: `pullmirror fixture layer ${i}` })),
  };
  return Buffer.from(JSON.stringify(config));
}

async function putManifest(reg: RegistryRef, auth: RegistryAuth, name: string, reference: string, mediaType: string, bytes: Buffer): Promise<string> {
  const res = await registryFetch(reg, auth, name, `/v2/${name}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: asBody(bytes),
  });
  await expectStatus(res, [201], `PUT manifest ${name}:${reference}`);
  await res.arrayBuffer();
  const digest = sha256Digest(bytes);
  const got = res.headers.get('docker-content-digest');
  if (got && got !== digest) throw new Error(`registry computed ${got} for manifest, expected ${digest}`);
  return digest;
}

export async function pushImage(reg: RegistryRef, auth: RegistryAuth, opts: PushImageOptions): Promise<PushedImage> {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const oci = opts.format === 'oci';
  const configBytes = makeImageConfig(opts.layers, platform, opts.labels);
  const config = await pushBlob(reg, auth, opts.name, configBytes);
  for (const l of opts.layers) await pushBlob(reg, auth, opts.name, l.bytes);
  const mediaType = oci ? MT.ociManifest : MT.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: oci ? MT.ociConfig : MT.dockerConfig, size: config.size, digest: config.digest },
    layers: opts.layers.map((l) => ({ mediaType: oci ? MT.ociLayer : MT.dockerLayer, size: l.size, digest: l.digest })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 3));
  const manifestDigest = sha256Digest(manifestBytes);
  await putManifest(reg, auth, opts.name, opts.tag ?? manifestDigest, mediaType, manifestBytes);
  return {
    name: opts.name,
    tag: opts.tag,
    manifestDigest,
    manifestBytes,
    mediaType,
    configDigest: config.digest,
    configBytes,
    layerDigests: opts.layers.map((l) => l.digest),
    platform,
  };
}

export interface PushedIndex {
  digest: string;
  bytes: Buffer;
  mediaType: string;
}

/** Push a Docker manifest list or OCI index over already-pushed images (which must live in the same repository). */
export async function pushIndex(
  reg: RegistryRef,
  auth: RegistryAuth,
  opts: { name: string; tag: string; images: PushedImage[]; format: 'docker-list' | 'oci-index' },
): Promise<PushedIndex> {
  for (const img of opts.images) {
    if (img.name !== opts.name) throw new Error(`pushIndex: image ${img.manifestDigest} lives in ${img.name}, not ${opts.name}`);
  }
  const mediaType = opts.format === 'oci-index' ? MT.ociIndex : MT.dockerList;
  const index = {
    schemaVersion: 2,
    mediaType,
    manifests: opts.images.map((img) => ({
      mediaType: img.mediaType,
      size: img.manifestBytes.length,
      digest: img.manifestDigest,
      platform: img.platform,
    })),
  };
  const bytes = Buffer.from(JSON.stringify(index, null, 3));
  const digest = await putManifest(reg, auth, opts.name, opts.tag, mediaType, bytes);
  return { digest, bytes, mediaType };
}
