/**
 * @module What the embedded store keeps about messages besides their content, written in the
 * batch's transaction (./write.ts) and read by the reader connection:
 * - `seen_ids`: the message ids of each batch (raw messages that are not dead letters), keyed by
 *   receive time first so appends touch the last page and pruning is one range delete. Processing
 *   reloads its de-duplication window from it after a restart (src/process/dedup.ts).
 * - `device_seen`: per device, the greatest receive time and device time of its messages (last
 *   seen), and the newest snapshot cut (its device time and key names) when its project says
 *   snapshots replace latest state; latest() hides keys the cut lacks that are older than it.
 */
import type { DeadLetter, DeviceSeen, LatestValue, RawMessage, SeenMessageId, SnapshotCut } from '../store.js';
import type { Names } from './names.js';
import { NameKind, type Db } from './schema.js';

/** Rows per multi-row INSERT (one statement run per 100 rows instead of one per row). */
const IDS_PER_STATEMENT = 100;

export class SeenWriter {
  private readonly insertId;
  private readonly insertIds;
  private readonly params: unknown[] = new Array(IDS_PER_STATEMENT * 4);
  private readonly upsertSeen;
  private readonly upsertSeenMany;
  private readonly upsertCut;
  private readonly forget;

  constructor(db: Db, private readonly names: Names) {
    this.insertId = db.prepare('INSERT OR IGNORE INTO seen_ids (receive_time, tenant_id, device_id, message_id) VALUES (?, ?, ?, ?)');
    this.insertIds = db.prepare(`INSERT OR IGNORE INTO seen_ids (receive_time, tenant_id, device_id, message_id) VALUES ${Array(IDS_PER_STATEMENT).fill('(?, ?, ?, ?)').join(',')}`);
    const upsertSeen = (n: number) => db.prepare(`INSERT INTO device_seen (tenant_id, device_id, last_seen, last_ts) VALUES ${Array(n).fill('(?, ?, ?, ?)').join(',')}
      ON CONFLICT DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), last_ts = max(last_ts, excluded.last_ts)`);
    this.upsertSeen = upsertSeen(1);
    this.upsertSeenMany = upsertSeen(IDS_PER_STATEMENT);
    this.upsertCut = db.prepare(`INSERT INTO device_seen (tenant_id, device_id, last_seen, last_ts, snapshot_ts, snapshot_keys) VALUES (?, ?, 0, ?, ?, ?)
      ON CONFLICT DO UPDATE SET snapshot_ts = excluded.snapshot_ts, snapshot_keys = excluded.snapshot_keys
      WHERE snapshot_ts IS NULL OR excluded.snapshot_ts >= snapshot_ts`);
    this.forget = db.prepare('DELETE FROM seen_ids WHERE receive_time < ?');
  }

  /** Call inside the write transaction, after the messages were inserted. */
  write(messages: RawMessage[], deadLetters: DeadLetter[], cuts: SnapshotCut[] | undefined): void {
    const { names } = this;
    const letters = deadLetters.length ? new Set(deadLetters.map((d) => `${d.tenant}\u0000${d.device}\u0000${d.messageId}`)) : undefined;
    const perDevice = new Map<number, { t: number; seen: number; ts: number }>();
    const p = this.params;
    let filled = 0;
    let lastTenant = '';
    let t = 0;
    for (const m of messages) {
      if (m.tenant !== lastTenant) { lastTenant = m.tenant; t = names.intern(NameKind.tenant, 0, m.tenant); }
      const d = names.intern(NameKind.device, t, m.device);
      if (!letters?.has(`${m.tenant}\u0000${m.device}\u0000${m.messageId}`)) {
        const o = filled * 4;
        p[o] = m.receiveTime; p[o + 1] = t; p[o + 2] = d; p[o + 3] = m.messageId;
        if (++filled === IDS_PER_STATEMENT) { this.insertIds.run(p); filled = 0; }
      }
      const cur = perDevice.get(d);
      if (!cur) perDevice.set(d, { t, seen: m.receiveTime, ts: m.ts });
      else { cur.seen = Math.max(cur.seen, m.receiveTime); cur.ts = Math.max(cur.ts, m.ts); }
    }
    for (let r = 0; r < filled; r++) this.insertId.run(p.slice(r * 4, r * 4 + 4));
    filled = 0;
    for (const [d, s] of perDevice) {
      const o = filled * 4;
      p[o] = s.t; p[o + 1] = d; p[o + 2] = s.seen; p[o + 3] = s.ts;
      if (++filled === IDS_PER_STATEMENT) { this.upsertSeenMany.run(p); filled = 0; }
    }
    for (let r = 0; r < filled; r++) this.upsertSeen.run(p.slice(r * 4, r * 4 + 4));
    for (const c of cuts ?? []) {
      const t = names.intern(NameKind.tenant, 0, c.tenant);
      this.upsertCut.run(t, names.intern(NameKind.device, t, c.device), c.ts, c.ts, JSON.stringify(c.keys));
    }
  }

  forgetBefore(before: number): number {
    return this.forget.run(before).changes;
  }
}

export class SeenReader {
  private readonly ids;
  private readonly seen;

  constructor(db: Db, private readonly names: Names) {
    this.ids = db.prepare('SELECT receive_time, tenant_id, device_id, message_id FROM seen_ids WHERE receive_time >= ? ORDER BY receive_time LIMIT ?').raw();
    this.seen = db.prepare('SELECT last_seen, last_ts, snapshot_ts, snapshot_keys FROM device_seen WHERE tenant_id = ? AND device_id = ?');
  }

  recentMessageIds(since: number, limit: number): SeenMessageId[] {
    const rows = this.ids.all(since, limit) as Array<[number, number, number, string]>;
    return rows.map(([receiveTime, t, d, messageId]) => ({ tenant: this.names.name(t), device: this.names.name(d), messageId, receiveTime }));
  }

  deviceSeen(tenant: string, device: string): DeviceSeen | undefined {
    const r = this.row(tenant, device);
    return r && r.last_seen > 0 ? { lastSeen: r.last_seen, lastTs: r.last_ts } : undefined;
  }

  /** Latest values without the keys the device's last replacing snapshot lacked (unless newer than it). */
  cut(tenantId: number, deviceId: number, values: LatestValue[]): LatestValue[] {
    const r = this.seen.get(tenantId, deviceId) as Row | undefined;
    if (!r || r.snapshot_ts === null || r.snapshot_keys === null) return values;
    const keys = new Set(JSON.parse(r.snapshot_keys) as string[]);
    const at = r.snapshot_ts;
    return values.filter((v) => keys.has(v.key) || v.ts >= at);
  }

  private row(tenant: string, device: string): Row | undefined {
    const t = this.names.tenant(tenant);
    const d = t === undefined ? undefined : this.names.find(NameKind.device, t, device);
    return d === undefined ? undefined : this.seen.get(t, d) as Row | undefined;
  }
}

interface Row { last_seen: number; last_ts: number; snapshot_ts: number | null; snapshot_keys: string | null }
