/**
 * @module Roll-up arithmetic shared by every store and the history API: folding points into a
 * bucket's accumulator and merging accumulators. Every part is mergeable (count, numeric count,
 * min, max, sum; first/last compare device time, then message id), so a late point or a batch
 * written later corrects its bucket whatever the arrival order, and the result equals a
 * recomputation from the raw points. Strings and booleans count in `count` and can be
 * `first`/`last`; only numbers reach min/max/sum/avg. `V` is the store's own value form (the
 * embedded store keeps booleans as one-byte buffers): only `typeof v === 'number'` is numeric.
 */
import { FluxgateError } from '../core/errors.js';
import type { Resolution, Rollup, Value } from './store.js';
import { RESOLUTION_MS } from './store.js';

export interface RollupAcc<V = Value> {
  count: number; numericCount: number;
  min: number | null; max: number | null; sum: number | null;
  firstTs: number; firstMid: string; first: V;
  lastTs: number; lastMid: string; last: V;
}

/** Start of the bucket of width `ms` holding `ts`, aligned to the epoch (floored before 1970). */
export function bucketStart(ts: number, ms: number): number {
  return ts - (((ts % ms) + ms) % ms);
}

/** The smallest bucket start ≥ ts. */
export function bucketCeil(ts: number, ms: number): number {
  const b = bucketStart(ts, ms);
  return b === ts ? b : b + ms;
}

export function resolutionMs(r: Resolution): number {
  return RESOLUTION_MS[r];
}

export function newAcc<V>(ts: number, mid: string, v: V): RollupAcc<V> {
  const n = typeof v === 'number' && !Number.isNaN(v);
  return {
    count: 1, numericCount: n ? 1 : 0, min: n ? v : null, max: n ? v : null, sum: n ? v : null,
    firstTs: ts, firstMid: mid, first: v, lastTs: ts, lastMid: mid, last: v,
  };
}

/** Folds one point into `acc`. */
export function addPoint<V>(acc: RollupAcc<V>, ts: number, mid: string, v: V): void {
  acc.count++;
  if (typeof v === 'number' && !Number.isNaN(v)) {
    acc.numericCount++;
    acc.min = acc.min === null || v < acc.min ? v : acc.min;
    acc.max = acc.max === null || v > acc.max ? v : acc.max;
    acc.sum = acc.sum === null ? v : acc.sum + v;
  }
  if (ts < acc.firstTs || (ts === acc.firstTs && mid < acc.firstMid)) {
    acc.firstTs = ts; acc.firstMid = mid; acc.first = v;
  }
  if (ts > acc.lastTs || (ts === acc.lastTs && mid > acc.lastMid)) {
    acc.lastTs = ts; acc.lastMid = mid; acc.last = v;
  }
}

/** Merges `b` into `a` (both of the same series and bucket, or of disjoint buckets being widened). */
export function mergeAcc<V>(a: RollupAcc<V>, b: RollupAcc<V>): void {
  a.count += b.count;
  a.numericCount += b.numericCount;
  if (b.min !== null && (a.min === null || b.min < a.min)) a.min = b.min;
  if (b.max !== null && (a.max === null || b.max > a.max)) a.max = b.max;
  if (b.sum !== null) a.sum = a.sum === null ? b.sum : a.sum + b.sum;
  if (b.firstTs < a.firstTs || (b.firstTs === a.firstTs && b.firstMid < a.firstMid)) {
    a.firstTs = b.firstTs; a.firstMid = b.firstMid; a.first = b.first;
  }
  if (b.lastTs > a.lastTs || (b.lastTs === a.lastTs && b.lastMid > a.lastMid)) {
    a.lastTs = b.lastTs; a.lastMid = b.lastMid; a.last = b.last;
  }
}

/** The contract's view of an accumulator; `decode` turns the store's value form into a Value. */
export function toRollup<V>(ts: number, acc: RollupAcc<V>, decode: (v: V) => Value): Rollup {
  return {
    ts, count: acc.count, numericCount: acc.numericCount, min: acc.min, max: acc.max, sum: acc.sum,
    avg: acc.sum === null || acc.numericCount === 0 ? null : acc.sum / acc.numericCount,
    first: decode(acc.first), firstTs: acc.firstTs, last: decode(acc.last), lastTs: acc.lastTs,
  };
}

/** A Rollup back as an accumulator (message ids unknown: merge only across disjoint buckets). */
export function fromRollup(r: Rollup): RollupAcc {
  return {
    count: r.count, numericCount: r.numericCount, min: r.min, max: r.max, sum: r.sum,
    firstTs: r.firstTs, firstMid: '', first: r.first, lastTs: r.lastTs, lastMid: '', last: r.last,
  };
}

/**
 * Folds points, in any order, into per-bucket accumulators of width `ms`; returns them by
 * bucket start ascending. The reference recomputation the property test compares stores with.
 */
export function foldPoints<V>(points: Iterable<{ ts: number; messageId: string; value: V }>, ms: number): Array<[number, RollupAcc<V>]> {
  const byBucket = new Map<number, RollupAcc<V>>();
  for (const p of points) {
    const b = bucketStart(p.ts, ms);
    const acc = byBucket.get(b);
    if (acc) addPoint(acc, p.ts, p.messageId, p.value);
    else byBucket.set(b, newAcc(p.ts, p.messageId, p.value));
  }
  return [...byBucket].sort((x, y) => x[0] - y[0]);
}

/** Refuses a resolution the stores do not keep (the worker boundary and REST erase types). */
export function checkResolution(r: unknown): Resolution {
  if (r !== '1m' && r !== '1h') throw new FluxgateError('BAD_REQUEST', `resolution must be 1m or 1h, not ${String(r)}`);
  return r;
}
