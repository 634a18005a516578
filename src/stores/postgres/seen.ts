/**
 * @module What the PostgreSQL store keeps about messages besides their content, written in the
 * batch's transaction (./write.ts), with the embedded store's semantics (../embedded/seen.ts):
 * - `seen_ids`: each batch's message ids (raw messages that are not dead letters), keyed by
 *   receive time first; processing reloads its de-duplication window from it after a restart
 *   or when another node takes over processing. Pruned by receive time.
 * - `device_seen`: per device the greatest receive time and device time (last seen) and the
 *   newest replacing snapshot's device time and keys; latest() (./read.ts) hides keys that
 *   snapshot lacked unless they are at least as new.
 * Rows are written in key order, like every table of ./write.ts, so two nodes never deadlock.
 */
import type pg from 'pg';
import type { DeadLetter, DeviceSeen, RawMessage, SeenMessageId, SnapshotCut } from '../store.js';
import { ident } from './codec.js';

export const SEEN_MIGRATION = (s: string): string => `
  CREATE TABLE ${s}.seen_ids (
    receive_time bigint NOT NULL, tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, message_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (receive_time, tenant, device, message_id)
  );
  CREATE TABLE ${s}.device_seen (
    tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, last_seen bigint NOT NULL, last_ts bigint NOT NULL,
    snapshot_ts bigint, snapshot_keys text[],
    PRIMARY KEY (tenant, device)
  ) WITH (fillfactor = 70);
  ALTER TABLE ${s}.dead_letters ADD COLUMN kind text NOT NULL DEFAULT 'telemetry';`;

const key = (tenant: string, device: string, id = ''): string => `${tenant}\u0000${device}\u0000${id}`;
const byKey = <T>(a: [string, T], b: [string, T]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

export class Seen {
  private readonly sql;

  constructor(private readonly pool: pg.Pool, schema: string) {
    const s = ident(schema);
    this.sql = {
      ids: `INSERT INTO ${s}.seen_ids (receive_time, tenant, device, message_id)
        SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING`,
      seen: `INSERT INTO ${s}.device_seen AS d (tenant, device, last_seen, last_ts)
        SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
        ON CONFLICT (tenant, device) DO UPDATE SET last_seen = greatest(d.last_seen, excluded.last_seen), last_ts = greatest(d.last_ts, excluded.last_ts)`,
      cut: `INSERT INTO ${s}.device_seen AS d (tenant, device, last_seen, last_ts, snapshot_ts, snapshot_keys) VALUES ($1, $2, 0, $3, $3, $4::text[])
        ON CONFLICT (tenant, device) DO UPDATE SET snapshot_ts = excluded.snapshot_ts, snapshot_keys = excluded.snapshot_keys
        WHERE d.snapshot_ts IS NULL OR excluded.snapshot_ts >= d.snapshot_ts`,
      recent: `SELECT receive_time, tenant, device, message_id FROM ${s}.seen_ids WHERE receive_time >= $1 ORDER BY receive_time LIMIT $2`,
      forget: `DELETE FROM ${s}.seen_ids WHERE receive_time < $1`,
      device: `SELECT last_seen, last_ts FROM ${s}.device_seen WHERE tenant = $1 AND device = $2 AND last_seen > 0`,
    };
  }

  /** Inside the batch's transaction. */
  async write(client: pg.PoolClient, messages: RawMessage[], deadLetters: DeadLetter[], cuts: SnapshotCut[] | undefined): Promise<void> {
    if (messages.length > 0) {
      const letters = new Set(deadLetters.map((d) => key(d.tenant, d.device, d.messageId)));
      const ids = messages.filter((m) => !letters.has(key(m.tenant, m.device, m.messageId)))
        .sort((a, b) => a.receiveTime - b.receiveTime || (key(a.tenant, a.device, a.messageId) < key(b.tenant, b.device, b.messageId) ? -1 : 1));
      if (ids.length > 0) {
        await client.query(this.sql.ids, [ids.map((m) => m.receiveTime), ids.map((m) => m.tenant), ids.map((m) => m.device), ids.map((m) => m.messageId)]);
      }
      const perDevice = new Map<string, { tenant: string; device: string; seen: number; ts: number }>();
      for (const m of messages) {
        const k = key(m.tenant, m.device);
        const cur = perDevice.get(k);
        if (!cur) perDevice.set(k, { tenant: m.tenant, device: m.device, seen: m.receiveTime, ts: m.ts });
        else { cur.seen = Math.max(cur.seen, m.receiveTime); cur.ts = Math.max(cur.ts, m.ts); }
      }
      const rows = [...perDevice].sort(byKey).map(([, r]) => r);
      await client.query(this.sql.seen, [rows.map((r) => r.tenant), rows.map((r) => r.device), rows.map((r) => r.seen), rows.map((r) => r.ts)]);
    }
    if (cuts && cuts.length > 0) {
      // The newest cut per device (an upsert may not touch one row twice in a statement).
      const newest = new Map<string, SnapshotCut>();
      for (const c of cuts) {
        const k = key(c.tenant, c.device);
        const cur = newest.get(k);
        if (!cur || c.ts >= cur.ts) newest.set(k, c);
      }
      for (const [, c] of [...newest].sort(byKey)) await client.query(this.sql.cut, [c.tenant, c.device, c.ts, c.keys]);
    }
  }

  async recentMessageIds(since: number, limit: number): Promise<SeenMessageId[]> {
    const { rows } = await this.pool.query<{ receive_time: number; tenant: string; device: string; message_id: string }>(this.sql.recent, [since, limit]);
    return rows.map((r) => ({ tenant: r.tenant, device: r.device, messageId: r.message_id, receiveTime: r.receive_time }));
  }

  async forgetMessageIds(before: number): Promise<number> {
    return (await this.pool.query(this.sql.forget, [before])).rowCount ?? 0;
  }

  async deviceSeen(tenant: string, device: string): Promise<DeviceSeen | undefined> {
    const { rows } = await this.pool.query<{ last_seen: number; last_ts: number }>(this.sql.device, [tenant, device]);
    return rows[0] && { lastSeen: rows[0].last_seen, lastTs: rows[0].last_ts };
  }
}
