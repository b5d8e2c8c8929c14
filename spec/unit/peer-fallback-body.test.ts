/**
 * PeerFallbackBody's bookkeeping, which the end-to-end faults (spec/e2e/s3-peers.test.ts) cannot
 * all reach with a real upstream: an upstream that ignores the Range, a size that differs
 * between the peer and upstream, a peer refusing at once versus one tried until the fallback
 * time. The sources are bytes in memory: the subject is the order and offsets of its reads.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openPeerFallbackBody, type BlobSources, type PeerFallbackReason } from '../../src/fleet/peer-fallback-body.ts';
import type { PeerBlobBody } from '../../src/fleet/peer-client.ts';
import type { FillBody } from '../../src/proxy/blob-fill.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { seededBytes } from '../support/images.ts';

const blob = seededBytes('peer-fallback', 64 * 1024);

/** `bytes` from `offset` in chunks of 4 KiB; `failAt`: throws `error` once that many bytes of it went out. */
function memoryBody(bytes: Buffer, offset: number, failAt?: { at: number; error: Error }, size = bytes.length): FillBody & { closed: boolean } {
  return {
    size,
    closed: false,
    close() {
      this.closed = true;
    },
    async *chunks() {
      for (let position = offset; position < bytes.length; position += 4096) {
        if (failAt && position >= failAt.at) throw failAt.error;
        yield bytes.subarray(position, Math.min(position + 4096, bytes.length));
      }
    },
  };
}

async function drain(body: FillBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body.chunks()) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Sources whose peer answers as `peer` says, and whose upstream ignores the Range (answers from 0). */
function sources(peer: BlobSources['peer'], upstreamSize = blob.length) {
  const upstreamAsked: number[] = [];
  const value: BlobSources = {
    peer,
    upstream: async (offset) => {
      upstreamAsked.push(offset);
      return { body: memoryBody(blob, 0, undefined, upstreamSize), offset: 0 };
    },
  };
  return { value, upstreamAsked };
}

function options(s: BlobSources, fallbacks: PeerFallbackReason[], fallbackMs = 300) {
  return { sources: s, fallbackMs, stored: async () => false, onFallback: (reason: PeerFallbackReason) => void fallbacks.push(reason) };
}

const found = (body: FillBody) => ({ kind: 'found' as const, body: body as PeerBlobBody });

