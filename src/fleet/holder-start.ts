import type { FillCoordinator, FillHolder } from './fill-coordinator.ts';
import { watchClaim } from './claim-watch.ts';
import { fillFailureError } from './fill-failure.ts';

/** How long after a claim's expiry it is looked at: the holder's renewal may be in flight. */
const EXPIRY_MARGIN_MS = 50;
/** The shortest wait between two looks (a claim about to expire, a burst of events). */
const MIN_LOOK_MS = 20;

/**
 * Where another instance's download of a blob stands, for a follower that will copy it from
 * that instance's peer listener (instances on stores of their own): `started` once the holder
 * has upstream's answer (before that its listener has nothing to send), `free` when no one
 * holds the claim any more (committed, abandoned, or the holder died and its claim expired),
 * `failed` when the holder of the epoch followed failed (with the failure its followers share),
 * `unknown` when Redis cannot tell or the holder did not start within `waitMs`.
 */
export type HolderStart =
  | { kind: 'started'; holder: FillHolder; size?: number }
  | { kind: 'free' }
  | { kind: 'failed'; error: Error }
  | { kind: 'unknown' };

/**
 * Waits until the holder of `digest`'s download has started it (or the claim went away, or the
 * holder failed): it reads the claim once per event the holder publishes
 * (FillCoordinator.watchBlob) and else when the claim would expire (a dead holder publishes
 * nothing), at most until `waitMs` has passed. `followed`: the holder the claim named, whose
 * failure is this follower's.
 */
export function holderStart(coordinator: FillCoordinator, digest: string, followed: FillHolder | undefined, waitMs: number): Promise<HolderStart> {
  return watchClaim<HolderStart>(coordinator, digest, waitMs, (state, left) => {
    if (state.kind === 'unknown') return { answer: { kind: 'unknown' } };
    if (state.kind === 'free') {
      // A failure concerns the holder of its epoch: one of a later holder is not this follower's.
      if (state.failure?.epoch !== undefined && state.failure.epoch === followed?.epoch) return { answer: { kind: 'failed', error: fillFailureError(state.failure) } };
      return { answer: { kind: 'free' } };
    }
    if (state.started && state.holder) return { answer: { kind: 'started', holder: state.holder, size: state.size } };
    if (left <= 0) return { answer: { kind: 'unknown' } };
    const untilExpiry = state.expiresInMs === undefined ? left : state.expiresInMs + EXPIRY_MARGIN_MS;
    return { lookAgainInMs: Math.max(MIN_LOOK_MS, Math.min(untilExpiry, left)) };
  });
}
