/**
 * Runs one call per key at a time: callers that ask for a key while its call is running share
 * that call's result. This is what turns N concurrent misses into one upstream request.
 */
export class SingleFlight<V> {
  private readonly running = new Map<string, Promise<V>>();

  do(key: string, fn: () => Promise<V>): Promise<V> {
    const existing = this.running.get(key);
    if (existing) return existing;
    const call = (async () => {
      try {
        return await fn();
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, call);
    return call;
  }
}
