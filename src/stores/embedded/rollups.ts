/**
 * @module 1-minute and 1-hour roll-ups of the embedded store (tables `rollup_1m`, `rollup_1h`,
 * series-ordered like `points`), kept exact under replays, reordering and late data.
 *
 * Why they are folded at compaction and not per writeBatch: a point is known to be new only
 * once it is checked against `points` (staging dedups only among staged rows), and upserting a
 * series-ordered table per batch dirties one page per series per commit, the very cost staging
 * avoids (./schema.ts; the same choice as latest state, ./latest.ts). So `foldStaged` runs in
 * the compaction transaction, before the staged points move: it folds the staged points that
 * `points` does not hold yet into their buckets. Reads merge the stored buckets with the staged
 * points not yet folded, in one read transaction, so at every commit the roll-ups a reader sees
 * equal a recomputation from the raw points; after a crash, staged points are still staged and
 * are folded by the next compaction. A point replayed after raw retention deleted it is counted
 * again (nothing is left to recognise it by).
 */
import type { Statement } from 'better-sqlite3';
import { addPoint, bucketCeil, checkResolution, newAcc, resolutionMs, toRollup, type RollupAcc } from '../rollup.js';
import type { Resolution, Rollup, RollupQuery } from '../store.js';
import { decodeValue, type SqlValue } from './codec.js';
import type { Names } from './names.js';
import { NameKind, type Db } from './schema.js';
import type { Writer } from './write.js';

const TABLE: Record<Resolution, string> = { '1m': 'rollup_1m', '1h': 'rollup_1h' };
const COLS = 15;
const ROWS_PER_STATEMENT = 100;
const DELETE_CHUNK = 5_000;

/** A staged point `points` does not hold yet (a replay of a compacted point is skipped). */
const NEW_STAGED = `NOT EXISTS (SELECT 1 FROM points p WHERE p.tenant_id = r.tenant_id AND p.device_id = r.device_id
  AND p.key_id = r.key_id AND p.ts = r.ts AND p.message_id = r.message_id)`;

type Acc = RollupAcc<SqlValue>;
interface StoredRow { bucket: number; n: number; num_n: number; min: number | null; max: number | null; sum: number | null;
  first_ts: number; first_mid: string; first_v: SqlValue; last_ts: number; last_mid: string; last_v: SqlValue }

/** Writer side: folds staged points into the tables, and deletes old buckets. */
export class RollupWriter {
  private readonly staged;
  private readonly upserts: Record<Resolution, { many: Statement<unknown[]>; one: Statement<unknown[]> }>;
  /** One parameter buffer per resolution: both fill at once. */
  private readonly params = { '1m': new Array<unknown>(ROWS_PER_STATEMENT * COLS), '1h': new Array<unknown>(ROWS_PER_STATEMENT * COLS) };
  private readonly tenants;
  private readonly series;
  private readonly deleteSeries: Record<Resolution, Statement<unknown[]>>;

  constructor(private readonly db: Db) {
    this.staged = db.prepare(`SELECT r.tenant_id, r.device_id, r.key_id, r.ts, r.message_id, r.v FROM points_recent r
      WHERE ${NEW_STAGED} ORDER BY r.tenant_id, r.device_id, r.key_id, r.ts`).raw();
    const upsert = (r: Resolution, n: number) => db.prepare(`INSERT INTO ${TABLE[r]} (tenant_id, device_id, key_id, bucket, n, num_n,
        min, max, sum, first_ts, first_mid, first_v, last_ts, last_mid, last_v) VALUES ${rows(n)}
      ON CONFLICT DO UPDATE SET n = n + excluded.n, num_n = num_n + excluded.num_n,
        min = CASE WHEN min IS NULL OR excluded.min < min THEN excluded.min ELSE min END,
        max = CASE WHEN max IS NULL OR excluded.max > max THEN excluded.max ELSE max END,
        sum = CASE WHEN sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN sum ELSE sum + excluded.sum END,
        ${['ts', 'mid', 'v'].map((c) => `first_${c} = CASE WHEN excluded.first_ts < first_ts OR (excluded.first_ts = first_ts AND excluded.first_mid < first_mid) THEN excluded.first_${c} ELSE first_${c} END`).join(', ')},
        ${['ts', 'mid', 'v'].map((c) => `last_${c} = CASE WHEN excluded.last_ts > last_ts OR (excluded.last_ts = last_ts AND excluded.last_mid > last_mid) THEN excluded.last_${c} ELSE last_${c} END`).join(', ')}`);
    this.upserts = {
      '1m': { many: upsert('1m', ROWS_PER_STATEMENT), one: upsert('1m', 1) },
      '1h': { many: upsert('1h', ROWS_PER_STATEMENT), one: upsert('1h', 1) },
    };
    this.tenants = db.prepare('SELECT id FROM names WHERE kind = ? AND tenant_id = 0').pluck();
    this.series = db.prepare('SELECT device_id, key_id FROM latest WHERE tenant_id = ?');
    const del = (r: Resolution) => db.prepare(`DELETE FROM ${TABLE[r]} WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND bucket <= ?`);
    this.deleteSeries = { '1m': del('1m'), '1h': del('1h') };
  }

