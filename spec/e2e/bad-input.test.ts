/**
 * A generated corpus of bad requests against the real mirror process: invalid names, tags and
 * digests, traversal attempts (raw and percent-encoded), Range abuse, unknown paths, write
 * methods, oversized headers and non-HTTP bytes. Every request goes over a raw socket (fetch
 * and URL would normalise `..` away) and every answer must be:
 *   - never a 5xx, never a hang (5 s per request);
 *   - the status the API promises, and for a status >= 400 with a body, the OCI error JSON with
 *     the expected code;
 *   - never content from outside the store: sentinel files sit next to and above the store
 *     root, no answer may contain them, and nothing outside the root is written.
 * None of these requests needs upstream, so upstream must see none of them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { pushImage, randomLayer, seededBytes, type Layer, type PushedImage } from '../support/images.ts';
import { tempFiles, type RunningMirror } from '../support/mirror.ts';
import { tempDir, type TempDir } from '../support/processes.ts';
import { parseRawResponse, rawExchange, rawRequest, type RawExchange, type RawResponse } from '../support/raw-http.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const NAME = 'library/alpine';
const TAG = '3.20';
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const NON_ASCII = /[^\x00-\x7f]/;
const HEX64 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

interface Expect {
  /** Acceptable statuses. */
  status: number[];
  /** Acceptable OCI error codes, checked when the answer has a body and status >= 400. */
  codes?: string[];
  /** A closed or reset connection without any answer is acceptable (non-HTTP input). */
  mayClose?: boolean;
  /** The request did not ask to close: a complete answer on a connection kept open is fine. */
  keepAlive?: boolean;
  /** Further checks on the parsed answer; returns a problem or undefined. */
  check?: (response: RawResponse) => string | undefined;
}

interface Case {
  label: string;
  method: string;
  bytes: Buffer;
  expect: Expect;
  halfClose?: boolean;
}

const err = (status: number, ...codes: string[]): Expect => ({ status: [status], codes });

/** `a/b` path of every entry below `dir` (not following links), with what would show a write or touch. */
function snapshot(dir: string, exclude: string): Map<string, string> {
  const entries = new Map<string, string>();
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const full = path.join(current, name);
      if (full === exclude) continue;
      const stat = lstatSync(full);
      const kind = stat.isDirectory() ? 'dir' : stat.isFile() ? 'file' : stat.isSymbolicLink() ? 'link' : 'other';
      entries.set(path.relative(dir, full), `${kind} size=${stat.size} mode=${stat.mode.toString(8)} mtime=${stat.mtimeMs} ctime=${stat.ctimeMs}`);
      if (stat.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return entries;
}

function listRecursive(dir: string): { rel: string; isDir: boolean }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).map((entry) => ({
    rel: path.relative(dir, path.join(entry.parentPath, entry.name)),
    isDir: entry.isDirectory(),
  }));
}

async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await fn(items[index]);
      }
    }),
  );
  return results;
}

