/**
 * @module 1-minute and 1-hour roll-ups of the embedded store (tables `rollup_1m`, `rollup_1h`,
 * series-ordered like `points`), kept exact under replays, reordering and late data.
 *
 * Why they are folded at compaction and not per writeBatch: a point is known to be new only
 * once it is checked against `points` (staging dedups only among staged rows), and upserting a
 * series-ordered table per batch dirties one page per series per commit, the very cost staging
 * avoids (./schema.ts; the same choice as latest state, ./latest.ts). The compaction
 * (./write.ts), just before it moves the staged points into `points`, folds those that `points`
 * does not hold yet into their buckets, in the same transaction. Reads merge the stored
 * buckets with the staged points `points` does not hold yet, in one read transaction, so at
 * every commit the roll-ups a reader sees equal a recomputation from the raw points; after a
 * crash, staged points are still staged and the next compaction folds them. A point replayed
 * after raw retention deleted it is counted again (nothing is left to recognise it by).
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
const RESOLUTIONS = ['1m', '1h'] as const;

/** A staged point `points` does not hold yet (a replay of a compacted point is skipped). */
const NEW_STAGED = `NOT EXISTS (SELECT 1 FROM points p WHERE p.tenant_id = r.tenant_id AND p.device_id = r.device_id
  AND p.key_id = r.key_id AND p.ts = r.ts AND p.message_id = r.message_id)`;

type Acc = RollupAcc<SqlValue>;
interface StoredRow { bucket: number; n: number; num_n: number; min: number | null; max: number | null; sum: number | null;
  first_ts: number; first_mid: string; first_v: SqlValue; last_ts: number; last_mid: string; last_v: SqlValue }

/** Buckets of one series being folded: the last bucket touched is kept at hand (rows come mostly in order). */
interface SeriesFold { t: number; d: number; k: number; compacted: number | undefined; stagedMax: number; buckets: Record<Resolution, Map<number, Acc>>; last: Record<Resolution, { b: number; acc: Acc | undefined }> }

/** Writer side: folds the points a compaction moved into the tables, and deletes old buckets. */
export class RollupWriter {
  private readonly staged;
  private readonly exists;
  private readonly seriesMax;
  /** Per series (device id → key id), a device time no later than the newest in `points`. */
  private readonly compactedMax = new Map<number, Map<number, number>>();
  private readonly upserts: Record<Resolution, { many: Statement<unknown[]>; one: Statement<unknown[]> }>;
  /** One parameter buffer per resolution. */
  private readonly params = { '1m': new Array<unknown>(ROWS_PER_STATEMENT * COLS), '1h': new Array<unknown>(ROWS_PER_STATEMENT * COLS) };
  private readonly tenants;
  private readonly series;
  private readonly deleteSeries: Record<Resolution, Statement<unknown[]>>;

  constructor(private readonly db: Db) {
    // In staging order (by time): no sort; `foldStaged` groups by series itself.
    this.staged = db.prepare('SELECT tenant_id, device_id, key_id, ts, message_id, v FROM points_recent').raw();
    this.exists = db.prepare('SELECT 1 FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts = ? AND message_id = ?').pluck();
    this.seriesMax = db.prepare('SELECT max(ts) FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ?').pluck();
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
   * Folds the staged points that `points` does not hold yet (so a replay of a compacted point
   * is not counted twice) into both tables; runs in the compaction transaction, before the move.
   * A staged point later than everything its series has in `points` is new without a lookup
   * (`compactedMax`, learnt per series on first sight); only the others are looked up. SQLite
   * runs no other statement while one is being read, so lookups and upserts come after the
   * scan, and the buckets are gathered first (at most one per staged point). Returns the points folded.
   */
  foldStaged(): number {
    const ms: Record<Resolution, number> = { '1m': resolutionMs('1m'), '1h': resolutionMs('1h') };
    const byDevice = new Map<number, Map<number, SeriesFold>>();
    const order: SeriesFold[] = [];
    /** Staged rows that may already be in `points`. */
    const doubtful: Array<[SeriesFold, number, string, SqlValue]> = [];
    let cur: SeriesFold | undefined;
    for (const [t, d, k, ts, mid, v] of this.staged.iterate() as IterableIterator<[number, number, number, number, string, SqlValue]>) {
      if (!cur || cur.d !== d || cur.k !== k) {
        let keys = byDevice.get(d);
        if (!keys) byDevice.set(d, keys = new Map());
        cur = keys.get(k);
        if (!cur) {
          cur = { t, d, k, compacted: this.compactedMax.get(d)?.get(k), stagedMax: -Infinity,
            buckets: { '1m': new Map(), '1h': new Map() }, last: { '1m': { b: NaN, acc: undefined }, '1h': { b: NaN, acc: undefined } } };
          keys.set(k, cur);
          order.push(cur);
        }
      }
      if (ts > cur.stagedMax) cur.stagedMax = ts;
      if (cur.compacted !== undefined && ts > cur.compacted) this.add(cur, ts, mid, v, ms);
      else doubtful.push([cur, ts, mid, v]);
    }
    for (const f of order) {
      if (f.compacted === undefined) f.compacted = (this.seriesMax.get(f.t, f.d, f.k) as number | null) ?? -Infinity;
    }
    let n = 0;
    for (const [f, ts, mid, v] of doubtful) {
      if (ts > f.compacted! || this.exists.get(f.t, f.d, f.k, ts, mid) === undefined) this.add(f, ts, mid, v, ms);
    }
    // Upserts in key order: neighbouring rows share pages.
    order.sort((x, y) => x.t - y.t || x.d - y.d || x.k - y.k);
    for (const r of RESOLUTIONS) {
      const out = new Batcher(this.upserts[r], this.params[r]);
      for (const f of order) for (const [b, acc] of f.buckets[r]) { out.add(f.t, f.d, f.k, b, acc); n += r === '1h' ? acc.count : 0; }
      out.end();
    }
    // After the move `points` holds every staged point. Only ever raised: a rolled-back
    // compaction leaves it too high, which costs lookups, never a wrong count.
    for (const f of order) {
      let keys = this.compactedMax.get(f.d);
      if (!keys) this.compactedMax.set(f.d, keys = new Map());
      keys.set(f.k, Math.max(f.compacted!, f.stagedMax));
    }
    return n;
  }

  private add(f: SeriesFold, ts: number, mid: string, v: SqlValue, ms: Record<Resolution, number>): void {
    for (const r of RESOLUTIONS) {
      const b = ts - (((ts % ms[r]) + ms[r]) % ms[r]);
      const last = f.last[r];
      if (last.b === b) {
        addPoint(last.acc!, ts, mid, v);
        continue;
      }
      let acc = f.buckets[r].get(b);
      if (acc) addPoint(acc, ts, mid, v);
      else f.buckets[r].set(b, acc = newAcc(ts, mid, v));
      last.b = b;
      last.acc = acc;
    }
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