  /**
   * Folds the staged points that are not in `points` yet into both tables. Runs inside the
   * compaction transaction, before the staged points move. Returns the points folded.
   */
  foldStaged(): number {
    const out = { '1m': new Batcher(this.upserts['1m'], this.params['1m']), '1h': new Batcher(this.upserts['1h'], this.params['1h']) };
    const ms = { '1m': resolutionMs('1m'), '1h': resolutionMs('1h') };
    let t = -1, d = -1, k = -1;
    const cur: Record<Resolution, { bucket: number; acc: Acc | undefined }> = { '1m': { bucket: 0, acc: undefined }, '1h': { bucket: 0, acc: undefined } };
    const flush = (r: Resolution) => {
      const c = cur[r];
      if (c.acc) out[r].add(t, d, k, c.bucket, c.acc);
      c.acc = undefined;
    };
    let n = 0;
    // Rows come by series, then time: each bucket's points are consecutive.
    for (const [tenantId, deviceId, keyId, ts, mid, v] of this.staged.iterate() as IterableIterator<[number, number, number, number, string, SqlValue]>) {
      n++;
      if (tenantId !== t || deviceId !== d || keyId !== k) {
        flush('1m'); flush('1h');
        t = tenantId; d = deviceId; k = keyId;
      }
      for (const r of ['1m', '1h'] as const) {
        const c = cur[r];
        const b = ts - (((ts % ms[r]) + ms[r]) % ms[r]);
        if (c.acc && c.bucket === b) addPoint(c.acc, ts, mid, v);
        else {
          flush(r);
          c.bucket = b;
          c.acc = newAcc(ts, mid, v);
        }
      }
    }
    flush('1m'); flush('1h');
    out['1m'].end();
    out['1h'].end();
    return n;
  }

  /** Deletes whole buckets ending at or before `cutoff`, series by series; yields between chunks. */
  *deleteBefore(writer: Writer, names: Names, resolution: Resolution, cutoff: number, tenant?: string): Generator<void, number> {
    const last = cutoff - resolutionMs(checkResolution(resolution));
    let tenantIds: number[];
    if (tenant === undefined) tenantIds = this.tenants.all(NameKind.tenant) as number[];
    else {
      const id = names.tenant(tenant);
      tenantIds = id === undefined ? [] : [id];
    }
    // Staged points of old buckets are folded first, so they cannot bring a deleted bucket back later.
    writer.compact();
    yield;
    let removed = 0;
    const stmt = this.deleteSeries[resolution];
    for (const t of tenantIds) {
      const series = this.series.all(t) as Array<{ device_id: number; key_id: number }>;
      let i = 0;
      while (i < series.length) {
        removed += this.db.transaction(() => {
          let n = 0;
          let visited = 0;
          // Many series per transaction, but never a long one: bounded by rows and by series.
          while (i < series.length && n < DELETE_CHUNK && visited < DELETE_CHUNK) {
            n += stmt.run(t, series[i].device_id, series[i].key_id, last).changes;
            i++;
            visited++;
          }
          return n;
        })();
        yield;
      }
    }
    return removed;
  }
}

