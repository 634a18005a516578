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
 *
 * Memory between compactions: a fleet sending snapshots puts one or two points into one minute
 * per series between two compactions, and the writer compacts at 100,000 pending series
 * (./write.ts), so the per-series cost is what counts. The pending state of a series lives in
 * columns indexed by its slot of the writer's PendingSeries (./latest.ts), unboxed numbers where
 * they are numbers: the accumulator of its current minute inline (min/max/sum are null exactly
 * when numericCount is 0); only a series with a second minute or a dirty bucket gets a
 * MoreBuckets; hour buckets exist only during the flush. Measured with
 * `node --expose-gc --import tsx bench/writer-pending-memory.ts` (100,008 series of 9-key
 * snapshots, half of them sent twice: 150,012 points; V8 heap freed by the compaction ÷ series,
 * latest state and roll-ups together): 1,481 bytes per pending series with one SeriesFold object
 * per series (two Maps, two Sets, three small objects, an accumulator object, a LatestEntry),
 * 322 bytes now; with one point per series (`--second 0`) 1,446 → 292 bytes.
 */
import type { Statement } from 'better-sqlite3';
import { addPoint, bucketCeil, bucketStart, checkResolution, mergeAcc, newAcc, resolutionMs, toRollup, type RollupAcc } from '../rollup.js';
import type { Resolution, Rollup, RollupQuery } from '../store.js';
import { decodeValue, type SqlValue } from './codec.js';
import type { PendingSeries } from './latest.js';
import type { Names } from './names.js';
import { NameKind, writeTransaction, type Db } from './schema.js';
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

/** The rarer pending state of a series: minute buckets other than its current one, dirty buckets. */
class MoreBuckets {
  /** Deltas of buckets whose every new point is known, but the series' current one (held inline). */
  readonly minutes = new Map<number, Acc>();
  /** Buckets to recompute from `points` at compaction (a replay or a late point touched them). */
  readonly dirtyMinutes = new Set<number>();
  readonly dirtyHours = new Set<number>();
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
  // Columns by slot of `pending`. `bound`: an upper bound of the device times the series has in
  // `points`; `stagedMax`: the latest device time staged since the last compaction; `minute`: the
  // start of the current bucket (NaN: none), whose accumulator is the columns after it.
  private readonly bound: number[] = [];
  private readonly stagedMax: number[] = [];
  private readonly minute: number[] = [];
  private readonly count: number[] = [];
  private readonly numericCount: number[] = [];
  private readonly min: number[] = [];
  private readonly max: number[] = [];
  private readonly sum: number[] = [];
  private readonly firstTs: number[] = [];
  private readonly firstMid: string[] = [];
  private readonly first: SqlValue[] = [];
  private readonly lastTs: number[] = [];
  private readonly lastMid: string[] = [];
  private readonly last: SqlValue[] = [];
  private readonly more: Array<MoreBuckets | undefined> = [];
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

  /** `pending`: the writer's series index, shared with its pending latest state; the writer clears it after `compacted()`. */
  constructor(private readonly db: Db, private readonly pending: PendingSeries, private readonly maxTracked = MAX_TRACKED_SERIES) {
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
    for (const [t, dev, key, ts] of this.stagedRows.all() as Array<[number, number, number, number]>) {
      const s = this.pending.slot(t, dev, key);
      this.fold(s);
      this.markDirty(s, ts);
    }
  }

  /**
   * Takes one committed point of the series in slot `s` of the writer's PendingSeries: `fresh`
   * when its staging insert stored every row of its statement (so it was not staged before).
   */
  offer(s: number, ts: number, mid: string, v: SqlValue, fresh: boolean): void {
    // Hot path (every written point): array reads and writes only, unless the point opens a new minute.
    if (s >= this.bound.length) this.fold(s);
    if (ts > this.stagedMax[s]) this.stagedMax[s] = ts;
    if (!fresh || ts <= this.bound[s]) {
      this.markDirty(s, ts);
      return;
    }
    // Hours are merged from the minutes at compaction (an hour is dirty when a minute of it is).
    const b = bucketStart(ts, MINUTE);
    if (this.minute[s] === b) this.addInline(s, ts, mid, v);
    else this.switchMinute(s, b, ts, mid, v);
  }

