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
 *
 * The pending series are indexed once (PendingSeries), for latest state and roll-ups
 * (./rollups.ts) alike, and both keep their fields in arrays by slot: ~320 bytes of heap per
 * pending series in all where objects and maps per series cost ~1.5 KB (measured in ./rollups.ts).
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

/**
 * The series pending since the last compaction, each with a slot: 0, 1, 2… in order of first
 * sight. Pending latest state (PendingLatest) and roll-up folds (./rollups.ts) keep their
 * per-series fields in columns indexed by slot, so a series costs one map entry here and one
 * array element per field, not objects, maps and boxed numbers of its own.
 */
export class PendingSeries {
  /** Device id (unique across tenants: ids are interned with their tenant) → key id → slot. */
  private readonly byDevice = new Map<number, Map<number, number>>();
  /** The device of the last lookup and its keys: a device's points come together. */
  private lastDevice = -1;
  private lastKeys: Map<number, number> | undefined;
  readonly tenant: number[] = [];
  readonly device: number[] = [];
  readonly key: number[] = [];

  /** The series' slot, taken on first sight. */
  slot(t: number, d: number, k: number): number {
    let keys = this.lastKeys;
    if (d !== this.lastDevice || keys === undefined) {
      keys = this.byDevice.get(d);
      if (keys === undefined) this.byDevice.set(d, keys = new Map());
      this.lastDevice = d;
      this.lastKeys = keys;
    }
    let s = keys.get(k);
    if (s === undefined) {
      s = this.device.length;
      keys.set(k, s);
      this.tenant.push(t);
      this.device.push(d);
      this.key.push(k);
    }
    return s;
  }

  get size(): number {
    return this.device.length;
  }

  clear(): void {
    this.byDevice.clear();
    this.lastDevice = -1;
    this.lastKeys = undefined;
    this.tenant.length = 0;
    this.device.length = 0;
    this.key.length = 0;
  }
}

/** The newest point per pending series, by slot of a PendingSeries (ts -Infinity: none yet). */
export class PendingLatest {
  private readonly ts: number[] = [];
  private readonly messageId: string[] = [];
  private readonly v: SqlValue[] = [];
  private count = 0;

  constructor(private readonly series: PendingSeries) {}

  offer(s: number, ts: number, messageId: string, v: SqlValue): void {
    while (this.ts.length <= s) {
      this.ts.push(-Infinity);
      this.messageId.push('');
      this.v.push(0);
    }
    const cur = this.ts[s];
    if (cur === -Infinity) this.count++;
    else if (!wins(ts, messageId, cur, this.messageId[s])) return;
    this.ts[s] = ts;
    this.messageId[s] = messageId;
    this.v[s] = v;
  }

  /** Series with a pending value. */
  get size(): number {
    return this.count;
  }

  *entries(): Generator<LatestEntry> {
    const { tenant, device, key } = this.series;
    for (let s = 0; s < this.ts.length; s++) {
      if (this.ts[s] === -Infinity) continue;
      yield { tenantId: tenant[s], deviceId: device[s], keyId: key[s], ts: this.ts[s], messageId: this.messageId[s], v: this.v[s] };
    }
  }

  /** Forgets the values; the owner of the PendingSeries clears it too. */
  clear(): void {
    this.ts.length = 0;
    this.messageId.length = 0;
    this.v.length = 0;
    this.count = 0;
  }
}
