/**
 * @module 1-minute and 1-hour roll-ups of the PostgreSQL store (tables `rollup_1m`,
 * `rollup_1h`, keyed by series and bucket start). writeBatch learns which points are new from
 * its INSERT … ON CONFLICT DO NOTHING RETURNING (a point another transaction or an earlier
 * batch already stored is not returned) and folds exactly those into their buckets, in the same
 * transaction: one upsert per table whose conflict clause merges the deltas (counts and sums
 * add, min/max compare, first/last compare device time then message id). A replay therefore
 * changes nothing and a late point corrects its bucket. Rows go in key order, like every write
 * of ./write.ts, so two nodes upserting the same buckets wait for each other, never deadlock.
 * The tables are not partitioned: retention deletes old buckets (deleteBefore).
 */
import type pg from 'pg';
import { checkResolution, foldPoints, resolutionMs, toRollup } from '../rollup.js';
import type { Resolution, Rollup, RollupQuery, Value } from '../store.js';
import { decodeValue, ident, type ValueColumns } from './codec.js';

/** Migration 4 (./migrations.ts). */
export const ROLLUPS_MIGRATION = (s: string): string => ['1m', '1h'].map((r) => `
  CREATE TABLE ${s}.rollup_${r} (
    tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, bucket bigint NOT NULL,
    n bigint NOT NULL, num_n bigint NOT NULL, min float8, max float8, sum float8,
    first_ts bigint NOT NULL, first_mid text COLLATE "C" NOT NULL, first_num float8, first_txt text, first_bool boolean,
    last_ts bigint NOT NULL, last_mid text COLLATE "C" NOT NULL, last_num float8, last_txt text, last_bool boolean,
    PRIMARY KEY (tenant, device, key, bucket)
  ) WITH (fillfactor = 80);`).join('\n');

/** What RETURNING gives back for each point the insert stored. */
export interface InsertedPoint extends ValueColumns { tenant: string; device: string; key: string; ts: number; message_id: string }

const TABLE: Record<Resolution, string> = { '1m': 'rollup_1m', '1h': 'rollup_1h' };
const COLS = `tenant, device, key, bucket, n, num_n, min, max, sum, first_ts, first_mid, first_num, first_txt, first_bool,
  last_ts, last_mid, last_num, last_txt, last_bool`;

interface RollupRow {
  bucket: number; n: number; num_n: number; min: number | null; max: number | null; sum: number | null;
  first_ts: number; first_num: number | null; first_txt: string | null; first_bool: boolean | null;
  last_ts: number; last_num: number | null; last_txt: string | null; last_bool: boolean | null;
}

export class Rollups {
  private readonly sql;

  constructor(private readonly pool: pg.Pool, schema: string) {
    const s = ident(schema);
    const pick = (side: 'first' | 'last', col: string) => `${side}_${col} = CASE WHEN (excluded.${side}_ts, excluded.${side}_mid) ${side === 'first' ? '<' : '>'}
      (r.${side}_ts, r.${side}_mid) THEN excluded.${side}_${col} ELSE r.${side}_${col} END`;
    const upsert = (r: Resolution) => `INSERT INTO ${s}.${TABLE[r]} AS r (${COLS})
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::float8[], $8::float8[], $9::float8[],
        $10::int8[], $11::text[], $12::float8[], $13::text[], $14::bool[], $15::int8[], $16::text[], $17::float8[], $18::text[], $19::bool[])
      ON CONFLICT (tenant, device, key, bucket) DO UPDATE SET n = r.n + excluded.n, num_n = r.num_n + excluded.num_n,
        min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
        sum = CASE WHEN r.sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN r.sum ELSE r.sum + excluded.sum END,
        ${['ts', 'mid', 'num', 'txt', 'bool'].flatMap((c) => [pick('first', c), pick('last', c)]).join(',\n        ')}`;
    const select = (r: Resolution) => `SELECT bucket, n, num_n, min, max, sum, first_ts, first_num, first_txt, first_bool,
        last_ts, last_num, last_txt, last_bool
      FROM ${s}.${TABLE[r]} WHERE tenant = $1 AND device = $2 AND key = $3 AND bucket >= $4 AND bucket < $5 ORDER BY bucket`;
    this.sql = {
      upsert: { '1m': upsert('1m'), '1h': upsert('1h') },
      select: { '1m': select('1m'), '1h': select('1h') },
      deleteAll: { '1m': `DELETE FROM ${s}.rollup_1m WHERE bucket <= $1`, '1h': `DELETE FROM ${s}.rollup_1h WHERE bucket <= $1` },
      deleteTenant: { '1m': `DELETE FROM ${s}.rollup_1m WHERE tenant = $2 AND bucket <= $1`, '1h': `DELETE FROM ${s}.rollup_1h WHERE tenant = $2 AND bucket <= $1` },
    };
  }

  /** Folds the points this transaction inserted into both resolutions (inside the caller's transaction). */
  async fold(client: pg.PoolClient, inserted: InsertedPoint[]): Promise<void> {
    if (inserted.length === 0) return;
    const bySeries = new Map<string, Array<{ ts: number; messageId: string; value: Value }>>();
    for (const p of inserted) {
      const k = `${p.tenant}\u0000${p.device}\u0000${p.key}`;
      let pts = bySeries.get(k);
      if (!pts) bySeries.set(k, pts = []);
      pts.push({ ts: p.ts, messageId: p.message_id, value: decodeValue(p) });
    }
    const series = [...bySeries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const r of ['1m', '1h'] as const) {
      const c: unknown[][] = Array.from({ length: 19 }, () => []);
      for (const k of series) {
        const [tenant, device, key] = k.split('\u0000');
        for (const [bucket, a] of foldPoints(bySeries.get(k)!, resolutionMs(r))) {
          const f = split(a.first);
          const l = split(a.last);
          const row = [tenant, device, key, bucket, a.count, a.numericCount, a.min, a.max, a.sum,
            a.firstTs, a.firstMid, f.num, f.txt, f.bool, a.lastTs, a.lastMid, l.num, l.txt, l.bool];
          for (let i = 0; i < 19; i++) c[i].push(row[i]);
        }
      }
      await client.query(this.sql.upsert[r], c);
    }
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

function split(v: Value): ValueColumns {
  return { num: typeof v === 'number' ? v : null, txt: typeof v === 'string' ? v : null, bool: typeof v === 'boolean' ? v : null };
}
