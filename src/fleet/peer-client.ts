import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { PeerAddress } from '../config/addr.ts';
import type { FillBody } from '../proxy/blob-fill.ts';
import type { Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import type { PeerAuth } from './peer-auth.ts';
import type { PeerDirectory } from './peer-directory.ts';

/** The peer listener's blob route (served by peer-router.ts). */
export const peerBlobPath = (digest: Digest): string => `/peer/v1/blobs/${digest.value}`;

/**
 * What asking a peer for a blob came to: its bytes as they come (`found`), a live peer that has
 * neither the blob nor a download of it (`absent`: a 404), or no answer worth anything
 * (`unreachable`: no live heartbeat names the instance, refused, timed out, an error status).
 * Expected outcomes, as values: the caller goes on to the next source.
 */
export type PeerBlobAnswer =
  | { kind: 'found'; body: PeerBlobBody }
  | { kind: 'absent' }
  /** `refused`: it answered 401 or 403 (a secret not shared), which no retry mends. */
  | { kind: 'unreachable'; reason: string; refused?: boolean };

/**
 * Fetches blobs from the other instances of the fleet (redis.fleet.peers). Only instances a
 * live heartbeat names are dialed (PeerDirectory), each request signed (PeerAuth) and bounded:
 * the connection, the response head and every read of the body must come within `timeoutMs`
 * (redis.fleet.peers.timeout), and `signal` ends it at once. No redirect is followed.
 *
 * Nothing a peer sends is trusted: the body is a FillBody, written through a BlobWriter that
 * checks size and digest before anything is committed or a reader gets the last byte
 * (BlobFill), exactly as an upstream body is.
 */
export class PeerClient {
  private readonly auth: PeerAuth;
  private readonly directory: PeerDirectory;
  private readonly agent: Agent;

  constructor(options: { auth: PeerAuth; directory: PeerDirectory; timeoutMs: number }) {
    this.auth = options.auth;
    this.directory = options.directory;
    this.agent = new Agent({
      connections: 64,
      keepAliveTimeout: 30_000,
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /** Asks the instance `instance` (a lease holder's name) for a blob, from byte `offset` on. */
  async openBlob(instance: string, digest: Digest, options: { offset?: number; signal?: AbortSignal } = {}): Promise<PeerBlobAnswer> {
    const address = await this.directory.addressOf(instance);
    if (!address) return { kind: 'unreachable', reason: 'no live heartbeat names its peer address' };
    return this.openBlobAt(address, digest, options);
  }

  private async openBlobAt(address: PeerAddress, digest: Digest, options: { offset?: number; signal?: AbortSignal }): Promise<PeerBlobAnswer> {
    const target = peerBlobPath(digest);
    const offset = options.offset ?? 0;
    let response;
    try {
      response = await request(`http://${address.authority}${target}`, {
        method: 'GET',
        dispatcher: this.agent,
        headers: { authorization: this.auth.sign('GET', target), ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) },
        signal: options.signal,
      });
    } catch (error) {
      return { kind: 'unreachable', reason: (error as Error).message };
    }
    const { statusCode, headers, body } = response;
    const single = (name: string) => (typeof headers[name] === 'string' ? (headers[name]) : undefined);
    if (statusCode === 404) {
      await body.dump().catch(() => {});
      return { kind: 'absent' };
    }
    let size: number | undefined;
    if (statusCode === 200 && offset === 0) {
      const length = single('content-length');
      size = length !== undefined && /^\d{1,15}$/.test(length) ? Number(length) : undefined;
    } else if (statusCode === 206 && offset > 0) {
      const range = /^bytes (\d{1,15})-\d{1,15}\/(\d{1,15})$/.exec(single('content-range') ?? '');
      if (range && Number(range[1]) === offset) size = Number(range[2]);
      else {
        body.destroy();
        return { kind: 'unreachable', reason: `answered a range other than bytes=${offset}-` };
      }
    } else {
      await body.dump().catch(() => {});
      return { kind: 'unreachable', reason: `answered ${statusCode}`, ...(statusCode === 401 || statusCode === 403 ? { refused: true } : {}) };
    }
    return { kind: 'found', body: new PeerBlobBody(body, offset, size) };
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }
}

/**
 * A peer's bytes of one blob from `offset` on, as a fill reads them (FillBody). It ends only
 * when every announced byte came; more than announced, a body cut short or a read that timed
 * out fails it. Whether the bytes are the blob's is the writer's to tell (BlobWriter.verify).
 */
export class PeerBlobBody implements FillBody {
  /** The whole blob's size as the peer announced it, when it did. */
  readonly size: number | undefined;
  readonly offset: number;
  private readonly body: Readable;
  private closed = false;

  constructor(body: Readable, offset: number, size: number | undefined) {
    this.body = body;
    this.offset = offset;
    this.size = size;
  }

  close(): void {
    this.closed = true;
    this.body.destroy();
  }

  async *chunks(): AsyncGenerator<Buffer, void, undefined> {
    let position = this.offset;
    try {
      for await (const raw of this.body) {
        const chunk = raw as Buffer;
        if (this.size !== undefined && position + chunk.length > this.size) {
          throw new RegistryError('SIZE_INVALID', `a peer sent more than the ${this.size} bytes it announced`, { status: 502 });
        }
        position += chunk.length;
        yield chunk;
      }
      if (this.closed) throw new Error('peer transfer closed');
      if (this.size !== undefined && position < this.size) throw new Error(`peer body ended after ${position} of ${this.size} bytes`);
    } finally {
      this.body.destroy();
    }
  }
}
