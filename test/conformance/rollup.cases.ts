/**
 * @module Store conformance, roll-ups: 1-minute and 1-hour buckets (count, min, max, sum, avg,
 * first, last) kept by every backend as points are written, run inside `runStoreSuite`. They
 * count each stored point once (replays, in-batch duplicates), take late and out-of-order points
 * into the bucket they belong to, keep strings and booleans out of the numeric parts, and are
 * deleted by bucket for retention without touching raw points.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isFluxgateError } from '../../src/core/errors.js';
import { foldPoints, toRollup } from '../../src/stores/rollup.js';
import type { Resolution, Rollup, Store, TelemetryPoint, Value } from '../../src/stores/store.js';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const HOUR = 3_600_000;

function pt(ts: number, value: Value, over: Partial<TelemetryPoint> = {}): TelemetryPoint {
  return { tenant: 'acme', project: 'plant', device: 'd1', key: 'temp', ts, value, messageId: `m-${ts}`, ...over };
}
const write = (store: Store, points: TelemetryPoint[]) => store.writeBatch({ points, messages: [], deadLetters: [] });
const q = (resolution: Resolution, over: Partial<{ tenant: string; device: string; key: string; from: number; to: number }> = {}) =>
  ({ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + 24 * HOUR, resolution, ...over });
/** The parts a test compares, in a fixed order. */
const brief = (r: Rollup) => [r.ts, r.count, r.numericCount, r.min, r.max, r.sum, r.avg, r.first, r.firstTs, r.last, r.lastTs];

