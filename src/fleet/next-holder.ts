import { watchClaim } from './claim-watch.ts';
import type { FillCoordinator, FillHolder } from './fill-coordinator.ts';

/**
 * How long after the old lease's expiry a waiter looks again by itself: a follower's takeover
 * claims 50 ms after it (RemoteFill) and publishes once it has its source; the event that says
 * so is a hint that may be lost.
 */
const TAKEOVER_GRACE_MS = 500;

/**
 * Waits, at most `withinMs`, for a blob download's lease to move from `from` (whose stream
 * broke: it may have died) to another instance that started the download; undefined when it
 * did not in time, or the new holder is this instance (`mine`: its own download, nothing to
 * stream). Answers at once when the old lease outlasts the wait: a live holder renews it, a dead
 * one's runs out only at its expiry, which is known.
 *
 * Redis is asked now and once per state change the holders publish (FillCoordinator.watchBlob),
 * plus once just after the old lease's expiry: no polling.
 */
export async function awaitNextHolder(options: {
  coordinator: FillCoordinator;
  digest: string;
  from: FillHolder;
  withinMs: number;
  mine: () => boolean;
}): Promise<FillHolder | undefined> {
  const { coordinator, digest, from } = options;
  if (options.mine()) return undefined;
  return watchClaim<FillHolder | undefined>(coordinator, digest, options.withinMs, (state, left) => {
    if (options.mine()) return { answer: undefined };
    let lookInMs = left;
    if (state.kind === 'held' && state.holder && state.holder.epoch !== from.epoch) {
      if (state.started) return { answer: state.holder };
    } else if (state.kind === 'held' && state.holder?.epoch === from.epoch && state.expiresInMs !== undefined) {
      if (state.expiresInMs > left) return { answer: undefined };
      lookInMs = Math.min(left, state.expiresInMs + TAKEOVER_GRACE_MS);
    }
    if (left <= 0) return { answer: undefined };
    return { lookAgainInMs: lookInMs };
  });
}
