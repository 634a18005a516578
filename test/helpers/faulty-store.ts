/**
 * @module A Store wrapper that fails or stalls writeBatch on command (fault tests): wraps the
 * real store, every other call passes through. Modes:
 * - `ok`: pass through;
 * - `fail`: every write rejects with STORE_UNAVAILABLE (the store is down);
 * - `fail-data`: writes holding points or raw messages reject, dead-letter-only writes pass
 *   (the store refuses the data path, e.g. a broken partition, while the queue still works);
 * - `stall`: writes wait until the mode changes, then go on (a store that hangs).
 */
import { FluxgateError } from '../../src/core/errors.js';
import type { Store, WriteBatch } from '../../src/stores/store.js';

export type FaultMode = 'ok' | 'fail' | 'fail-data' | 'stall';

export class StoreFaults {
  mode: FaultMode = 'ok';
  /** Writes rejected so far. */
  failed = 0;
  /** Writes that waited in a stall. */
  stalled = 0;
  private waiters: Array<() => void> = [];

  set(mode: FaultMode): void {
    this.mode = mode;
    if (mode !== 'stall') {
      for (const w of this.waiters.splice(0)) w();
    }
  }

  /** The wrapper for startNode's `wrapStore`. */
  wrap = (inner: Store): Store => {
    const write = async (batch: WriteBatch): Promise<void> => {
      if (this.mode === 'stall') {
        this.stalled++;
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
      if (this.mode === 'fail' || (this.mode === 'fail-data' && (batch.points.length > 0 || batch.messages.length > 0))) {
        this.failed++;
        throw new FluxgateError('STORE_UNAVAILABLE', `injected store failure (${this.mode})`);
      }
      return inner.writeBatch(batch);
    };
    return new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'writeBatch') return write;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  };
}