export function rollupCases(withStore: (fn: (store: Store) => Promise<void>) => Promise<void>): void {
  it('rollups - count, min, max, sum, avg, first and last per 1-minute and 1-hour bucket, whatever the arrival order', () => withStore(async (store) => {
    // Out of order inside a batch, and a late batch for buckets already written.
    await write(store, [pt(T0 + 30_000, 3), pt(T0 + 10_000, 1), pt(T0 + MIN + 5_000, 10), pt(T0 + HOUR + 1_000, 100)]);
    await write(store, [pt(T0 + 20_000, 2), pt(T0 + 5_000, 7), pt(T0 + MIN + 59_999, -10), pt(T0 + HOUR - 1, 50)]);
    const minutes = await store.rollups(q('1m'));
    assert.deepEqual(minutes.map(brief), [
      [T0, 4, 4, 1, 7, 13, 3.25, 7, T0 + 5_000, 3, T0 + 30_000],
      [T0 + MIN, 2, 2, -10, 10, 0, 0, 10, T0 + MIN + 5_000, -10, T0 + MIN + 59_999],
      [T0 + 59 * MIN, 1, 1, 50, 50, 50, 50, 50, T0 + HOUR - 1, 50, T0 + HOUR - 1],
      [T0 + HOUR, 1, 1, 100, 100, 100, 100, 100, T0 + HOUR + 1_000, 100, T0 + HOUR + 1_000],
    ]);
    const hours = await store.rollups(q('1h'));
    assert.deepEqual(hours.map(brief), [
      [T0, 7, 7, -10, 50, 63, 9, 7, T0 + 5_000, 50, T0 + HOUR - 1],
      [T0 + HOUR, 1, 1, 100, 100, 100, 100, 100, T0 + HOUR + 1_000, 100, T0 + HOUR + 1_000],
    ]);
    // Buckets whose start lies in [from, to).
    assert.deepEqual((await store.rollups(q('1m', { from: T0 + 1, to: T0 + HOUR }))).map((r) => r.ts), [T0 + MIN, T0 + 59 * MIN]);
    assert.deepEqual((await store.rollups(q('1h', { from: T0, to: T0 + HOUR }))).map((r) => r.ts), [T0]);
  }));

  it('rollups - a replayed batch, a duplicate inside a batch and a retry that overlaps count once', () => withStore(async (store) => {
    const batch = [pt(T0 + 1_000, 1), pt(T0 + 2_000, 2), pt(T0 + 2_000, 2), pt(T0 + 3_000, 'x')];
    await write(store, batch);
    await write(store, batch);
    await write(store, [pt(T0 + 3_000, 'x'), pt(T0 + 4_000, 4)]);
    await write(store, batch.slice(1));
    const [m] = await store.rollups(q('1m'));
    assert.deepEqual(brief(m), [T0, 4, 3, 1, 4, 7, 7 / 3, 1, T0 + 1_000, 4, T0 + 4_000]);
    const [h] = await store.rollups(q('1h'));
    assert.equal(h.count, 4);
    assert.equal(h.sum, 7);
  }));

  it('rollups - strings and booleans count and can be first or last; min, max, sum and avg read numbers only', () => withStore(async (store) => {
    await write(store, [pt(T0 + 1_000, 'on'), pt(T0 + 2_000, 5), pt(T0 + 3_000, true), pt(T0 + MIN + 1, false), pt(T0 + MIN + 2, 'off')]);
    const minutes = await store.rollups(q('1m'));
    assert.deepEqual(minutes.map(brief), [
      [T0, 3, 1, 5, 5, 5, 5, 'on', T0 + 1_000, true, T0 + 3_000],
      [T0 + MIN, 2, 0, null, null, null, null, false, T0 + MIN + 1, 'off', T0 + MIN + 2],
    ]);
  }));

  it('rollups - at equal device time, first takes the smaller message id and last the larger (as latest state)', () => withStore(async (store) => {
    await write(store, [pt(T0 + 1_000, 1, { messageId: 'b' }), pt(T0 + 9_000, 8, { messageId: 'b' })]);
    await write(store, [pt(T0 + 9_000, 9, { messageId: 'c' }), pt(T0 + 1_000, 2, { messageId: 'a' }), pt(T0 + 9_000, 7, { messageId: 'a' })]);
    for (const r of ['1m', '1h'] as const) {
      const [b] = await store.rollups(q(r));
      assert.deepEqual([b.count, b.first, b.last], [5, 2, 9], r);
    }
    assert.deepEqual((await store.latest('acme', 'd1')).map((l) => l.value), [9]);
  }));

  it('rollups - scoped by tenant, device and key; unknown series answer nothing; a bad resolution is BAD_REQUEST', () => withStore(async (store) => {
    await write(store, [pt(T0, 1), pt(T0, 2, { tenant: 'beta' }), pt(T0, 3, { device: 'd2' }), pt(T0, 4, { key: 'hum' })]);
    assert.deepEqual((await store.rollups(q('1m'))).map((r) => r.sum), [1]);
    assert.deepEqual((await store.rollups(q('1h', { tenant: 'beta' }))).map((r) => r.sum), [2]);
    assert.deepEqual((await store.rollups(q('1m', { device: 'd2' }))).map((r) => r.sum), [3]);
    assert.deepEqual((await store.rollups(q('1m', { key: 'hum' }))).map((r) => r.sum), [4]);
    assert.deepEqual(await store.rollups(q('1m', { tenant: 'nobody' })), []);
    assert.deepEqual(await store.rollups(q('1m', { key: 'nothing' })), []);
    await assert.rejects(store.rollups(q('5m' as Resolution)), (err) => isFluxgateError(err, 'BAD_REQUEST'));
  }));

  it('rollups - thousands of points over many series, written twice in other batch cuts, equal a recomputation', () => withStore(async (store) => {
    const pts: TelemetryPoint[] = [];
    for (let i = 0; i < 6000; i++) {
      // 50 devices × 2 keys, 37 s apart: several points per minute bucket, many buckets per hour.
      pts.push(pt(T0 + Math.floor(i / 100) * 37_000 + (i % 7), i % 11 === 0 ? 'text' : (i * 7919) % 1000 - 500, { device: `dev-${i % 50}`, key: i % 100 < 50 ? 'a' : 'b', messageId: `m-${i}` }));
    }
    for (let i = 0; i < pts.length; i += 1500) await write(store, pts.slice(i, i + 1500));
    const shuffled = [...pts].reverse();
    for (let i = 0; i < shuffled.length; i += 2500) await write(store, shuffled.slice(i, i + 2500));
    for (const [device, key] of [['dev-0', 'a'], ['dev-49', 'b'], ['dev-17', 'a']]) {
      const mine = pts.filter((p) => p.device === device && p.key === key);
      for (const r of ['1m', '1h'] as const) {
        const got = await store.rollups(q(r, { device, key }));
        assert.deepEqual(got, foldPoints(mine, r === '1m' ? MIN : HOUR).map(([b, acc]) => toRollup(b, acc, (v) => v)), `${device}/${key} ${r}`);
      }
    }
  }));

  it('deleteRollupsBefore - removes whole buckets ending at or before the cutoff, per resolution and tenant; raw points stay', () => withStore(async (store) => {
    const pts = [pt(T0, 1), pt(T0 + HOUR + MIN, 2), pt(T0 + 2 * HOUR, 3), pt(T0, 10, { tenant: 'beta' }), pt(T0 + 2 * HOUR, 30, { tenant: 'beta' })];
    await write(store, pts);
    // Cutoff inside the second hour: the hour starting at T0 + 1h ends after it and stays.
    assert.equal(await store.deleteRollupsBefore('1h', T0 + HOUR + 30 * MIN, 'acme'), 1);
    assert.deepEqual((await store.rollups(q('1h'))).map((r) => r.ts), [T0 + HOUR, T0 + 2 * HOUR]);
    assert.deepEqual((await store.rollups(q('1m'))).map((r) => r.ts), [T0, T0 + HOUR + MIN, T0 + 2 * HOUR], 'other resolution untouched');
    assert.deepEqual((await store.rollups(q('1h', { tenant: 'beta' }))).map((r) => r.ts), [T0, T0 + 2 * HOUR], 'other tenant untouched');
    // All tenants; a bucket ending exactly at the cutoff goes.
    assert.equal(await store.deleteRollupsBefore('1m', T0 + HOUR + 2 * MIN), 3);
    assert.deepEqual((await store.rollups(q('1m'))).map((r) => r.ts), [T0 + 2 * HOUR]);
    assert.deepEqual((await store.rollups(q('1m', { tenant: 'beta' }))).map((r) => r.ts), [T0 + 2 * HOUR]);
    assert.equal(await store.deleteRollupsBefore('1h', T0, 'acme'), 0);
    const raw = await store.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 3 * HOUR, limit: 10 });
    assert.equal(raw.items.length, 3, 'raw points are not roll-ups');
    await assert.rejects(store.deleteRollupsBefore('1d' as Resolution, T0), (err) => isFluxgateError(err, 'BAD_REQUEST'));
  }));
}
