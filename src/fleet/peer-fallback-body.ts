import { skipBytes } from '../util/skip-bytes.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { fleetDuplicateFetches } from '../metrics/metrics.ts';
import type { FillBody } from '../proxy/blob-fill.ts';
import { RegistryError } from '../registry/errors.ts';
import type { FillHolder } from './fill-coordinator.ts';
import type { PeerBlobAnswer, PeerBlobBody } from './peer-client.ts';

/** Why a follower fetched upstream a blob another instance was downloading (pullmirror_fleet_duplicate_fetches_total). */
export type PeerFallbackReason = 'peer_unreachable' | 'peer_refused' | 'peer_failed' | 'peer_stalled' | 'peer_bad_bytes';

/** Where a follower's bytes of one blob can come from. */
export interface BlobSources {
  /** The holder's download from its peer listener, from `offset` on; `signal` gives the attempt up. */
  peer: (offset: number, signal: AbortSignal) => Promise<PeerBlobAnswer>;
  /**
   * The blob from upstream from `offset` on, resumed across dropped connections
   * (ResumableBlobBody); the answer's `offset` is where its chunks begin (0 from an upstream
   * that ignores the Range).
   */
  upstream: (offset: number) => Promise<{ body: FillBody; offset: number }>;
  /**
   * After the stream of the peer `after` broke (it may have died): the instance the download's
   * lease moved to within `withinMs`, and a way to read its download; undefined when it did not
   * move in time, or moved to this instance (awaitNextHolder).
   */
  nextPeer?: (after: FillHolder, withinMs: number) => Promise<{ holder: FillHolder; peer: BlobSources['peer'] } | undefined>;
}

export interface PeerFallbackOptions {
  sources: BlobSources;
  /** How long a peer that does not answer is tried again before upstream is asked (redis.fleet.peers.fallback). */
  fallbackMs: number;
  /** Whether the blob was stored meanwhile: then there is nothing to fetch. */
  stored: () => Promise<boolean>;
  /** Told each time upstream is asked instead of the peer (a log line). */
  onFallback: (reason: PeerFallbackReason, info: { offset: number; error: string }) => void;
  /** The writer's position: the first byte wanted. */
  offset?: number;
  /**
   * The peer's answer already had (the caller chose among several peers, PeerCopies.fromRecord):
   * read from at once, not asked again.
   */
  opened?: PeerBlobBody;
  /** Upstream at once, without asking the peer: it sent bytes that did not verify before. */
  avoidPeer?: PeerFallbackReason;
  /** The holder `sources.peer` reads: the one whose lease must move for nextPeer. */
  holder?: FillHolder;
  /** Told when the bytes come from the download's new holder from now on (a log line). */
  onSwitch?: (info: { instance: string; offset: number; error: string }) => void;
}

/** The first wait between two attempts at a peer that did not answer; doubled each time. */
const FIRST_RETRY_MS = 100;
/** The least an attempt is given, even when the fallback time is nearly over. */
const MIN_ATTEMPT_MS = 250;

/**
 * A follower's bytes of a blob another instance is downloading: from the holder's peer
 * listener while it answers, from upstream when it does not. Undefined when neither is needed:
 * the holder has nothing to stream (404: its download is over) or the blob was stored while
 * the peer was being tried.
 *
 * A peer that cannot be reached (no live heartbeat, refused, silent) is tried again until
 * `fallbackMs` passed, one that answers 401 (a secret not shared) not at all; then upstream is
 * asked for the whole blob. Either way, one duplicate fetch, counted by reason.
 */
export async function openPeerFallbackBody(options: PeerFallbackOptions): Promise<FillBody | undefined> {
  const offset = options.offset ?? 0;
  let reason: PeerFallbackReason = options.avoidPeer ?? 'peer_unreachable';
  let error = options.avoidPeer ? 'not asked again' : 'not answered';
  if (options.opened) return new PeerFallbackBody({ body: options.opened, offset, fromPeer: true }, options);
  const deadline = performance.now() + options.fallbackMs;
  for (let attempt = 0; !options.avoidPeer; attempt++) {
    const answer = await askPeer(options.sources.peer, offset, Math.max(deadline - performance.now(), MIN_ATTEMPT_MS));
    if (answer.kind === 'found') return new PeerFallbackBody({ body: answer.body, offset, fromPeer: true }, options);
    if (answer.kind === 'absent') return undefined;
    error = answer.reason;
    if (answer.refused) {
      reason = 'peer_refused';
      break;
    }
    const wait = Math.min(FIRST_RETRY_MS * 2 ** attempt, deadline - performance.now());
    if (wait <= 0) break;
    await delay(wait);
  }
  if (await options.stored()) return undefined;
  return new PeerFallbackBody(await fallBack(options, reason, offset, error), options);
}