describe('bad input: a generated corpus of malformed requests against the real mirror', { skip: missingBinaries }, () => {
  let world: World;
  let mirror: RunningMirror;
  let image: PushedImage;
  let layer: Layer;
  let work: TempDir;
  let root: string;
  let port: number;
  const sentinels = [`pullmirror-sentinel-${randomBytes(16).toString('hex')}`, `pullmirror-sentinel-${randomBytes(16).toString('hex')}`];
  let outsideBefore: Map<string, string>;
  /** Every case sent, for the summary. */
  let sent = 0;

  before(async () => {
    world = await startWorld();
    layer = randomLayer('bad-input-0', 10_000);
    image = await pushImage(world.registry.url, PUSHER, { name: NAME, tag: TAG, layers: [layer], format: 'docker' });
    // <work>/secret.txt, <work>/jail/secret.txt, store root <work>/jail/store.
    work = tempDir('pullmirror-badinput');
    const jail = path.join(work.path, 'jail');
    mkdirSync(jail);
    writeFileSync(path.join(work.path, 'secret.txt'), sentinels[0]);
    writeFileSync(path.join(jail, 'secret.txt'), sentinels[1]);
    // Decoys a traversal from the store's own directories would reach.
    mkdirSync(path.join(jail, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(path.join(jail, 'blobs', 'sha256', 'secret.txt'), sentinels[1]);
    root = path.join(jail, 'store');
    mirror = await world.startMirror({ root });
    port = mirror.port;
    // Warm the tag, the manifest and both blobs: Range cases run against a cached blob.
    for (const url of [`/v2/${NAME}/manifests/${TAG}`, `/v2/${NAME}/blobs/${image.configDigest}`, `/v2/${NAME}/blobs/${layer.digest}`]) {
      const response = await fetch(`${mirror.url}${url}`);
      assert.equal(response.status, 200, url);
      await response.arrayBuffer();
    }
    outsideBefore = snapshot(work.path, root);
    world.proxy.reset();
  });

  after(async () => {
    await world?.close();
    await work?.cleanup();
  });

  /** Sends the cases (8 at a time) and returns one line per problem. */
  async function run(cases: Case[]): Promise<string[]> {
    sent += cases.length;
    const problems: string[] = [];
    await pool(cases, 8, async (c) => {
      const exchange = await rawExchange(port, c.bytes, { timeoutMs: 5_000, halfClose: c.halfClose });
      const problem = judge(c, exchange);
      if (problem) problems.push(`${c.label}: ${problem}`);
    });
    return problems;
  }

  function judge(c: Case, exchange: RawExchange): string | undefined {
    for (const sentinel of sentinels) {
      if (exchange.bytes.includes(sentinel)) return 'answer contains a sentinel file from outside the store';
    }
    const response = parseRawResponse(exchange.bytes, { head: c.method === 'HEAD' });
    if (process.env.BAD_INPUT_VERBOSE) console.log(`${c.label.slice(0, 150)} → ${exchange.outcome} ${response ? `${response.status} ${response.body.subarray(0, 120).toString('utf8')}` : `${exchange.bytes.length} bytes`}`);
    const complete = response && (response.headers['content-length'] === undefined || response.body.length === Number(response.headers['content-length']));
    if (exchange.outcome === 'timeout' && !(c.expect.keepAlive && complete)) return `no answer within 5 s (hang); got ${JSON.stringify(exchange.bytes.subarray(0, 200).toString('latin1'))}`;
    if (!response) {
      if (c.expect.mayClose && exchange.bytes.length === 0) return undefined;
      return `no HTTP answer (${exchange.outcome}, ${exchange.bytes.length} bytes: ${JSON.stringify(exchange.bytes.subarray(0, 200).toString('latin1'))})`;
    }
    const summary = `${response.status} ${response.body.subarray(0, 300).toString('utf8')}`;
    if (response.status >= 500) return `5xx: ${summary}`;
    if (!c.expect.status.includes(response.status)) return `expected status ${c.expect.status.join('|')}, got ${summary}`;
    if (response.status >= 400 && response.body.length > 0) {
      if (!/^application\/json\b/.test(response.headers['content-type'] ?? '')) return `error body is not JSON (${response.headers['content-type']}): ${summary}`;
      let parsed: { errors?: { code?: unknown; message?: unknown }[] };
      try {
        parsed = JSON.parse(response.body.toString('utf8'));
      } catch {
        return `error body does not parse: ${summary}`;
      }
      const errors = parsed.errors;
      if (!Array.isArray(errors) || errors.length === 0 || !errors.every((e) => typeof e.code === 'string' && typeof e.message === 'string')) {
        return `not the OCI error format: ${summary}`;
      }
      if (c.expect.codes && !c.expect.codes.includes(errors[0].code as string)) return `expected code ${c.expect.codes.join('|')}, got ${summary}`;
    }
    // Parsed as HEAD the body is dropped by definition: look at the raw bytes after the headers.
    if (c.method === 'HEAD' && (parseRawResponse(exchange.bytes)?.body.length ?? 0) > 0) return 'HEAD answer with a body';
    return c.expect.check?.(response);
  }

  const req = (method: string, target: string, expect: Expect, headers: [string, string][] = [], body?: string | Buffer): Case => ({
    label: `${method} ${target.length > 120 ? `${target.slice(0, 100)}…(${target.length} chars)` : target}${headers.length ? ` [${headers.map(([n, v]) => `${n}: ${v.length > 40 ? `${v.slice(0, 30)}…(${v.length})` : v}`).join('; ').slice(0, 200)}]` : ''}`,
    method,
    bytes: rawRequest(method, target, port, headers, body),
    expect,
  });

  const raw = (label: string, bytes: string | Buffer, expect: Expect, halfClose = false): Case => ({
    label,
    method: 'RAW',
    bytes: Buffer.from(bytes),
    expect,
    halfClose,
  });

  it('refuses invalid repository names (traversal, encoding, case, shape, length) with 400 NAME_INVALID', async () => {
    const names = [
      // dot segments, raw: only a raw socket sends these
      '..', '.', '../x', 'a/..', 'a/../b', 'a/./b', './a', `${NAME}/..`, `../${NAME}`, '../../..', '../../../etc', '../../secret.txt',
      '../../../secret.txt', 'x/../../../../secret.txt', '...', 'a/.../b',
      // dot segments and slashes, percent-encoded (the path is matched as sent, never decoded)
      '%2e%2e', '%2E%2E', '%2e%2e/x', '%2E%2E/x', 'x/%2e%2e', '.%2e', '%2e.', '..%2f..%2fetc', '%2e%2e%2f%2e%2e%2fsecret.txt',
      'a%2fb', 'library%2Falpine', '..%5c..%5csecret.txt', '%252e%252e', '%zz', '%', 'a%', 'a%2',
      // case
      'Library/alpine', 'library/Alpine', 'LIBRARY/ALPINE', 'library/alpinE',
      // empty components, leading and trailing slashes
      'a//b', '/a', 'a/', '//a', `${NAME}/`, `/${NAME}`, 'library//alpine', '/',
      // components starting or ending with a separator, bad separator runs
      '_a', 'a/_b', '__a', '.a', 'a/.b', '-a', 'a/-b', 'a-', 'a_', 'a.', 'a___b', 'a..b', 'a._b', 'a-.b', '_manifests', 'a/_tags', '_tmp',
      // length: over 255 in total, long components, many components
      'a'.repeat(256), 'a'.repeat(1000), `${'a'.repeat(200)}/${'b'.repeat(60)}`, `${'a/'.repeat(128)}a`,
      // non-ASCII, raw UTF-8 and encoded
      'café', 'ä/b', 'a\u2215b', '\uff0e\uff0e', 'caf%C3%A9', '%C0%AE%C0%AE', 'ｌｉｂｒａｒｙ/alpine',
      // NUL, backslashes, other specials
      '%00', 'a%00b', `${NAME}%00`, 'a\\b', '..\\..\\secret.txt', '\\secret.txt', 'a%20b', 'a+b', 'a;b', 'a:b', 'a@b', 'a$b', '*', '~a', 'a,b',
    ];
    const cases: Case[] = [];
    for (const name of names) {
      // Raw non-ASCII bytes in the request target are refused by Node's HTTP parser before the app.
      const invalid = NON_ASCII.test(name) ? err(400, 'NAME_INVALID', 'UNSUPPORTED') : err(400, 'NAME_INVALID');
      cases.push(
        req('GET', `/v2/${name}/manifests/${TAG}`, invalid),
        req('HEAD', `/v2/${name}/manifests/${image.manifestDigest}`, { status: [400] }),
        req('GET', `/v2/${name}/blobs/${layer.digest}`, invalid),
        req('GET', `/v2/${name}/tags/list`, invalid),
        req('POST', `/v2/${name}/blobs/uploads/`, invalid),
      );
    }
    // A few on the remaining shapes.
    for (const name of ['..', 'a/../b', '%2e%2e', 'A', '_a', 'a'.repeat(256)]) {
      cases.push(
        req('HEAD', `/v2/${name}/blobs/${layer.digest}`, { status: [400] }),
        req('GET', `/v2/${name}/referrers/${image.manifestDigest}`, err(400, 'NAME_INVALID')),
        req('GET', `/v2/${name}/blobs/uploads/0b9f3d`, err(400, 'NAME_INVALID')),
        req('GET', `/v2/${name}/manifests/${image.manifestDigest}?ns=127.0.0.1`, err(400, 'NAME_INVALID')),
      );
    }
    // Absolute-form request targets carry the same path.
    cases.push(
      req('GET', `http://127.0.0.1:${port}/v2/../../secret.txt/manifests/${TAG}`, err(400, 'NAME_INVALID')),
      req('GET', `http://127.0.0.1:${port}/v2/%2e%2e/blobs/${layer.digest}`, err(400, 'NAME_INVALID')),
    );
    assert.deepEqual(await run(cases), []);
  });

  it('refuses invalid and unsupported digests on blobs and manifests with 400', async () => {
    const DIGEST_INVALID = err(400, 'DIGEST_INVALID');
    const UNSUPPORTED = err(400, 'UNSUPPORTED');
    const withColon: [string, Expect][] = [
      ['sha256:', DIGEST_INVALID],
      ['sha256:abc', DIGEST_INVALID],
      [`sha256:${HEX64.slice(1)}`, DIGEST_INVALID],
      [`sha256:${HEX64}0`, DIGEST_INVALID],
      [`sha256:${HEX64.toUpperCase()}`, DIGEST_INVALID],
      [`sha256:${HEX64.slice(0, 63)}A`, DIGEST_INVALID],
      [`sha256:${'g'.repeat(64)}`, DIGEST_INVALID],
      [`sha256:${'z'.repeat(64)}`, DIGEST_INVALID],
      [`sha256:${HEX64.slice(0, 32)}-${HEX64.slice(33)}`, DIGEST_INVALID],
      [`sha256:${HEX64.slice(0, 62)}==`, DIGEST_INVALID],
      [`sha256:${'a'.repeat(5000)}`, DIGEST_INVALID],
      ['sha256:..', DIGEST_INVALID],
      ['sha256:..%2f..%2fsecret.txt', DIGEST_INVALID],
      ['sha256:%2e%2e%2f%2e%2e%2fsecret.txt', DIGEST_INVALID],
      [`sha256:${HEX64}%00`, DIGEST_INVALID],
      [`sha256::${HEX64}`, DIGEST_INVALID],
      [`sha256:${HEX64}:x`, DIGEST_INVALID],
      [`:${HEX64}`, DIGEST_INVALID],
      [`SHA256:${HEX64}`, DIGEST_INVALID],
      [`Sha256:${HEX64}`, DIGEST_INVALID],
      [`sha256 :${HEX64}`.replace(' ', '%20'), DIGEST_INVALID],
      [`../sha256:${HEX64}`.replace('/', '%2f'), DIGEST_INVALID],
      [`__proto__:${HEX64}`, DIGEST_INVALID],
      [`sha512:${HEX64}`, DIGEST_INVALID],
      [`sha512:${HEX64}${HEX64.slice(1)}`, DIGEST_INVALID],
      [`sha512:${(HEX64 + HEX64).toUpperCase()}`, DIGEST_INVALID],
      [`md5:${HEX64.slice(0, 32)}`, UNSUPPORTED],
      [`sha1:${HEX64.slice(0, 40)}`, UNSUPPORTED],
      [`sha384:${(HEX64 + HEX64).slice(0, 96)}`, UNSUPPORTED],
      [`sha256+b64u:${HEX64}`, UNSUPPORTED],
      [`blake3:${HEX64}`, UNSUPPORTED],
      [`x:y`, UNSUPPORTED],
      // Registered algorithms are an own-property table: names from Object.prototype are just unknown algorithms.
      [`constructor:${HEX64}`, UNSUPPORTED],
      [`tostring:${HEX64}`, UNSUPPORTED],
    ];
    // Without a colon, a blob reference is still a digest parameter.
    const withoutColon = ['sha256', HEX64, `sha256${HEX64}`, 'latest', '..', '%2e%2e', 'sha256%3a' + HEX64, `sha256%3A${HEX64}`, '.', 'x'.repeat(300)];
    const cases: Case[] = [];
    for (const [digest, expect] of withColon) {
      cases.push(
        req('GET', `/v2/${NAME}/blobs/${digest}`, expect),
        req('HEAD', `/v2/${NAME}/blobs/${digest}`, { status: expect.status }),
        req('GET', `/v2/${NAME}/manifests/${digest}`, expect),
        req('HEAD', `/v2/${NAME}/manifests/${digest}`, { status: expect.status }),
      );
    }
    for (const digest of withoutColon) {
      cases.push(req('GET', `/v2/${NAME}/blobs/${digest}`, DIGEST_INVALID), req('HEAD', `/v2/${NAME}/blobs/${digest}`, { status: [400] }));
    }
    // A digest with raw slashes is no route at all.
    for (const digest of ['sha256:../../x', `sha256:${HEX64}/`, `sha256:../../../secret.txt`, `sha256/../../${HEX64}`, '']) {
      cases.push(req('GET', `/v2/${NAME}/blobs/${digest}`, err(404, 'NOT_FOUND')));
    }
    assert.deepEqual(await run(cases), []);
  });

  it('refuses invalid tags with 400 TAG_INVALID', async () => {
    const tags = [
      '.x', '-x', '.', '..', '...', '.hidden', '-', 'x'.repeat(129), 'x'.repeat(1000), '%2e%2e', '%2E%2E', '..%2f..%2fsecret.txt', 'a%2fb', 'a%00', '%00',
      'a%20b', 'tag!', 'a+b', 'a@b', 'a$b', 'a,b', 'a;b', '*', '~x', 'a\\b', '..\\..\\secret.txt', 'täg', 't%C3%A4g', '%zz', 'a%',
    ];
    const cases: Case[] = [];
    for (const tag of tags) {
      cases.push(req('GET', `/v2/${NAME}/manifests/${tag}`, NON_ASCII.test(tag) ? err(400, 'TAG_INVALID', 'UNSUPPORTED') : err(400, 'TAG_INVALID')), req('HEAD', `/v2/${NAME}/manifests/${tag}`, { status: [400] }));
    }
    assert.deepEqual(await run(cases), []);
  });

  it('answers Range on a cached blob: malformed ignored (200), unsatisfiable 416 with Content-Range, satisfiable 206 with the exact bytes', async () => {
    const size = layer.size;
    const whole = (response: RawResponse) => (response.body.equals(layer.bytes) ? undefined : `body is not the whole blob (${response.body.length} bytes)`);
    const ignored: Expect = { status: [200], check: whole };
    const partial = (start: number, end: number): Expect => ({
      status: [206],
      check: (response) => {
        if (response.headers['content-range'] !== `bytes ${start}-${end}/${size}`) return `Content-Range ${response.headers['content-range']}, expected bytes ${start}-${end}/${size}`;
        return response.body.equals(layer.bytes.subarray(start, end + 1)) ? undefined : `body is not bytes ${start}-${end}`;
      },
    });
    /** A satisfiable range the server may serve (206) or, as RFC 9110 allows, ignore (200): never 416. */
    const servedOrIgnored = (start: number, end: number): Expect => ({
      status: [200, 206],
      check: (response) => (response.status === 200 ? whole(response) : partial(start, end).check!(response)),
    });
    const unsatisfiable: Expect = {
      status: [416],
      codes: ['RANGE_NOT_SATISFIABLE'],
      check: (response) => (response.headers['content-range'] === `bytes */${size}` ? undefined : `Content-Range ${response.headers['content-range']}, expected bytes */${size}`),
    };
    const ranges: [string, Expect][] = [
      // Malformed or not honoured: the whole blob.
      ['bytes=abc', ignored],
      ['bytes=5-2', ignored],
      [`bytes=${size}-0`, ignored],
      ['items=0-1', ignored],
      ['bytes=0-1,4-5', ignored],
      ['bytes=0-1, 4-5', ignored],
      ['bytes=-', ignored],
      ['bytes=', ignored],
      ['bytes', ignored],
      ['=0-1', ignored],
      ['bytes=1e3-', ignored],
      ['bytes=0x10-', ignored],
      ['bytes=--1', ignored],
      ['bytes=1--2', ignored],
      ['bytes=0-1;x', ignored],
      ['bytes=+1-2', ignored],
      ['bytes=1.5-2', ignored],
      ['bytes=0-1\u00a0', ignored],
      ['bytes 0-1', ignored],
      ['bytes=0-1/10', ignored],
      ['Bytes=0-1', servedOrIgnored(0, 1)],
      // Unsatisfiable: 416.
      [`bytes=${size}-`, unsatisfiable],
      [`bytes=${size}-${size}`, unsatisfiable],
      [`bytes=${size + 10}-${size + 20}`, unsatisfiable],
      ['bytes=-0', unsatisfiable],
      ['bytes=99999999999999999999-', { ...unsatisfiable, status: [200, 416], check: (r) => (r.status === 200 ? whole(r) : unsatisfiable.check!(r)) }],
      [`bytes=${'9'.repeat(400)}-`, { ...unsatisfiable, status: [200, 416], check: (r) => (r.status === 200 ? whole(r) : unsatisfiable.check!(r)) }],
      // Satisfiable: 206 with exactly those bytes.
      ['bytes=0-0', partial(0, 0)],
      ['bytes=0-', partial(0, size - 1)],
      ['bytes=10-19', partial(10, 19)],
      [`bytes=${size - 1}-`, partial(size - 1, size - 1)],
      ['bytes=-1', partial(size - 1, size - 1)],
      ['bytes=-100', partial(size - 100, size - 1)],
      [`bytes=-${size + 5}`, partial(0, size - 1)],
      [`bytes=0-${size + 100}`, partial(0, size - 1)],
      [`bytes=5-${size - 1}`, partial(5, size - 1)],
      ['bytes=007-009', partial(7, 9)],
      // RFC 9110 14.1.2: a last-pos past the end means "to the end", however many digits it has.
      ['bytes=0-99999999999999999999', servedOrIgnored(0, size - 1)],
      ['bytes=0-9999999999999999', servedOrIgnored(0, size - 1)],
      [`bytes=0-${'9'.repeat(400)}`, servedOrIgnored(0, size - 1)],
      // A suffix longer than the blob is the whole blob.
      ['bytes=-99999999999999999999', servedOrIgnored(0, size - 1)],
      // Leading zeros do not change the value.
      ['bytes=0000000000000000000001-2', servedOrIgnored(1, 2)],
    ];
    const cases: Case[] = ranges.map(([range, expect]) => req('GET', `/v2/${NAME}/blobs/${layer.digest}`, expect, [['Range', range]]));
    // HEAD ignores Range; a conditional GET that matches wins over Range; a manifest ignores it.
    cases.push(
      req('HEAD', `/v2/${NAME}/blobs/${layer.digest}`, { status: [200] }, [['Range', `bytes=${size}-`]]),
      req('GET', `/v2/${NAME}/blobs/${layer.digest}`, { status: [304] }, [['Range', 'bytes=0-1'], ['If-None-Match', `"${layer.digest}"`]]),
      req('GET', `/v2/${NAME}/manifests/${image.manifestDigest}`, { status: [200], check: (r) => (r.body.equals(image.manifestBytes) ? undefined : 'not the manifest') }, [
        ['Range', 'bytes=0-1'],
      ]),
    );
    assert.deepEqual(await run(cases), []);
  });

  it('answers unknown paths 404 NOT_FOUND (and the catalog 404 UNSUPPORTED)', async () => {
    const notFound = err(404, 'NOT_FOUND');
    const paths: [string, Expect][] = [
      // GET / is the status page (see ops.test.ts); every other method on it is 404 (below).
      ['/favicon.ico', notFound],
      ['/robots.txt', notFound],
      ['/v1/', notFound],
      ['/v3/', notFound],
      ['/v2x/', notFound],
      ['/v2.0/', notFound],
      ['/%76%32/', notFound],
      ['/./v2/', notFound],
      ['/x/../v2/', notFound],
      ['/../../secret.txt', notFound],
      ['/v2/../../secret.txt', notFound],
      ['/v2/..', notFound],
      ['/v2/.', notFound],
      ['/v2/./', notFound],
      ['/v2//', notFound],
      ['/v2///', notFound],
      ['/v2/%', notFound],
      ['/v2/%2f', notFound],
      ['/v2/_catalog/x', notFound],
      ['/v2/_catalog/', notFound],
      [`/v2/${NAME}`, notFound],
      [`/v2/${NAME}/`, notFound],
      [`/v2/${NAME}/unknown/x`, notFound],
      [`/v2/${NAME}/manifests`, notFound],
      [`/v2/${NAME}/manifests/`, notFound],
      [`/v2/${NAME}/manifests/${TAG}/`, notFound],
      [`/v2/${NAME}/manifests/${TAG}/x`, notFound],
      [`/v2/${NAME}/blobs`, notFound],
      [`/v2/${NAME}/blobs/`, notFound],
      [`/v2/${NAME}/tags`, notFound],
      [`/v2/${NAME}/tags/`, notFound],
      [`/v2/${NAME}/tags/list/`, notFound],
      [`/v2/${NAME}/tags/list/x`, notFound],
      [`/v2/${NAME}/tags/lists`, notFound],
      [`/v2/${NAME}/referrers/`, notFound],
      ['/v2/manifests/latest', notFound],
      ['/v2/blobs/' + `sha256:${HEX64}`, notFound],
      [`/v2/${NAME}?x/manifests/${TAG}`, notFound],
      ['/v2/_catalog', err(404, 'UNSUPPORTED')],
      ['/v2/_catalog?n=10&last=../../x', err(404, 'UNSUPPORTED')],
      ['*', notFound],
      // The API root answers whatever the query string.
      ['/v2', { status: [200] }],
      ['/v2/?%zz=%zz', { status: [200] }],
      ['/v2/?a[b][c]=d&a=1&a=2', { status: [200] }],
      ['/v2/?ns=../../etc', { status: [200] }],
      [`http://127.0.0.1:${port}/v2/`, { status: [200] }],
      // A namespace this mirror does not serve, before any upstream contact.
      [`/v2/${NAME}/manifests/${TAG}?ns=quay.io`, err(404, 'NAME_UNKNOWN')],
      [`/v2/${NAME}/manifests/${TAG}?ns=`, err(404, 'NAME_UNKNOWN')],
      [`/v2/${NAME}/manifests/${TAG}?ns=..%2f..%2fsecret.txt`, err(404, 'NAME_UNKNOWN')],
      [`/v2/${NAME}/blobs/${layer.digest}?ns=%00`, err(404, 'NAME_UNKNOWN')],
      [`/v2/${NAME}/tags/list?ns=${'x'.repeat(3000)}`, err(404, 'NAME_UNKNOWN')],
    ];
    const cases = paths.flatMap(([target, expect]) => [req('GET', target, expect), req('HEAD', target, { ...expect, codes: undefined })]);
    // Express matches mount paths case-insensitively; either answer is fine for an upper-case /V2.
    cases.push(req('GET', '/V2/', { status: [200, 404], codes: ['NOT_FOUND'] }));
    assert.deepEqual(await run(cases), []);
  });

  it('answers write methods 405 UNSUPPORTED with Allow on every route shape, and never 5xx for odd methods', async () => {
    const allow = (response: RawResponse) => (response.headers.allow === 'GET, HEAD' ? undefined : `Allow: ${response.headers.allow}`);
    const unsupported: Expect = { status: [405], codes: ['UNSUPPORTED'], check: allow };
    const shapes = [
      '/v2/',
      '/v2',
      `/v2/${NAME}/manifests/${TAG}`,
      `/v2/${NAME}/manifests/${image.manifestDigest}`,
      `/v2/${NAME}/blobs/${layer.digest}`,
      `/v2/${NAME}/blobs/md5:abc`,
      `/v2/${NAME}/tags/list`,
      `/v2/${NAME}/blobs/uploads/`,
      `/v2/${NAME}/blobs/uploads`,
      `/v2/${NAME}/blobs/uploads/2f6e1a9c-5f5e-4d0a-9b59-0e6d1d0c7b1a`,
      `/v2/${NAME}/referrers/${image.manifestDigest}`,
      '/v2/_catalog',
    ];
    const cases: Case[] = [];
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND', 'MKCOL', 'LOCK', 'PURGE', 'SEARCH']) {
      for (const target of shapes) cases.push(req(method, target, unsupported));
      // Names are checked before the method is refused; unknown paths are unknown whatever the method.
      for (const name of ['..', 'a/../b', '%2e%2e', 'Library/alpine']) cases.push(req(method, `/v2/${name}/manifests/${TAG}`, err(400, 'NAME_INVALID')));
      for (const target of ['/', '/v3/', `/v2/${NAME}/unknown/x`, '/v2/_catalog/x', `/v2/${NAME}/manifests/`]) cases.push(req(method, target, err(404, 'NOT_FOUND')));
    }
    // Bodies a push would send.
    const manifestBody = image.manifestBytes;
    cases.push(
      req('PUT', `/v2/${NAME}/manifests/${TAG}`, unsupported, [['Content-Type', image.mediaType], ['Content-Length', String(manifestBody.length)]], manifestBody),
      req('PUT', `/v2/${NAME}/blobs/uploads/x?digest=${layer.digest}`, unsupported, [['Content-Length', String(layer.size)]], layer.bytes),
      req('POST', `/v2/${NAME}/blobs/uploads/?mount=${layer.digest}&from=library/other`, unsupported, [['Content-Length', '0']]),
      req('PATCH', `/v2/${NAME}/blobs/uploads/x`, unsupported, [['Transfer-Encoding', 'chunked']], '5\r\nhello\r\n0\r\n\r\n'),
      // A body announced and never sent must not hold the answer back.
      req('PUT', `/v2/${NAME}/blobs/uploads/x`, unsupported, [['Content-Length', '1073741824']], 'only a little'),
      req('DELETE', `/v2/${NAME}/manifests/${image.manifestDigest}`, unsupported, [['Content-Length', '2']], '{}'),
      req('POST', `/v2/${NAME}/blobs/uploads/`, unsupported, [['Expect', '100-continue'], ['Content-Length', '4']], 'data'),
    );
    // Methods the HTTP parser does not know: it refuses them (400) before the app.
    const unknownMethod: Expect = { status: [400, 405], codes: ['UNSUPPORTED'] };
    for (const method of ['FOO', 'BREW', 'get', 'Get', 'GETT', 'G\tET', 'PROPFINDX', 'X'.repeat(64)]) {
      cases.push(req(method, '/v2/', unknownMethod), req(method, `/v2/${NAME}/manifests/${TAG}`, unknownMethod));
    }
    assert.deepEqual(await run(cases), []);
  });

  it('answers oversized request headers 431 with the OCI error body', async () => {
    const tooLarge: Expect = { status: [431], codes: ['UNSUPPORTED'] };
    const many = Array.from({ length: 2000 }, (_, i): [string, string] => [`X-Header-${i}`, 'value-value-value']);
    const cases: Case[] = [
      req('GET', '/v2/', tooLarge, [['X-Big', 'a'.repeat(20 * 1024)]]),
      req('GET', `/v2/${NAME}/blobs/${layer.digest}`, tooLarge, [['Cookie', `c=${'b'.repeat(20 * 1024)}`]]),
      req('GET', `/v2/${NAME}/manifests/${TAG}`, tooLarge, [['Authorization', `Bearer ${'c'.repeat(64 * 1024)}`]]),
      req('GET', '/v2/', tooLarge, many),
      req('GET', `/v2/${'a'.repeat(20 * 1024)}/manifests/${TAG}`, tooLarge),
      req('GET', `/v2/${NAME}/manifests/${'t'.repeat(20 * 1024)}`, tooLarge),
      req('HEAD', '/v2/', { status: [431] }, [['X-Big', 'a'.repeat(20 * 1024)]]),
      // Just under the limit: answered normally.
      req('GET', '/v2/', { status: [200] }, [['X-Big', 'a'.repeat(12 * 1024)]]),
      req('GET', '/v2/', { status: [200] }, many.slice(0, 300)),
    ];
    assert.deepEqual(await run(cases), []);
  });

  it('survives non-HTTP bytes, broken framing and protocol oddities with a 4xx or a closed connection', async () => {
    const host = `Host: 127.0.0.1:${port}`;
    const bad: Expect = { status: [400], codes: ['UNSUPPORTED'], mayClose: true };
    const hello = await captureClientHello();
    const cases: Case[] = [
      raw('TLS ClientHello', hello, bad),
      raw('TLS ClientHello, half-closed', hello, bad, true),
      raw('SSH banner', 'SSH-2.0-OpenSSH_9.6\r\n', bad),
      raw('HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { status: [400, 404, 505], codes: ['UNSUPPORTED', 'NOT_FOUND'], mayClose: true }),
      // llhttp reads a request line without a version as HTTP/0.9; answering it is fine.
      raw('request line without version', 'GET /v2/\r\n\r\n', { ...bad, status: [200, 400] }),
      raw('method only', 'GET\r\n\r\n', bad),
      raw('HTTP/9.9', `GET /v2/ HTTP/9.9\r\n${host}\r\nConnection: close\r\n\r\n`, { ...bad, status: [400, 505] }),
      raw('HTTP/1.1 without Host', 'GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n', { status: [400], codes: ['UNSUPPORTED'] }),
      raw('HTTP/1.0 without Host', 'GET /v2/ HTTP/1.0\r\n\r\n', { status: [200] }),
      raw('two spaces in the request line', `GET  /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`, { ...bad, status: [200, 400] }),
      raw('raw space in the path', `GET /v2/a b/manifests/x HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`, bad),
      raw('raw NUL in the path', `GET /v2/a\0b/manifests/x HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`, bad),
      raw('raw CR in the path', `GET /v2/a\rb/manifests/x HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`, bad),
      raw('Content-Length and Transfer-Encoding', `POST /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, bad),
      raw('two different Content-Lengths', `POST /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`, bad),
      raw('Content-Length: abc', `POST /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nContent-Length: abc\r\n\r\n`, bad),
      raw('Content-Length: -1', `POST /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nContent-Length: -1\r\n\r\n`, bad),
      raw('Transfer-Encoding: gzip, chunked, gzip', `POST /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nTransfer-Encoding: chunked, gzip\r\n\r\n`, { ...bad, status: [400, 405], codes: ['UNSUPPORTED'] }),
      raw('header line without colon', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nNoColonHere\r\n\r\n`, bad),
      raw('space before colon', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nX-A : b\r\n\r\n`, bad),
      raw('NUL in a header value', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nX-A: a\0b\r\n\r\n`, bad),
      raw('invalid header name', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nX(A): b\r\n\r\n`, bad),
      raw('obs-fold', `GET /v2/ HTTP/1.1\r\n${host}\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n`, { ...bad, status: [200, 400] }),
      raw('bare LF line ends', `GET /v2/ HTTP/1.1\n${host}\nConnection: close\n\n`, { ...bad, status: [200, 400] }),
      raw('leading empty lines', `\r\n\r\nGET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`, { status: [200, 400], codes: ['UNSUPPORTED'] }),
      raw('CONNECT', `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n`, { status: [400, 404, 405], codes: ['UNSUPPORTED', 'NOT_FOUND'], mayClose: true }),
      raw('Upgrade: websocket', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, {
        status: [200, 400, 426],
        mayClose: true,
        keepAlive: true,
      }),
      raw('Expect: something-else', `GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nExpect: something-else\r\n\r\n`, { status: [417] }),
      raw('incomplete headers, then EOF', `GET /v2/ HTTP/1.1\r\n${host}\r\n`, bad, true),
      raw('incomplete request line, then EOF', 'GET /v2/', bad, true),
      raw('nothing, then EOF', '', bad, true),
      raw('Latin-1 bytes in a header value', Buffer.concat([Buffer.from(`GET /v2/ HTTP/1.1\r\n${host}\r\nConnection: close\r\nX-A: `), Buffer.from([0xe9, 0xff]), Buffer.from('\r\n\r\n')]), {
        status: [200, 400],
        codes: ['UNSUPPORTED'],
      }),
    ];
    for (let i = 0; i < 6; i++) {
      cases.push(raw(`random bytes #${i}`, seededBytes(`bad-input-garbage-${i}`, [16, 64, 512, 4096, 20_000, 100_000][i]), bad, i % 2 === 0));
    }
    const problems = await run(cases);
    assert.deepEqual(problems, []);
  });

  it('survives a real TLS handshake attempt on the plain-HTTP port, then keeps answering', async () => {
    const started = performance.now();
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'registry.example' });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve('timeout');
      }, 5_000);
      socket.on('secureConnect', () => {
        clearTimeout(timer);
        socket.destroy();
        resolve('secureConnect');
      });
      socket.on('error', (error) => {
        clearTimeout(timer);
        resolve(`error: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        resolve('close');
      });
    });
    assert.match(outcome, /^(error|close)/, `TLS client: ${outcome}`);
    assert.ok(performance.now() - started < 5_000);
    const problems = await run([req('GET', '/v2/', { status: [200] })]);
    assert.deepEqual(problems, []);
  });

  it('never reached upstream, wrote or read outside the store root, or logged an internal error', () => {
    assert.ok(sent >= 300, `corpus has ${sent} requests`);
    assert.deepEqual(
      world.proxy.requests.map((r) => `${r.method} ${r.path}`),
      [],
      'no bad request may reach upstream',
    );
    // Outside the store: byte for byte, time for time, what it was.
    const outsideAfter = snapshot(work.path, root);
    assert.deepEqual(Object.fromEntries(outsideAfter), Object.fromEntries(outsideBefore));
    // Inside the store: only the three top-level areas, only digests under blobs/, only valid names under repositories/.
    const top = readdirSync(root).sort();
    assert.deepEqual(top.filter((entry) => !['_tmp', '_access-clock', 'blobs', 'repositories'].includes(entry)), [], `store root holds ${top.join(', ')}`);
    // The access clock's journal (no Redis here): the journal and its compaction's temp files, nothing a request named.
    if (top.includes('_access-clock')) for (const { rel } of listRecursive(path.join(root, '_access-clock'))) assert.match(rel, /^journal(\.\d+\.[0-9a-f]{8}\.tmp)?$/, `_access-clock/${rel}`);
    for (const { rel, isDir } of listRecursive(path.join(root, 'blobs'))) {
      const pattern = isDir ? /^(sha256|sha512)(\/[0-9a-f]{2})?$/ : /^(sha256\/([0-9a-f]{2})\/\2[0-9a-f]{62}|sha512\/([0-9a-f]{2})\/\3[0-9a-f]{126})$/;
      assert.match(rel, pattern, `blobs/${rel}`);
    }
    const repositories = path.join(root, 'repositories');
    for (const { rel } of listRecursive(repositories)) {
      const segments = rel.split(path.sep);
      const mark = segments.findIndex((segment) => ['_manifests', '_tags', '_layers', '_access'].includes(segment));
      const nameSegments = mark < 0 ? segments : segments.slice(0, mark);
      assert.ok(
        nameSegments.every((segment) => COMPONENT.test(segment)),
        `repositories/${rel}: a repository path outside the name grammar`,
      );
      if (mark >= 0) assert.equal(nameSegments.join('/'), NAME, `repositories/${rel}: only the pulled repository`);
      if (segments[mark] === '_tags' && segments.length > mark + 1) assert.equal(segments[mark + 1], TAG, `repositories/${rel}`);
      if (segments[mark] === '_access') assert.equal(segments.length, mark + 1, `repositories/${rel}`);
      if ((segments[mark] === '_manifests' || segments[mark] === '_layers') && segments.length > mark + 1) assert.match(segments.slice(mark + 1).join('/'), /^sha256(\/[0-9a-f]{64})?$/);
    }
    assert.deepEqual(tempFiles(root), [], 'no temp files left');
    const internal = mirror.logLines().filter((line) => line.level === 'error' || line.message === 'unexpected error' || (line.message === 'request' && line.status >= 500));
    assert.deepEqual(internal, [], 'no internal errors logged');
  });

  it('still serves: /v2/ 200, a real pull of the image, and the process is alive', async () => {
    assert.equal(mirror.process.hasExited(), false, 'mirror process exited');
    const base = await fetch(`${mirror.url}/v2/`);
    assert.equal(base.status, 200);
    await base.arrayBuffer();
    const manifest = await fetch(`${mirror.url}/v2/${NAME}/manifests/${TAG}`, { headers: { Accept: image.mediaType } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest);
    assert.deepEqual(Buffer.from(await manifest.arrayBuffer()), image.manifestBytes);
    const blob = await fetch(`${mirror.url}/v2/${NAME}/blobs/${layer.digest}`);
    assert.equal(blob.status, 200);
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), layer.bytes);
  });
});

/** The first flight of a real TLS client: the bytes `tls.connect` sends, caught by a plain TCP server. */
async function captureClientHello(): Promise<Buffer> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const captured = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk);
        socket.destroy();
      });
    });
  });
  const client = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'registry.example' });
  client.on('error', () => {});
  const hello = await captured;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.equal(hello[0], 0x16, 'a TLS handshake record');
  return hello;
}
