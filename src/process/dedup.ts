/**
 * @module De-duplication by message id within a time window. Stores are idempotent on
 * (device, key, device time, message id), which covers replays from the log; this window
 * covers a device that retries a message WITHOUT `ts`: each try gets its own receive time,
 * so only the id tells the copies apart. The first copy stored wins; later copies within
 * `windowMs` (by receive time) are dropped and counted. An id is remembered only after its
 * batch was stored, so a failed write never turns a message into a "duplicate".
 * Bounded: at most `maxIds` ids are kept (oldest forgotten first).
 * Not yet: the window is in memory, so a retry that straddles a node restart is stored twice
 * when it carries no `ts` (issue 6 asks for a window that survives a restart).
 */
import type { RawMessage } from '../stores/store.js';

/** The identity of a message for de-duplication: tenant, device and message id. */
export function messageKey(m: Pick<RawMessage, 'tenant' | 'device' | 'messageId'>): string {
  return `${m.tenant}\u0000${m.device}\u0000${m.messageId}`;
}

export class DedupWindow {
  /** Insertion order = receive order, so the oldest entries are first. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly windowMs: number, private readonly maxIds = 1_000_000) {}

  /** True when a message with this tenant, device and message id was stored within the window. */
  isDuplicate(m: RawMessage): boolean {
    const at = this.seen.get(messageKey(m));
    return at !== undefined && m.receiveTime - at <= this.windowMs;
  }

  /** Remembers stored messages and forgets what fell out of the window or over the bound. */
  remember(stored: RawMessage[]): void {
    let newest = 0;
    for (const e of stored) {
      const k = messageKey(e);
      if (!this.seen.has(k)) this.seen.set(k, e.receiveTime);
      if (e.receiveTime > newest) newest = e.receiveTime;
    }
    for (const [k, at] of this.seen) {
      if (this.seen.size <= this.maxIds && newest - at <= this.windowMs) break;
      this.seen.delete(k);
    }
  }
}
