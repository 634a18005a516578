/**
 * @module Latest state not yet folded into the `latest` table. Points are durable in
 * `points_recent` as soon as writeBatch commits; the newest value per series since the last
 * compaction is kept here and written to `latest` by the compaction, in the same transaction
 * that moves the points. Upserting `latest` per batch cost as much as writing the points.
 * Reads (./read.ts) merge the table with the newest staged points, so they need nothing from
 * this thread; after a crash the pending set is rebuilt from points_recent.
 *
 * Last write wins by device time; at equal device time the larger message id wins, so the
 * outcome is the same whatever the arrival order, and a replay changes nothing.
 */
import type { SqlValue } from './codec.js';

export interface LatestEntry { tenantId: number; deviceId: number; keyId: number; ts: number; messageId: string; v: SqlValue }

/**
 * Last write wins by device time; at equal time the larger message id wins. JS compares
 * UTF-16 units where SQLite compares UTF-8 bytes: the same order except between characters
 * above U+FFFF and U+E000–U+FFFF, which message ids do not mix in practice.
 */
export function wins(ts: number, messageId: string, otherTs: number, otherMessageId: string): boolean {
  return ts > otherTs || (ts === otherTs && messageId > otherMessageId);
}

export class PendingLatest {
  /** Device id (unique across tenants: ids are interned with their tenant) → key id → entry. */
  private readonly byDevice = new Map<number, Map<number, LatestEntry>>();
  private count = 0;

  offer(tenantId: number, deviceId: number, keyId: number, ts: number, messageId: string, v: SqlValue): void {
    let keys = this.byDevice.get(deviceId);
    if (!keys) this.byDevice.set(deviceId, keys = new Map());
    const cur = keys.get(keyId);
    if (!cur) {
      keys.set(keyId, { tenantId, deviceId, keyId, ts, messageId, v });
      this.count++;
    } else if (wins(ts, messageId, cur.ts, cur.messageId)) {
      cur.ts = ts;
      cur.messageId = messageId;
      cur.v = v;
    }
  }

  get size(): number {
    return this.count;
  }

  *entries(): Generator<LatestEntry> {
    for (const keys of this.byDevice.values()) yield* keys.values();
  }

  clear(): void {
    this.byDevice.clear();
    this.count = 0;
  }
}
