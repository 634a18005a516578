/**
 * @module 1-minute and 1-hour roll-ups of the embedded store (tables `rollup_1m`, `rollup_1h`,
 * series-ordered like `points`), kept exact under replays, reordering and late data.
 *
 * Why they reach their tables at compaction and not per writeBatch: upserting a series-ordered
 * table per batch dirties one page per series per commit, the very cost staging avoids
 * (./schema.ts; the same choice as latest state, ./latest.ts). Written points are folded in
 * memory into pending per-bucket deltas (RollupWriter), and the compaction that moves the staged
 * points into `points` writes them in the same transaction. Reads (RollupReader) merge the
 * stored buckets with the staged points `points` does not hold yet, in one read transaction, so
 * at every commit the roll-ups a reader sees equal a recomputation from the raw points; after a
 * crash the staged points are still staged and their buckets are recomputed at the next
 * compaction. A point replayed after raw retention deleted it is counted again (nothing is left
 * to recognise it by), and a late point into a bucket whose raw points retention removed
 * recomputes that bucket from what is left.
 */
import type { Statement } from 'better-sqlite3';
import { addPoint, bucketCeil, checkResolution, mergeAcc, newAcc, resolutionMs, toRollup, type RollupAcc } from '../rollup.js';
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
const MINUTE = 60_000;
/** Series whose compacted upper bound is remembered; past it the map starts over at a compaction (a forgotten one costs one indexed max() read). */
export const MAX_TRACKED_SERIES = 1_000_000;
const HOUR = 3_600_000;

/** A staged point `points` does not hold yet (a replay of a compacted point is skipped). */
const NEW_STAGED = `NOT EXISTS (SELECT 1 FROM points p WHERE p.tenant_id = r.tenant_id AND p.device_id = r.device_id
  AND p.key_id = r.key_id AND p.ts = r.ts AND p.message_id = r.message_id)`;

type Acc = RollupAcc<SqlValue>;
interface StoredRow { bucket: number; n: number; num_n: number; min: number | null; max: number | null; sum: number | null;
  first_ts: number; first_mid: string; first_v: SqlValue; last_ts: number; last_mid: string; last_v: SqlValue }

/** Pending roll-up state of one series since the last compaction. */
interface SeriesFold {
  t: number; d: number; k: number;
  /** An upper bound of the device times this series has in `points`. */
  compacted: number;
  /** The latest device time staged since the last compaction. */
  stagedMax: number;
  /** Deltas of buckets whose every new point is known. */
  buckets: Record<Resolution, Map<number, Acc>>;
  /** Buckets to recompute from `points` at compaction (a replay or a late point touched them). */
  dirty: Record<Resolution, Set<number>>;
  last: Record<Resolution, { b: number; acc: Acc | undefined }>;
}

/**
 * Writer side. Points are folded as they are written (after their batch commits) into pending
 * minute-bucket deltas held here; the compaction merges them into hour deltas and upserts both
 * in the transaction that moves the points into `points`. A point is certainly new when its staging insert stored every
 * row of its statement and its device time is later than anything its series has in `points`
 * (an upper bound learnt per series on first sight, raised by each compaction): then its delta
 * is exact. Any other point (a replay, a late point behind a compaction) marks its buckets
 * dirty: the compaction recomputes those from `points` after the move. After a crash the
 * pending state is rebuilt from the staged rows, every bucket they touch dirty.
 */
export class RollupWriter {
  private readonly stagedRows;
  private readonly seriesMax;
  private readonly bucketRows;
  private readonly pending = new Map<number, Map<number, SeriesFold>>();
  private readonly order: SeriesFold[] = [];
  /** The device of the last offered point and its pending keys. */
  private lastDevice = -1;
  private lastKeys: Map<number, SeriesFold> | undefined;
  /** Per series (device id → key id), an upper bound of the device times in `points`. */
  private readonly compactedMax = new Map<number, Map<number, number>>();
  private tracked = 0;
  private readonly upserts: Record<Resolution, { many: Statement<unknown[]>; one: Statement<unknown[]> }>;
  private readonly replace: Record<Resolution, Statement<unknown[]>>;
  /** One parameter buffer per resolution. */
  private readonly params = { '1m': new Array<unknown>(ROWS_PER_STATEMENT * COLS), '1h': new Array<unknown>(ROWS_PER_STATEMENT * COLS) };
  private readonly ms: Record<Resolution, number> = { '1m': resolutionMs('1m'), '1h': resolutionMs('1h') };
  private readonly tenants;
  private readonly series;
  private readonly deleteSeries: Record<Resolution, Statement<unknown[]>>;

