/**
 * @module Runs calls for the same key one after another (every Log backend serialises reads
 * per consumer group with it, so successive reads hand out successive records). A failed call
 * does not block the next one.
 */
export class OneAtATime {
  private readonly chains = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.chains.get(key) ?? Promise.resolve()).then(fn);
    this.chains.set(key, next.catch(() => undefined));
    return next;
  }

  /** Resolves once every call queued so far has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
  }
}
