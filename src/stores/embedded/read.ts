/**
 * @module Telemetry reads of the embedded store: latest state, raw ranges and bucketed
 * aggregates. Points live in two tables (`points`, series-ordered, and `points_recent`,
 * staged by time); reads see both, and a point present in both (a replay that arrived after
 * compaction) is returned once. Time ranges are half-open: from ≤ ts < to.
 *
 * Range order is ascending by device time, then key, then message id; `next` is opaque.
 * Aggregates bucket by `intervalMs` aligned to the epoch; min/max/avg/sum use numeric values
 * only (null when a bucket has none), `count` counts every point, `last` is the value with
 * the greatest device time (larger message id on a tie, as for latest state). Buckets
 * without points are not returned.
 */
import { FluxgateError } from '../../core/errors.js';
import type { AggregateQuery, Bucket, LatestValue, Page, RangeQuery, TelemetryPoint } from '../store.js';
import { decodeCursor, decodeValue, encodeCursor } from './codec.js';
import { wins } from './latest.js';
import type { Names } from './names.js';
import { NameKind, type Db } from './schema.js';
import type { SeenReader } from './seen.js';

interface Row { ts: number; message_id: string; project_id: number; v: unknown }

/** Rows of one series after a cursor; `mode` 0: after (cts, cmsg), 1: ts ≥ cts, 2: ts > cts. */
const SERIES_SQL = (table: string) => `SELECT ts, message_id, project_id, v FROM ${table}
  WHERE tenant_id = $t AND device_id = $d AND key_id = $k AND ts >= $lo AND ts < $to
    AND (ts > $cts OR $mode = 1 OR ($mode = 0 AND message_id > $cmsg))`;

export class Reader {
  private readonly latestStmt;
  private readonly stagedNewestStmt;
  private readonly keysStmt;
  private readonly seriesStmt;
  private readonly bucketStmt;

  /** Reads made of several statements run in one read transaction: one snapshot, even while the writer commits. */
  readonly latest: (tenant: string, device: string) => LatestValue[];
  readonly range: (q: RangeQuery) => Page<TelemetryPoint>;

  constructor(db: Db, private readonly names: Names, private readonly seen?: SeenReader) {
    this.latest = db.transaction((tenant: string, device: string) => this.latestIn(tenant, device));
    this.range = db.transaction((q: RangeQuery) => this.rangeIn(q));
    this.latestStmt = db.prepare('SELECT key_id, ts, message_id, v FROM latest WHERE tenant_id = ? AND device_id = ?');
    // Newest first, in primary-key order backwards: the first row met per key is its newest.
    this.stagedNewestStmt = db.prepare(`SELECT key_id, ts, message_id, v FROM points_recent
      WHERE tenant_id = ? AND ts >= ? AND device_id = ? ORDER BY ts DESC, device_id DESC, key_id DESC, message_id DESC`);
    this.keysStmt = db.prepare('SELECT key_id FROM latest WHERE tenant_id = ? AND device_id = ?').pluck();
    // A staged point already compacted into `points` is skipped, so a replay shows once.
    this.seriesStmt = db.prepare(`${SERIES_SQL('points')}
      UNION ALL
      SELECT * FROM (${SERIES_SQL('points_recent r')} AND NOT EXISTS (SELECT 1 FROM points p
        WHERE p.tenant_id = r.tenant_id AND p.device_id = r.device_id AND p.key_id = r.key_id AND p.ts = r.ts AND p.message_id = r.message_id))
      ORDER BY ts, message_id LIMIT $limit`);
    const bucket = 'ts - ((ts % $iv) + $iv) % $iv';
    const num = "CASE WHEN typeof(v) IN ('integer', 'real') THEN v END";
    this.bucketStmt = db.prepare(`SELECT ${bucket} AS b, count(*) AS n, min(${num}) AS min, max(${num}) AS max,
      avg(${num}) AS avg, sum(${num}) AS sum FROM (${SERIES_SQL('points')}
      UNION ALL
      SELECT * FROM (${SERIES_SQL('points_recent r')} AND NOT EXISTS (SELECT 1 FROM points p
        WHERE p.tenant_id = r.tenant_id AND p.device_id = r.device_id AND p.key_id = r.key_id AND p.ts = r.ts AND p.message_id = r.message_id)))
      GROUP BY b ORDER BY b`);
  }