  constructor(private readonly db: Db, private readonly maxTracked = MAX_TRACKED_SERIES) {
    this.stagedRows = db.prepare('SELECT tenant_id, device_id, key_id, ts FROM points_recent').raw();
    this.seriesMax = db.prepare('SELECT max(ts) FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ?').pluck();
    this.bucketRows = db.prepare('SELECT ts, message_id, v FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts >= ? AND ts < ?').raw();
    const cols = '(tenant_id, device_id, key_id, bucket, n, num_n, min, max, sum, first_ts, first_mid, first_v, last_ts, last_mid, last_v)';
    const upsert = (r: Resolution, n: number) => db.prepare(`INSERT INTO ${TABLE[r]} ${cols} VALUES ${rows(n)}
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
    const replace = (r: Resolution) => db.prepare(`INSERT OR REPLACE INTO ${TABLE[r]} ${cols} VALUES ${rows(1)}`);
    this.replace = { '1m': replace('1m'), '1h': replace('1h') };
    // After a crash: what was staged is not known to be new; recompute its buckets at compaction.
    for (const [t, dev, key, ts] of this.stagedRows.all() as Array<[number, number, number, number]>) this.markDirty(this.fold(t, dev, key), ts);
  }

  /**
   * Takes one committed point: `fresh` when its staging insert stored every row of its
   * statement (so it was not staged before).
   */
  offer(t: number, d: number, k: number, ts: number, mid: string, v: SqlValue, fresh: boolean): void {
    // Hot path (every written point): the device's keys are looked up once for its consecutive points.
    let keys = this.lastKeys;
    if (this.lastDevice !== d || !keys) {
      keys = this.pending.get(d);
      this.lastDevice = d;
      this.lastKeys = keys;
    }
    const f = keys?.get(k) ?? this.fold(t, d, k);
    if (ts > f.stagedMax) f.stagedMax = ts;
    if (!fresh || ts <= f.compacted) {
      this.markDirty(f, ts);
      return;
    }
    // Hours are merged from the minutes at compaction (an hour is dirty when a minute of it is).
    this.addTo(f, '1m', ts - (((ts % MINUTE) + MINUTE) % MINUTE), ts, mid, v);
  }

  private addTo(f: SeriesFold, r: Resolution, b: number, ts: number, mid: string, v: SqlValue): void {
    const last = f.last[r];
    if (last.b === b) {
      addPoint(last.acc!, ts, mid, v);
      return;
    }
    if (f.dirty[r].size > 0 && f.dirty[r].has(b)) return;
    let acc = f.buckets[r].get(b);
    if (acc) addPoint(acc, ts, mid, v);
    else f.buckets[r].set(b, acc = newAcc(ts, mid, v));
    last.b = b;
    last.acc = acc;
  }

  /**
   * Writes the pending state into the tables; runs in the compaction transaction, after the
   * staged points moved into `points`. Leaves the pending state as it is (a failed compaction
   * rolls back and the next one retries): `compacted()` clears it once committed.
   */
  flush(): void {
    // Key order: neighbouring rows share pages.
    const order = [...this.order].sort((x, y) => x.t - y.t || x.d - y.d || x.k - y.k);
    for (const f of order) {
      const hours = f.buckets['1h'] = new Map<number, Acc>();
      for (const [b, acc] of f.buckets['1m']) {
        const h = b - (((b % HOUR) + HOUR) % HOUR);
        if (f.dirty['1h'].size > 0 && f.dirty['1h'].has(h)) continue;
        const cur = hours.get(h);
        if (cur) mergeAcc(cur, acc);
        else hours.set(h, { ...acc });
      }
    }
    for (const r of RESOLUTIONS) {
      const out = new Batcher(this.upserts[r], this.params[r]);
      for (const f of order) for (const [b, acc] of f.buckets[r]) out.add(f.t, f.d, f.k, b, acc);
      out.end();
      const ms = this.ms[r];
      for (const f of order) {
        for (const b of f.dirty[r]) {
          const rows = this.bucketRows.all(f.t, f.d, f.k, b, b + ms) as Array<[number, string, SqlValue]>;
          if (rows.length === 0) continue;
          const acc = newAcc(rows[0][0], rows[0][1], rows[0][2]);
          for (let i = 1; i < rows.length; i++) addPoint(acc, rows[i][0], rows[i][1], rows[i][2]);
          const p = this.params[r];
          fillRow(p, 0, f.t, f.d, f.k, b, acc);
          this.replace[r].run(p.slice(0, COLS));
        }
      }
    }
  }

  /** The compaction committed: `points` holds every staged point; pending state starts over. */
  compacted(): void {
    // Only here, with nothing pending: a series seen next reads its bound from `points`, which now holds everything.
    if (this.tracked > this.maxTracked) {
      this.compactedMax.clear();
      this.tracked = 0;
    }
    for (const f of this.order) {
      let keys = this.compactedMax.get(f.d);
      if (!keys) this.compactedMax.set(f.d, keys = new Map());
      if (!keys.has(f.k)) this.tracked++;
      keys.set(f.k, Math.max(f.compacted, f.stagedMax));
    }
    this.pending.clear();
    this.order.length = 0;
    this.lastDevice = -1;
    this.lastKeys = undefined;
  }

  /** Buckets pending (tests and metrics). */
  get size(): number {
    return this.order.length;
  }

  /** Series whose compacted upper bound is held in memory (metrics). */
  get seriesTracked(): number {
    return this.tracked;
  }

  private fold(t: number, d: number, k: number): SeriesFold {
    let keys = this.pending.get(d);
    if (!keys) {
      this.pending.set(d, keys = new Map());
      this.lastDevice = -1;
    }
    let f = keys.get(k);
    if (!f) {
      let compacted = this.compactedMax.get(d)?.get(k);
      if (compacted === undefined) {
        compacted = (this.seriesMax.get(t, d, k) as number | null) ?? -Infinity;
        let known = this.compactedMax.get(d);
        if (!known) this.compactedMax.set(d, known = new Map());
        if (!known.has(k)) this.tracked++;
        known.set(k, compacted);
      }
      f = { t, d, k, compacted, stagedMax: -Infinity, buckets: { '1m': new Map(), '1h': new Map() }, dirty: { '1m': new Set(), '1h': new Set() },
        last: { '1m': { b: NaN, acc: undefined }, '1h': { b: NaN, acc: undefined } } };
      keys.set(k, f);
      this.order.push(f);
    }
    return f;
  }

  private markDirty(f: SeriesFold, ts: number): void {
    if (ts > f.stagedMax) f.stagedMax = ts;
    for (const r of RESOLUTIONS) {
      const ms = this.ms[r];
      const b = ts - (((ts % ms) + ms) % ms);
      f.dirty[r].add(b);
      f.buckets[r].delete(b);
      if (f.last[r].b === b) f.last[r] = { b: NaN, acc: undefined };
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

function fillRow(p: unknown[], o: number, t: number, d: number, k: number, bucket: number, a: Acc): void {
  p[o] = t; p[o + 1] = d; p[o + 2] = k; p[o + 3] = bucket; p[o + 4] = a.count; p[o + 5] = a.numericCount;
  p[o + 6] = a.min; p[o + 7] = a.max; p[o + 8] = a.sum;
  p[o + 9] = a.firstTs; p[o + 10] = a.firstMid; p[o + 11] = a.first; p[o + 12] = a.lastTs; p[o + 13] = a.lastMid; p[o + 14] = a.last;
}

/** Accumulates upsert rows and runs them 100 at a time. */
class Batcher {
  private filled = 0;
  constructor(private readonly stmt: { many: Statement<unknown[]>; one: Statement<unknown[]> }, private readonly p: unknown[]) {}

  add(t: number, d: number, k: number, bucket: number, a: Acc): void {
    fillRow(this.p, this.filled * COLS, t, d, k, bucket, a);
    if (++this.filled === ROWS_PER_STATEMENT) {
      this.stmt.many.run(this.p);
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
