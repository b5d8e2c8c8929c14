/**
 * How many file operations a store walk or sweep has queued at once. libuv runs them on 4
 * threads, which a serving mirror's blob reads share: 64 queued unlinks made a warm GET wait
 * behind them (its p99 went from 5 to 29 ms during a pass, bench -- scale); 8 keep the disk
 * busy as well.
 */
const PARALLEL = 8;

/** Runs fn over items, at most PARALLEL at a time. */
export async function mapLimited<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