  /** A point into another minute than the series' current one: that one moves into MoreBuckets, and `b` becomes current. */
  private switchMinute(s: number, b: number, ts: number, mid: string, v: SqlValue): void {
    let more = this.more[s];
    if (more !== undefined && more.dirtyMinutes.has(b)) return;
    const cur = this.minute[s];
    if (!Number.isNaN(cur)) {
      if (more === undefined) this.more[s] = more = new MoreBuckets();
      more.minutes.set(cur, this.accOf(s));
    }
    const acc = more?.minutes.get(b);
    if (acc === undefined) {
      this.setInline(s, b, newAcc(ts, mid, v));
      return;
    }
    more!.minutes.delete(b);
    this.setInline(s, b, acc);
    this.addInline(s, ts, mid, v);
  }

  /** addPoint() on the series' current bucket. */
  private addInline(s: number, ts: number, mid: string, v: SqlValue): void {
    this.count[s]++;
    if (typeof v === 'number' && !Number.isNaN(v)) {
      if (this.numericCount[s]++ === 0) {
        this.min[s] = v;
        this.max[s] = v;
        this.sum[s] = v;
      } else {
        if (v < this.min[s]) this.min[s] = v;
        if (v > this.max[s]) this.max[s] = v;
        this.sum[s] += v;
      }
    }
    if (ts < this.firstTs[s] || (ts === this.firstTs[s] && mid < this.firstMid[s])) {
      this.firstTs[s] = ts; this.firstMid[s] = mid; this.first[s] = v;
    }
    if (ts > this.lastTs[s] || (ts === this.lastTs[s] && mid > this.lastMid[s])) {
      this.lastTs[s] = ts; this.lastMid[s] = mid; this.last[s] = v;
    }
  }

  private setInline(s: number, b: number, a: Acc): void {
    this.minute[s] = b;
    this.count[s] = a.count;
    this.numericCount[s] = a.numericCount;
    this.min[s] = a.min ?? 0;
    this.max[s] = a.max ?? 0;
    this.sum[s] = a.sum ?? 0;
    this.firstTs[s] = a.firstTs; this.firstMid[s] = a.firstMid; this.first[s] = a.first;
    this.lastTs[s] = a.lastTs; this.lastMid[s] = a.lastMid; this.last[s] = a.last;
  }

  /** The series' current bucket as an accumulator of its own. */
  private accOf(s: number): Acc {
    const numeric = this.numericCount[s] > 0;
    return {
      count: this.count[s], numericCount: this.numericCount[s],
      min: numeric ? this.min[s] : null, max: numeric ? this.max[s] : null, sum: numeric ? this.sum[s] : null,
      firstTs: this.firstTs[s], firstMid: this.firstMid[s], first: this.first[s],
      lastTs: this.lastTs[s], lastMid: this.lastMid[s], last: this.last[s],
    };
  }

  /** The series' pending minute buckets. */
  private *minutes(s: number): Generator<[number, Acc]> {
    if (!Number.isNaN(this.minute[s])) yield [this.minute[s], this.accOf(s)];
    const more = this.more[s];
    if (more !== undefined) yield* more.minutes;
  }

