import type { FillCoordinator, HolderState } from './fill-coordinator.ts';

/** What a watcher makes of a look at the claim: its answer, or when to look again by itself. */
export type ClaimLook<T> = { answer: T } | { lookAgainInMs: number };

/**
 * Reads the claim on `digest`'s download until `look` has an answer: now, once per state change
 * the holders publish (FillCoordinator.watchBlob), and else when `look` says (a claim's expiry:
 * a dead holder publishes nothing) — Redis work per event, not on a clock. `look` gets the
 * milliseconds left of `withinMs` and answers when none are.
 */
export async function watchClaim<T>(coordinator: FillCoordinator, digest: string, withinMs: number, look: (state: HolderState, leftMs: number) => ClaimLook<T>): Promise<T> {
  const deadline = performance.now() + withinMs;
  let wakes = 0;
  let wake: (() => void) | undefined;
  const unwatch = coordinator.watchBlob(digest, () => {
    wakes++;
    wake?.();
  });
  try {
    for (;;) {
      const mark = wakes;
      const next = look(await coordinator.blobHolder(digest), deadline - performance.now());
      if ('answer' in next) return next.answer;
      // An event while Redis was read: look again at once.
      if (wakes !== mark) continue;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, next.lookAgainInMs);
        wake = done;
      });
    }
  } finally {
    unwatch();
  }
}