/** Accumulates upsert rows and runs them 100 at a time. */
class Batcher {
  private filled = 0;
  constructor(private readonly stmt: { many: Statement<unknown[]>; one: Statement<unknown[]> }, private readonly p: unknown[]) {}

  add(t: number, d: number, k: number, bucket: number, a: Acc): void {
    const o = this.filled * COLS;
    const p = this.p;
    p[o] = t; p[o + 1] = d; p[o + 2] = k; p[o + 3] = bucket; p[o + 4] = a.count; p[o + 5] = a.numericCount;
    p[o + 6] = a.min; p[o + 7] = a.max; p[o + 8] = a.sum;
    p[o + 9] = a.firstTs; p[o + 10] = a.firstMid; p[o + 11] = a.first; p[o + 12] = a.lastTs; p[o + 13] = a.lastMid; p[o + 14] = a.last;
    if (++this.filled === ROWS_PER_STATEMENT) {
      this.stmt.many.run(p);
      this.filled = 0;
    }
  }

  end(): void {
    for (let r = 0; r < this.filled; r++) this.stmt.one.run(this.p.slice(r * COLS, (r + 1) * COLS));
    this.filled = 0;
  }
}

/** Reader side: stored buckets merged with the staged points not folded yet. */
export class RollupReader {
  private readonly stored: Record<Resolution, Statement<unknown[]>>;
  private readonly staged;
  readonly rollups: (q: RollupQuery) => Rollup[];

  constructor(db: Db, private readonly names: Names) {
    const sel = (r: Resolution) => db.prepare(`SELECT bucket, n, num_n, min, max, sum, first_ts, first_mid, first_v, last_ts, last_mid, last_v
      FROM ${TABLE[r]} WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket`);
    this.stored = { '1m': sel('1m'), '1h': sel('1h') };
    this.staged = db.prepare(`SELECT r.ts, r.message_id, r.v FROM points_recent r
      WHERE r.tenant_id = ? AND r.ts >= ? AND r.ts < ? AND r.device_id = ? AND r.key_id = ? AND ${NEW_STAGED}`).raw();
    // Both statements in one read transaction: the same commit, even while the writer compacts.
    this.rollups = db.transaction((q: RollupQuery) => this.rollupsIn(q));
  }

  private rollupsIn(q: RollupQuery): Rollup[] {
    const ms = resolutionMs(checkResolution(q.resolution));
    const tenantId = this.names.tenant(q.tenant);
    const deviceId = tenantId === undefined ? undefined : this.names.find(NameKind.device, tenantId, q.device);
    const keyId = deviceId === undefined ? undefined : this.names.find(NameKind.key, tenantId!, q.key);
    if (keyId === undefined || q.to <= q.from) return [];
    const byBucket = new Map<number, Acc>();
    for (const r of this.stored[q.resolution].iterate(tenantId, deviceId, keyId, q.from, q.to) as IterableIterator<StoredRow>) {
      byBucket.set(r.bucket, {
        count: r.n, numericCount: r.num_n, min: r.min, max: r.max, sum: r.sum,
        firstTs: r.first_ts, firstMid: r.first_mid, first: r.first_v, lastTs: r.last_ts, lastMid: r.last_mid, last: r.last_v,
      });
    }
    // Buckets starting in [from, to) hold the points from the first such start to the last one's end.
    const lo = bucketCeil(q.from, ms);
    const hi = bucketCeil(q.to, ms);
    for (const [ts, mid, v] of this.staged.iterate(tenantId, lo, hi, deviceId, keyId) as IterableIterator<[number, string, SqlValue]>) {
      const b = ts - (((ts % ms) + ms) % ms);
      const acc = byBucket.get(b);
      if (acc) addPoint(acc, ts, mid, v);
      else byBucket.set(b, newAcc(ts, mid, v));
    }
    return [...byBucket].sort((a, b) => a[0] - b[0]).map(([b, acc]) => toRollup(b, acc, decodeValue));
  }
}

function rows(n: number): string {
  const one = `(${Array(COLS).fill('?').join(',')})`;
  return Array(n).fill(one).join(',');
}
