/**
 * @module Telemetry reads of the PostgreSQL store: latest state, raw ranges and bucketed
 * aggregates, with the embedded store's semantics (./../embedded/read.ts). Time ranges are
 * half-open (from ≤ ts < to); partition pruning keeps a range query on the partitions it spans.
 *
 * Range order is ascending by device time, then key, then message id; `next` is opaque. Without
 * a key, the device's keys come from `latest` (every stored point updated it) and each key is
 * read along the primary key with its own LIMIT, then merged: no sort over the device's history.
 * Aggregates bucket with integer arithmetic aligned to the epoch (ts - ts mod interval, floored
 * for times before 1970); min/max/avg/sum read numbers only (null when a bucket has none),
 * `count` counts every point, `last` is the value with the greatest device time (larger message
 * id on a tie). Buckets without points are not returned.
 */
import type pg from 'pg';
import { FluxgateError } from '../../core/errors.js';
import type { AggregateQuery, Bucket, LatestValue, Page, RangeQuery, TelemetryPoint } from '../store.js';
import { checkLimit, decodeCursor, decodeValue, encodeCursor, ident, type ValueColumns } from './codec.js';

interface PointRow extends ValueColumns { key: string; ts: number; message_id: string; project: string }

export class Reader {
  private readonly sql;

  constructor(private readonly pool: pg.Pool, schema: string) {
    const s = ident(schema);
    const bucket = 'ts - ((ts % $6::int8) + $6::int8) % $6::int8';
    const series = `tenant = $1 AND device = $2 AND key = $3 AND ts >= $4 AND ts < $5`;
    // $6..$8: cursor (ts, key, message id); the first page passes no cursor and skips the test.
    const after = (p: string) => `($9::boolean OR (${p}ts, ${p}key, ${p}message_id) > ($6::int8, $7::text, $8::text))`;
    this.sql = {
      // Keys a replacing snapshot lacked are hidden unless at least as new as it (./seen.ts).
      latest: `SELECT l.key, l.ts, l.num, l.txt, l.bool FROM ${s}.latest l LEFT JOIN ${s}.device_seen d ON d.tenant = l.tenant AND d.device = l.device
        WHERE l.tenant = $1 AND l.device = $2 AND (d.snapshot_ts IS NULL OR l.ts >= d.snapshot_ts OR l.key = ANY(d.snapshot_keys)) ORDER BY l.key`,
      oneKey: `SELECT key, ts, message_id, project, num, txt, bool FROM ${s}.points
        WHERE ${series} AND ${after('')} ORDER BY ts, message_id LIMIT $10`,
      allKeys: `SELECT p.* FROM ${s}.latest l CROSS JOIN LATERAL (
          SELECT key, ts, message_id, project, num, txt, bool FROM ${s}.points p
          WHERE p.tenant = l.tenant AND p.device = l.device AND p.key = l.key AND p.ts >= $4 AND p.ts < $5 AND ${after('p.')}
          ORDER BY p.ts, p.message_id LIMIT $10) p
        WHERE l.tenant = $1 AND l.device = $2 AND $3::text IS NULL
        ORDER BY p.ts, p.key, p.message_id LIMIT $10`,
      buckets: `SELECT ${bucket} AS b, count(*)::int8 AS n, min(num) AS min, max(num) AS max, avg(num) AS avg, sum(num) AS sum
        FROM ${s}.points WHERE ${series} GROUP BY b ORDER BY b`,
      last: `SELECT DISTINCT ON (b) b, count(*) OVER (PARTITION BY b) AS n, num, txt, bool
        FROM (SELECT ${bucket} AS b, ts, message_id, num, txt, bool FROM ${s}.points WHERE ${series}) x
        ORDER BY b, ts DESC, message_id DESC`,
    };
  }

  async latest(tenant: string, device: string): Promise<LatestValue[]> {
    const { rows } = await this.pool.query<ValueColumns & { key: string; ts: number }>(this.sql.latest, [tenant, device]);
    return rows.map((r) => ({ key: r.key, value: decodeValue(r), ts: r.ts }));
  }

  async range(q: RangeQuery): Promise<Page<TelemetryPoint>> {
    const limit = checkLimit(q.limit);
    const [cts, ckey, cmsg] = q.after === undefined ? [q.from, '', ''] : decodeCursor(q.after, 'nss') as [number, string, string];
    const first = q.after === undefined;
    // A later page starts at the cursor's time: the scan never re-reads earlier pages.
    const lo = Math.max(q.from, cts);
    const sql = q.key === undefined ? this.sql.allKeys : this.sql.oneKey;
    const { rows } = await this.pool.query<PointRow>(sql, [q.tenant, q.device, q.key ?? null, lo, q.to, cts, ckey, cmsg, first, limit + 1]);
    const items = rows.slice(0, limit).map((r): TelemetryPoint => ({
      tenant: q.tenant, project: r.project, device: q.device, key: r.key, ts: r.ts, value: decodeValue(r), messageId: r.message_id,
    }));
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.ts, last.key, last.messageId]) } : { items };
  }

  async aggregate(q: AggregateQuery): Promise<Bucket[]> {
    if (!(q.intervalMs > 0) || !Number.isSafeInteger(q.intervalMs)) throw new FluxgateError('BAD_REQUEST', 'intervalMs must be a positive integer');
    const params = [q.tenant, q.device, q.key, q.from, q.to, q.intervalMs];
    if (q.agg === 'last') {
      const { rows } = await this.pool.query<ValueColumns & { b: number; n: number }>(this.sql.last, params);
      return rows.map((r) => ({ ts: r.b, value: decodeValue(r), count: r.n }));
    }
    const { rows } = await this.pool.query<{ b: number; n: number; min: number | null; max: number | null; avg: number | null; sum: number | null }>(this.sql.buckets, params);
    const agg = q.agg;
    return rows.map((r) => ({ ts: r.b, count: r.n, value: agg === 'count' ? r.n : r[agg] }));
  }
}
