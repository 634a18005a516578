/**
 * @module Which resolution a history query reads, and bucketed history from the roll-ups.
 *
 * Choice (`resolution=auto`, the default):
 * - with `interval`: a whole multiple of 1 h reads the hourly roll-ups, of 1 min the minute
 *   roll-ups, anything else (15s, 90s) the raw points;
 * - without `interval` (a raw listing of one key) over a range longer than RAW_MAX_RANGE_MS
 *   (3 days, the default raw retention: beyond it raw history is gone anyway) whose points do
 *   not fit in one page (`limit`): minute buckets up to MINUTE_MAX_RANGE_MS (7 days, 10,080
 *   buckets), hourly buckets beyond. A listing that fits one page stays raw, and so does one
 *   with a cursor (it is paging) or without a key (roll-ups are per key);
 * - `resolution=raw|1m|1h` forces one (an interval must then be a multiple of it).
 *
 * Roll-ups answer the same buckets raw points would: the whole roll-up buckets inside
 * [from, to) come from the store, and the partial ones at an unaligned `from` or `to` are
 * folded here from the raw points of that edge (at most one roll-up bucket's worth each). Once
 * raw retention removed those points, an unaligned edge bucket holds less: align from/to to
 * the resolution for old ranges.
 */
import { FluxgateError } from '../../core/errors.js';
import { bucketCeil, bucketStart, foldPoints, fromRollup, mergeAcc, toRollup, type RollupAcc } from '../../stores/rollup.js';
import { RESOLUTION_MS, type AggFn, type Resolution, type Rollup, type Store, type TelemetryPoint } from '../../stores/store.js';

export type HistoryResolution = 'raw' | Resolution;
export const RAW_MAX_RANGE_MS = 3 * 86_400_000;
export const MINUTE_MAX_RANGE_MS = 7 * 86_400_000;
/** Points per page when folding an edge from raw points. */
const EDGE_PAGE = 10_000;

/** The roll-up a bucketed query reads: the coarsest one its interval is a whole multiple of. */
export function resolutionForInterval(intervalMs: number, forced?: HistoryResolution): HistoryResolution {
  if (forced === 'raw') return 'raw';
  if (forced !== undefined) {
    if (intervalMs % RESOLUTION_MS[forced] !== 0) {
      throw new FluxgateError('BAD_REQUEST', `interval ${intervalMs} ms is not a whole multiple of resolution ${forced}: pick another interval or resolution`);
    }
    return forced;
  }
  if (intervalMs % RESOLUTION_MS['1h'] === 0) return '1h';
  if (intervalMs % RESOLUTION_MS['1m'] === 0) return '1m';
  return 'raw';
}

/** The roll-up a raw listing over [from, to) may be answered with instead (if its points do not fit one page). */
export function resolutionForListing(from: number, to: number, forced?: HistoryResolution): HistoryResolution {
  if (forced !== undefined) return forced;
  const span = to - from;
  if (span <= RAW_MAX_RANGE_MS) return 'raw';
  return span <= MINUTE_MAX_RANGE_MS ? '1m' : '1h';
}

export interface RollupHistoryQuery { tenant: string; device: string; key: string; from: number; to: number; intervalMs: number; resolution: Resolution }

/** Buckets of `intervalMs` (a multiple of the resolution) over [from, to), from roll-ups plus raw edges. */
export async function rollupHistory(store: Store, q: RollupHistoryQuery): Promise<Rollup[]> {
  const ms = RESOLUTION_MS[q.resolution];
  const inner = { from: bucketCeil(q.from, ms), to: bucketStart(q.to, ms) };
  const parts: Rollup[] = [];
  if (inner.from >= inner.to) {
    parts.push(...await rawEdge(store, q, q.from, q.to, ms));
  } else {
    parts.push(...await rawEdge(store, q, q.from, inner.from, ms));
    parts.push(...await store.rollups({ tenant: q.tenant, device: q.device, key: q.key, from: inner.from, to: inner.to, resolution: q.resolution }));
    parts.push(...await rawEdge(store, q, inner.to, q.to, ms));
  }
  // The parts cover disjoint times: merging them into interval buckets needs no message ids.
  const byBucket = new Map<number, RollupAcc>();
  for (const r of parts) {
    const b = bucketStart(r.ts, q.intervalMs);
    const acc = byBucket.get(b);
    if (acc) mergeAcc(acc, fromRollup(r));
    else byBucket.set(b, fromRollup(r));
  }
  return [...byBucket].sort((a, b) => a[0] - b[0]).map(([b, acc]) => toRollup(b, acc, (v) => v));
}

/** Roll-ups of width `ms` folded from the raw points of [lo, hi) (an edge shorter than one bucket). */
async function rawEdge(store: Store, q: RollupHistoryQuery, lo: number, hi: number, ms: number): Promise<Rollup[]> {
  if (lo >= hi) return [];
  const points: TelemetryPoint[] = [];
  let after: string | undefined;
  do {
    const page = await store.range({ tenant: q.tenant, device: q.device, key: q.key, from: lo, to: hi, limit: EDGE_PAGE, after });
    points.push(...page.items);
    after = page.next;
  } while (after !== undefined);
  return foldPoints(points, ms).map(([b, acc]) => toRollup(b, acc, (v) => v));
}

/** The value of one aggregate in a roll-up bucket, as the raw aggregate would give it. */
export function aggValue(r: Rollup, agg: AggFn): Rollup['last'] | null {
  switch (agg) {
    case 'count': return r.count;
    case 'last': return r.last;
    default: return r[agg];
  }
}
