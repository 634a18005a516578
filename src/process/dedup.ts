/**
 * @module De-duplication by message id within a time window. Stores are idempotent on
 * (device, key, device time, message id), which covers replays from the log; this window
 * covers a device that retries a message WITHOUT `ts`: each try gets its own receive time,
 * so only the id tells the copies apart. The first copy stored wins; later copies within
 * `windowMs` (by receive time) are dropped and counted. An id is remembered only after its
 * batch was stored, so a failed write never turns a message into a "duplicate".
 * Bounded: at most `maxIds` ids are kept (oldest forgotten first).
 *
 * Surviving a restart: the store records every batch's message ids with their receive time in
 * the batch's own transaction (Store.recentMessageIds), so what is stored and what is
 * remembered can never disagree; processing `load`s the window from there when it starts (also
 * on the node that takes processing over in a cluster) and prunes the record as the window
 * slides (Store.forgetMessageIds). The hot path stays in memory: one Map lookup per message.
 */
import type { RawMessage, SeenMessageId } from '../stores/store.js';

/** The identity of a message for de-duplication: tenant, device and message id. */
export function messageKey(m: Pick<RawMessage, 'tenant' | 'device' | 'messageId'>): string {
  return `${m.tenant}\u0000${m.device}\u0000${m.messageId}`;
}

export class DedupWindow {
  /** Insertion order = receive order, so the oldest entries are first. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly windowMs: number, private readonly maxIds = 1_000_000) {}

  /** True when a message with this tenant, device and message id was stored within the window. */
  isDuplicate(m: Pick<RawMessage, 'tenant' | 'device' | 'messageId' | 'receiveTime'>): boolean {
    const at = this.seen.get(messageKey(m));
    return at !== undefined && m.receiveTime - at <= this.windowMs;
  }

  /** Number of ids held. */
  get size(): number {
    return this.seen.size;
  }

  /** Fills the window from the store's record (oldest first), e.g. at start. */
  load(ids: SeenMessageId[]): void {
    this.remember(ids);
  }

  /** Remembers stored messages and forgets what fell out of the window or over the bound. */
  remember(stored: Array<Pick<RawMessage, 'tenant' | 'device' | 'messageId' | 'receiveTime'>>): void {
    let newest = 0;
    for (const e of stored) {
      const k = messageKey(e);
      const at = this.seen.get(k);
      // The first copy's time counts; one stored again after the window restarts it (at the end: newest).
      if (at === undefined || e.receiveTime - at > this.windowMs) {
        this.seen.delete(k);
        this.seen.set(k, e.receiveTime);
      }
      if (e.receiveTime > newest) newest = e.receiveTime;
    }
    for (const [k, at] of this.seen) {
      if (this.seen.size <= this.maxIds && newest - at <= this.windowMs) break;
      this.seen.delete(k);
    }
  }
}