  /**
   * Writes the pending state into the tables; runs in the compaction transaction, after the
   * staged points moved into `points`. Leaves the pending state as it is (a failed compaction
   * rolls back and the next one retries): `compacted()` clears it once committed.
   */
  flush(): void {
    const { tenant: T, device: D, key: K } = this.pending;
    // Key order: neighbouring rows share pages.
    const order = Array.from({ length: this.bound.length }, (_, s) => s).sort((x, y) => T[x] - T[y] || D[x] - D[y] || K[x] - K[y]);
    for (const r of RESOLUTIONS) {
      const out = new Batcher(this.upserts[r], this.params[r]);
      for (const s of order) {
        const more = this.more[s];
        if (r === '1m') {
          for (const [b, acc] of this.minutes(s)) out.add(T[s], D[s], K[s], b, acc);
        } else if (more === undefined) {
          // One minute, nothing dirty: its hour is that minute.
          const b = this.minute[s];
          if (!Number.isNaN(b)) out.add(T[s], D[s], K[s], bucketStart(b, HOUR), this.accOf(s));
        } else {
          const hours = new Map<number, Acc>();
          for (const [b, acc] of this.minutes(s)) {
            const h = bucketStart(b, HOUR);
            if (more.dirtyHours.has(h)) continue;
            const cur = hours.get(h);
            if (cur) mergeAcc(cur, acc);
            else hours.set(h, { ...acc });
          }
          for (const [h, acc] of hours) out.add(T[s], D[s], K[s], h, acc);
        }
      }
      out.end();
      const ms = this.ms[r];
      for (const s of order) {
        const more = this.more[s];
        if (more === undefined) continue;
        for (const b of r === '1m' ? more.dirtyMinutes : more.dirtyHours) {
          const rows = this.bucketRows.all(T[s], D[s], K[s], b, b + ms) as Array<[number, string, SqlValue]>;
          if (rows.length === 0) continue;
          const acc = newAcc(rows[0][0], rows[0][1], rows[0][2]);
          for (let i = 1; i < rows.length; i++) addPoint(acc, rows[i][0], rows[i][1], rows[i][2]);
          const p = this.params[r];
          fillRow(p, 0, T[s], D[s], K[s], b, acc);
          this.replace[r].run(p.slice(0, COLS));
        }
      }
    }
  }

  /** The compaction committed: `points` holds every staged point; pending state starts over (the writer then clears the PendingSeries). */
  compacted(): void {
    // Only here, with nothing pending: a series seen next reads its bound from `points`, which now holds everything.
    if (this.tracked > this.maxTracked) {
      this.compactedMax.clear();
      this.tracked = 0;
    }
    const { device, key } = this.pending;
    for (let s = 0; s < this.bound.length; s++) {
      let keys = this.compactedMax.get(device[s]);
      if (!keys) this.compactedMax.set(device[s], keys = new Map());
      if (!keys.has(key[s])) this.tracked++;
      keys.set(key[s], Math.max(this.bound[s], this.stagedMax[s]));
    }
    for (const column of [this.bound, this.stagedMax, this.minute, this.count, this.numericCount, this.min, this.max, this.sum,
      this.firstTs, this.firstMid, this.first, this.lastTs, this.lastMid, this.last, this.more]) column.length = 0;
  }

  /** Series with pending roll-up state (tests and metrics). */
  get size(): number {
    return this.bound.length;
  }

  /** Series whose compacted upper bound is held in memory (metrics). */
  get seriesTracked(): number {
    return this.tracked;
  }

  /** Gives the series in slot `s` (and any slot before it still without) its pending roll-up state. */
  private fold(s: number): void {
    const { tenant, device, key } = this.pending;
    for (let i = this.bound.length; i <= s; i++) {
      const t = tenant[i];
      const d = device[i];
      const k = key[i];
      let compacted = this.compactedMax.get(d)?.get(k);
      if (compacted === undefined) {
        compacted = (this.seriesMax.get(t, d, k) as number | null) ?? -Infinity;
        let known = this.compactedMax.get(d);
        if (!known) this.compactedMax.set(d, known = new Map());
        if (!known.has(k)) this.tracked++;
        known.set(k, compacted);
      }
      this.bound.push(compacted);
      this.stagedMax.push(-Infinity);
      this.minute.push(NaN);
      this.count.push(0);
      this.numericCount.push(0);
      this.min.push(0);
      this.max.push(0);
      this.sum.push(0);
      this.firstTs.push(0);
      this.firstMid.push('');
      this.first.push(0);
      this.lastTs.push(0);
      this.lastMid.push('');
      this.last.push(0);
      this.more.push(undefined);
    }
  }

  private markDirty(s: number, ts: number): void {
    if (ts > this.stagedMax[s]) this.stagedMax[s] = ts;
    let more = this.more[s];
    if (more === undefined) this.more[s] = more = new MoreBuckets();
    const b = bucketStart(ts, MINUTE);
    more.dirtyMinutes.add(b);
    more.dirtyHours.add(bucketStart(ts, HOUR));
    if (this.minute[s] === b) this.minute[s] = NaN;
    else more.minutes.delete(b);
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
        removed += writeTransaction(this.db, () => {
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
      const b = bucketStart(ts, ms);
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