  private latestIn(tenant: string, device: string): LatestValue[] {
    const ids = this.device(tenant, device);
    if (!ids) return [];
    const byKey = new Map<number, { ts: number; messageId: string; v: unknown }>();
    let oldest = Infinity;
    for (const r of this.latestStmt.all(ids.tenantId, ids.deviceId) as Array<{ key_id: number; ts: number; message_id: string; v: unknown }>) {
      byKey.set(r.key_id, { ts: r.ts, messageId: r.message_id, v: r.v });
      oldest = Math.min(oldest, r.ts);
    }
    // Points staged since the last compaction may be newer than the table. A device that
    // reports stops the scan within its last report; older than every table value cannot win.
    const seen = new Set<number>();
    if (byKey.size > 0) {
      for (const r of this.stagedNewestStmt.iterate(ids.tenantId, oldest, ids.deviceId) as IterableIterator<{ key_id: number; ts: number; message_id: string; v: unknown }>) {
        if (seen.has(r.key_id)) continue;
        seen.add(r.key_id);
        const cur = byKey.get(r.key_id);
        if (!cur || wins(r.ts, r.message_id, cur.ts, cur.messageId)) byKey.set(r.key_id, { ts: r.ts, messageId: r.message_id, v: r.v });
        if (seen.size === byKey.size) break;
      }
    }
    const values = [...byKey].map(([keyId, r]) => ({ key: this.names.name(keyId), value: decodeValue(r.v), ts: r.ts }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    // A replacing snapshot hides the keys it lacked (./seen.ts).
    return this.seen ? this.seen.cut(ids.tenantId, ids.deviceId, values) : values;
  }

  private rangeIn(q: RangeQuery): Page<TelemetryPoint> {
    const limit = checkLimit(q.limit);
    const [cts, ckey, cmsg] = q.after === undefined ? [q.from, '', ''] : decodeCursor(q.after, 'nss') as [number, string, string];
    const ids = this.device(q.tenant, q.device);
    if (!ids) return { items: [] };
    const first = q.after === undefined;
    // `latest` has a row for every series as soon as its first point is committed (./write.ts).
    const keys = q.key === undefined
      ? (this.keysStmt.all(ids.tenantId, ids.deviceId) as number[]).map((id) => ({ id, name: this.names.name(id) }))
      : [{ id: this.names.find(NameKind.key, ids.tenantId, q.key), name: q.key }];
    // One ordered query per key, merged by (ts, key, message id): each uses the primary key.
    const merged: Array<TelemetryPoint> = [];
    for (const k of keys) {
      if (k.id === undefined) continue;
      const mode = first ? 1 : k.name === ckey ? 0 : k.name > ckey ? 1 : 2;
      const rows = this.seriesStmt.all({ t: ids.tenantId, d: ids.deviceId, k: k.id, lo: Math.max(q.from, cts), to: q.to, cts, mode, cmsg, limit: limit + 1 }) as Row[];
      for (const r of rows) {
        merged.push({ tenant: q.tenant, project: this.names.name(r.project_id), device: q.device, key: k.name, ts: r.ts, value: decodeValue(r.v), messageId: r.message_id });
      }
    }
    if (keys.length > 1) merged.sort(pointOrder);
    const items = merged.slice(0, limit);
    const last = items[items.length - 1];
    return merged.length > limit && last ? { items, next: encodeCursor([last.ts, last.key, last.messageId]) } : { items };
  }

  aggregate(q: AggregateQuery): Bucket[] {
    if (!(q.intervalMs > 0) || !Number.isInteger(q.intervalMs)) throw new FluxgateError('BAD_REQUEST', 'intervalMs must be a positive integer');
    const ids = this.device(q.tenant, q.device);
    const keyId = ids && this.names.find(NameKind.key, ids.tenantId, q.key);
    if (!ids || keyId === undefined) return [];
    const params = { t: ids.tenantId, d: ids.deviceId, k: keyId, lo: q.from, to: q.to, cts: q.from, mode: 1, cmsg: '' };
    if (q.agg === 'last') return this.lastPerBucket(params, q.intervalMs);
    const rows = this.bucketStmt.all({ ...params, iv: q.intervalMs }) as Array<{ b: number; n: number; min: number | null; max: number | null; avg: number | null; sum: number | null }>;
    const agg = q.agg;
    return rows.map((r) => ({ ts: r.b, count: r.n, value: agg === 'count' ? r.n : r[agg] }));
  }

  private lastPerBucket(params: Record<string, number | string>, iv: number): Bucket[] {
    const out: Bucket[] = [];
    let cur: Bucket | undefined;
    // Rows come ordered by (ts, message id), so the last row of a bucket is its `last`.
    for (const r of this.seriesStmt.iterate({ ...params, limit: -1 }) as IterableIterator<Row>) {
      const b = r.ts - (((r.ts % iv) + iv) % iv);
      if (!cur || cur.ts !== b) {
        cur = { ts: b, value: null, count: 0 };
        out.push(cur);
      }
      cur.count++;
      cur.value = decodeValue(r.v);
    }
    return out;
  }

  private device(tenant: string, device: string): { tenantId: number; deviceId: number } | undefined {
    const tenantId = this.names.tenant(tenant);
    if (tenantId === undefined) return undefined;
    const deviceId = this.names.find(NameKind.device, tenantId, device);
    return deviceId === undefined ? undefined : { tenantId, deviceId };
  }
}

function pointOrder(a: TelemetryPoint, b: TelemetryPoint): number {
  if (a.ts !== b.ts) return a.ts - b.ts;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0;
}

export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new FluxgateError('BAD_REQUEST', 'limit must be a positive integer');
  return limit;
}