/** One attempt at the peer, given up after `ms` unless its answer's head came (the body then runs on its own timeout). */
async function askPeer(peer: BlobSources['peer'], offset: number, ms: number): Promise<PeerBlobAnswer> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer within ${ms} ms`)), ms);
  try {
    return await peer(offset, controller.signal);
  } finally {
    clearTimeout(timer);
  }
}

/** Upstream from `offset`, counted as a duplicate fetch. */
async function fallBack(options: PeerFallbackOptions, reason: PeerFallbackReason, offset: number, error: string): Promise<{ body: FillBody; offset: number; fromPeer: false }> {
  fleetDuplicateFetches.labels(reason).inc();
  options.onFallback(reason, { offset, error });
  const answer = await options.sources.upstream(offset);
  return { ...answer, fromPeer: false };
}

/**
 * The bytes of one blob, from a peer until it fails, then from upstream at the position
 * reached: a peer that dies mid-stream, stalls past redis.fleet.peers.timeout (PeerClient's
 * body timeout) or sends more than it announced costs its readers nothing but the switch. A
 * stream that broke (the holder may have died) goes on from the download's new holder instead
 * when the lease moves within redis.fleet.peers.fallback: no duplicate fetch then. The writer
 * still checks size and digest at the end (BlobFill): a peer's wrong bytes of the right length
 * fail the fill there, and its readers' connections break.
 */
class PeerFallbackBody implements FillBody {
  readonly size: number | undefined;
  private readonly options: PeerFallbackOptions;
  private current: { body: FillBody; offset: number; fromPeer: boolean };
  /** The instance `current` streams from, when it is a peer and known. */
  private holder?: FillHolder;
  private closed = false;

  constructor(first: { body: FillBody; offset: number; fromPeer: boolean }, options: PeerFallbackOptions) {
    this.current = first;
    this.size = first.body.size;
    this.options = options;
    this.holder = first.fromPeer ? options.holder : undefined;
  }

  close(): void {
    this.closed = true;
    this.current.body.close();
  }

  async *chunks(): AsyncGenerator<Buffer, void, undefined> {
    let position = this.options.offset ?? 0;
    try {
      for (;;) {
        // Bytes of this source before `position` were delivered already (an upstream that ignored the Range).
        try {
          for await (const chunk of skipBytes(this.current.body.chunks(), position - this.current.offset)) {
            position += chunk.length;
            yield chunk;
          }
          return;
        } catch (error) {
          // Upstream's own failures are past mending here (ResumableBlobBody resumed what it could).
          if (this.closed || !this.current.fromPeer) throw error;
          this.current.body.close();
          const reason = peerFault(error);
          const next = reason === 'peer_failed' ? await this.fromNextHolder(position, (error as Error).message) : undefined;
          // Closed while the lease was awaited: no new source is opened.
          if (this.closed) {
            next?.body.close();
            throw new Error('transfer closed', { cause: error });
          }
          this.current = next ?? (await fallBack(this.options, reason, position, (error as Error).message));
          if (this.closed) throw new Error('transfer closed', { cause: error });
        }
        if (this.current.body.size !== undefined && this.size !== undefined && this.current.body.size !== this.size) {
          throw new RegistryError('SIZE_INVALID', `the blob's size from its next source, ${this.current.body.size}, is not the ${this.size} bytes first announced`, { status: 502 });
        }
      }
    } finally {
      this.current.body.close();
    }
  }

  /** The download's new holder's stream from `position`, when its lease moved in time and it answers. */
  private async fromNextHolder(position: number, error: string): Promise<{ body: FillBody; offset: number; fromPeer: true } | undefined> {
    const { sources, fallbackMs } = this.options;
    const next = this.holder && sources.nextPeer ? await sources.nextPeer(this.holder, fallbackMs) : undefined;
    if (!next || this.closed) return undefined;
    const answer = await askPeer(next.peer, position, Math.max(fallbackMs, MIN_ATTEMPT_MS));
    if (answer.kind !== 'found') return undefined;
    this.holder = next.holder;
    this.options.onSwitch?.({ instance: next.holder.instance, offset: position, error });
    return { body: answer.body, offset: position, fromPeer: true };
  }
}

/** What a peer's failed stream says of the peer. */
function peerFault(error: unknown): PeerFallbackReason {
  if ((error as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT') return 'peer_stalled';
  // More bytes than it announced (PeerBlobBody): what it sent is not the blob.
  if (error instanceof RegistryError && error.code === 'SIZE_INVALID') return 'peer_bad_bytes';
  return 'peer_failed';
}