describe('PeerFallbackBody: a peer while it answers, upstream from the position reached when it does not', () => {
  it('a stream that stalls goes on from upstream at its offset; bytes an upstream that ignored the Range sends again are skipped', async () => {
    const stalled = Object.assign(new Error('body timeout'), { code: 'UND_ERR_BODY_TIMEOUT' });
    const fallbacks: PeerFallbackReason[] = [];
    const s = sources(async () => found(memoryBody(blob, 0, { at: 20 * 1024, error: stalled })));
    const body = await openPeerFallbackBody(options(s.value, fallbacks));
    assert.ok(body);
    assert.ok((await drain(body)).equals(blob), 'every byte once, in order');
    assert.deepEqual(fallbacks, ['peer_stalled']);
    assert.deepEqual(s.upstreamAsked, [20 * 1024]);
  });

  it('a peer that sends more than it announced is bad bytes; a peer that breaks off is a failure', async () => {
    for (const [error, reason] of [
      [new RegistryError('SIZE_INVALID', 'a peer sent more'), 'peer_bad_bytes'],
      [new Error('other side closed'), 'peer_failed'],
    ] as const) {
      const fallbacks: PeerFallbackReason[] = [];
      const s = sources(async () => found(memoryBody(blob, 0, { at: 8192, error })));
      assert.ok((await drain((await openPeerFallbackBody(options(s.value, fallbacks)))!)).equals(blob));
      assert.deepEqual(fallbacks, [reason]);
    }
  });

  it('a stream that broke goes on from the new holder at its offset when the lease moved: nothing fetched upstream', async () => {
    const fallbacks: PeerFallbackReason[] = [];
    const switched: number[] = [];
    const s = sources(async () => found(memoryBody(blob, 0, { at: 12 * 1024, error: new Error('other side closed') })));
    const asked: number[] = [];
    s.value.nextPeer = async (after) => {
      assert.deepEqual(after, { instance: 'a', epoch: 1 }, 'the lease must move from the holder whose stream broke');
      return { holder: { instance: 'b', epoch: 2 }, peer: async (offset) => (asked.push(offset), found(memoryBody(blob, offset))) };
    };
    const body = await openPeerFallbackBody({ ...options(s.value, fallbacks), holder: { instance: 'a', epoch: 1 }, onSwitch: (info) => void switched.push(info.offset) });
    assert.ok((await drain(body!)).equals(blob));
    assert.deepEqual({ asked, switched, fallbacks, upstream: s.upstreamAsked }, { asked: [12 * 1024], switched: [12 * 1024], fallbacks: [], upstream: [] });
  });

  it('a body already opened (a peer chosen among several) is read at once, not asked again; when it breaks, the next peer goes on at its offset', async () => {
    const fallbacks: PeerFallbackReason[] = [];
    let asked = 0;
    const s = sources(async () => {
      asked++;
      return found(memoryBody(blob, 0));
    });
    s.value.nextPeer = async () => ({ holder: { instance: 'next', epoch: 0 }, peer: async (offset) => found(memoryBody(blob, offset)) });
    const opened = memoryBody(blob, 0, { at: 12 * 1024, error: new Error('other side closed') }) as unknown as PeerBlobBody;
    const body = await openPeerFallbackBody({ ...options(s.value, fallbacks), holder: { instance: 'first', epoch: 0 }, opened });
    assert.ok((await drain(body!)).equals(blob), 'every byte once, in order');
    assert.equal(asked, 0, 'the first peer was not asked again');
    assert.deepEqual(fallbacks, []);
    assert.deepEqual(s.upstreamAsked, []);
  });

  it('upstream announcing another size than the peer fails the body (the writer would refuse it anyway)', async () => {
    const s = sources(async () => found(memoryBody(blob, 0, { at: 8192, error: new Error('reset') })), blob.length + 1);
    const body = await openPeerFallbackBody(options(s.value, []));
    await assert.rejects(drain(body!), (error: unknown) => error instanceof RegistryError && error.code === 'SIZE_INVALID');
  });

  it('a peer not reached is tried again until the fallback time, one refusing (401) once; then upstream from 0', async () => {
    let asked = 0;
    const fallbacks: PeerFallbackReason[] = [];
    const unreachable = sources(async () => (asked++, { kind: 'unreachable', reason: 'connect ECONNREFUSED' }));
    assert.ok((await drain((await openPeerFallbackBody(options(unreachable.value, fallbacks)))!)).equals(blob));
    assert.ok(asked >= 2, `tried ${asked} times`);
    let refusedAsked = 0;
    const refused = sources(async () => (refusedAsked++, { kind: 'unreachable', reason: 'answered 401', refused: true }));
    assert.ok((await drain((await openPeerFallbackBody(options(refused.value, fallbacks, 60_000)))!)).equals(blob));
    assert.equal(refusedAsked, 1);
    assert.deepEqual(fallbacks, ['peer_unreachable', 'peer_refused']);
    assert.deepEqual([unreachable.upstreamAsked, refused.upstreamAsked], [[0], [0]]);
  });

  it('nothing to fetch: the holder has nothing to stream (404), or the blob was stored while the peer was tried', async () => {
    const absent = sources(async () => ({ kind: 'absent' }));
    assert.equal(await openPeerFallbackBody(options(absent.value, [])), undefined);
    const unreachable = sources(async () => ({ kind: 'unreachable', reason: 'silent' }));
    assert.equal(await openPeerFallbackBody({ ...options(unreachable.value, []), stored: async () => true }), undefined);
    assert.deepEqual([absent.upstreamAsked, unreachable.upstreamAsked], [[], []]);
  });

  it('close() ends the source in use at once', async () => {
    const peerBody = memoryBody(blob, 0);
    const body = (await openPeerFallbackBody(options(sources(async () => found(peerBody)).value, [])))!;
    const chunks = body.chunks();
    await chunks.next();
    body.close();
    assert.ok(peerBody.closed);
    await chunks.return(undefined);
  });
});
