/**
 * @module 1-minute and 1-hour roll-ups of the PostgreSQL store (tables `rollup_1m`,
 * `rollup_1h`, keyed by series and bucket start). writeBatch inserts its points with
 * `insertWithRollups`: one statement whose INSERT … ON CONFLICT DO NOTHING RETURNING yields only
 * the points that were not stored yet (another transaction's or an earlier batch's copy is not
 * returned), and whose other parts fold exactly those into both tables: one upsert per table
 * whose conflict clause merges the deltas (counts and sums add, min/max compare, first/last
 * compare device time then message id). A replay therefore changes nothing and a late point
 * corrects its bucket. The folding runs in the server (no row comes back to the client), in
 * the batch's transaction. Rows go in key order, like every write of ./write.ts, so two nodes
 * upserting the same buckets wait for each other, never deadlock. The tables are not
 * partitioned: retention deletes old buckets (deleteBefore).
 */
import type pg from 'pg';
import { checkResolution, resolutionMs, toRollup } from '../rollup.js';
import type { Resolution, Rollup, RollupQuery } from '../store.js';
import { decodeValue, ident } from './codec.js';

/** Migration 4 (./migrations.ts). */
export const ROLLUPS_MIGRATION = (s: string): string => ['1m', '1h'].map((r) => `
  CREATE TABLE ${s}.rollup_${r} (
    tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, bucket bigint NOT NULL,
    n bigint NOT NULL, num_n bigint NOT NULL, min float8, max float8, sum float8,
    first_ts bigint NOT NULL, first_mid text COLLATE "C" NOT NULL, first_num float8, first_txt text, first_bool boolean,
    last_ts bigint NOT NULL, last_mid text COLLATE "C" NOT NULL, last_num float8, last_txt text, last_bool boolean,
    PRIMARY KEY (tenant, device, key, bucket)
  ) WITH (fillfactor = 80);`).join('\n');


const TABLE: Record<Resolution, string> = { '1m': 'rollup_1m', '1h': 'rollup_1h' };
const COLS = `tenant, device, key, bucket, n, num_n, min, max, sum, first_ts, first_mid, first_num, first_txt, first_bool,
  last_ts, last_mid, last_num, last_txt, last_bool`;

/** The SET clause merging a delta row (`excluded`) into a stored bucket (`r`). */
const MERGE = `n = r.n + excluded.n, num_n = r.num_n + excluded.num_n,
  min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
  sum = CASE WHEN r.sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN r.sum ELSE r.sum + excluded.sum END,
  ${['ts', 'mid', 'num', 'txt', 'bool'].flatMap((c) => (['first', 'last'] as const).map((side) => `${side}_${c} = CASE WHEN (excluded.${side}_ts, excluded.${side}_mid)
    ${side === 'first' ? '<' : '>'} (r.${side}_ts, r.${side}_mid) THEN excluded.${side}_${c} ELSE r.${side}_${c} END`)).join(',\n  ')}`;

/**
 * `insert` (an INSERT of points … ON CONFLICT DO NOTHING, without RETURNING) as one statement
 * that also folds the points it stored into both roll-up tables; it answers the count stored.
 */
export function insertWithRollups(schema: string, insert: string): string {
  const s = ident(schema);
  // One sort per resolution, no join: row numbers mark each bucket's first and last point, and
  // FILTERed aggregates pick their columns (CTE results carry no statistics to plan joins with).
  const fold = (r: Resolution) => {
    const ms = resolutionMs(r);
    const pick = (side: 'first' | 'last') => {
      const w = `WHERE rf = ${side === 'first' ? '1' : 'n'}`;
      return `max(ts) FILTER (${w}), max(message_id) FILTER (${w}), max(num) FILTER (${w}), max(txt) FILTER (${w}), bool_or(bool) FILTER (${w})`;
    };
    return `m_${r} AS (SELECT tenant, device, key, bucket, ts, message_id, num, txt, bool,
        row_number() OVER (PARTITION BY tenant, device, key, bucket ORDER BY ts, message_id) AS rf,
        count(*) OVER (PARTITION BY tenant, device, key, bucket) AS n
      FROM (SELECT tenant, device, key, ts - ((ts % ${ms}) + ${ms}) % ${ms} AS bucket, ts, message_id, num, txt, bool FROM ins) x),
    u_${r} AS (INSERT INTO ${s}.${TABLE[r]} AS r (${COLS})
      SELECT tenant, device, key, bucket, count(*), count(num), min(num), max(num), sum(num), ${pick('first')}, ${pick('last')}
      FROM m_${r} GROUP BY tenant, device, key, bucket ORDER BY tenant, device, key, bucket
      ON CONFLICT (tenant, device, key, bucket) DO UPDATE SET ${MERGE})`;
  };
  // Data-modifying parts of a WITH run to completion whether or not the main query reads them.
  return `WITH ins AS (${insert} RETURNING tenant, device, key, ts, message_id, num, txt, bool),
    ${fold('1m')},
    ${fold('1h')}
    SELECT count(*)::int8 AS stored FROM ins`;
}

interface RollupRow {
  bucket: number; n: number; num_n: number; min: number | null; max: number | null; sum: number | null;
  first_ts: number; first_num: number | null; first_txt: string | null; first_bool: boolean | null;
  last_ts: number; last_num: number | null; last_txt: string | null; last_bool: boolean | null;
}

export class Rollups {
  private readonly sql;

  constructor(private readonly pool: pg.Pool, schema: string) {
    const s = ident(schema);
    const select = (r: Resolution) => `SELECT bucket, n, num_n, min, max, sum, first_ts, first_num, first_txt, first_bool,
        last_ts, last_num, last_txt, last_bool
      FROM ${s}.${TABLE[r]} WHERE tenant = $1 AND device = $2 AND key = $3 AND bucket >= $4 AND bucket < $5 ORDER BY bucket`;
    this.sql = {
      select: { '1m': select('1m'), '1h': select('1h') },
      deleteAll: { '1m': `DELETE FROM ${s}.rollup_1m WHERE bucket <= $1`, '1h': `DELETE FROM ${s}.rollup_1h WHERE bucket <= $1` },
      deleteTenant: { '1m': `DELETE FROM ${s}.rollup_1m WHERE tenant = $2 AND bucket <= $1`, '1h': `DELETE FROM ${s}.rollup_1h WHERE tenant = $2 AND bucket <= $1` },
    };
  }

  async rollups(q: RollupQuery): Promise<Rollup[]> {
    const r = checkResolution(q.resolution);
    if (q.to <= q.from) return [];
    const { rows } = await this.pool.query<RollupRow>(this.sql.select[r], [q.tenant, q.device, q.key, q.from, q.to]);
    return rows.map((x) => toRollup(x.bucket, {
      count: x.n, numericCount: x.num_n, min: x.min, max: x.max, sum: x.sum,
      firstTs: x.first_ts, firstMid: '', first: decodeValue({ num: x.first_num, txt: x.first_txt, bool: x.first_bool }),
      lastTs: x.last_ts, lastMid: '', last: decodeValue({ num: x.last_num, txt: x.last_txt, bool: x.last_bool }),
    }, (v) => v));
  }

  /** Deletes buckets that end at or before `cutoff`; returns how many. */
  async deleteBefore(resolution: Resolution, cutoff: number, tenant?: string): Promise<number> {
    const r = checkResolution(resolution);
    const last = cutoff - resolutionMs(r);
    const res = tenant === undefined
      ? await this.pool.query(this.sql.deleteAll[r], [last])
      : await this.pool.query(this.sql.deleteTenant[r], [last, tenant]);
    return res.rowCount ?? 0;
  }
}

