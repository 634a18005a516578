/** @module Unit tests of the roll-up arithmetic: bucket edges (before 1970 too) and merging in any split and order. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { addPoint, bucketCeil, bucketStart, foldPoints, mergeAcc, newAcc, toRollup, type RollupAcc } from './rollup.js';
import type { Value } from './store.js';

describe('rollup arithmetic', () => {
  it('bucketStart floors to the epoch-aligned bucket, before 1970 too; bucketCeil is the next start unless aligned', () => {
    assert.equal(bucketStart(0, 60_000), 0);
    assert.equal(bucketStart(59_999, 60_000), 0);
    assert.equal(bucketStart(60_000, 60_000), 60_000);
    assert.equal(bucketStart(-1, 60_000), -60_000);
    assert.equal(bucketStart(-60_000, 60_000), -60_000);
    assert.equal(bucketCeil(1, 60_000), 60_000);
    assert.equal(bucketCeil(60_000, 60_000), 60_000);
    assert.equal(bucketCeil(-59_999, 60_000), 0);
  });

  it('folding points one by one equals merging the folds of any split of them, in any order', () => {
    const point = fc.record({
      ts: fc.integer({ min: -200_000, max: 200_000 }),
      messageId: fc.constantFrom('a', 'b', 'c', 'd'),
      value: fc.oneof(fc.integer({ min: -100, max: 100 }), fc.constantFrom<Value>('x', true, false)),
    });
    fc.assert(fc.property(fc.array(point, { minLength: 1, maxLength: 40 }), fc.nat(), (points, cutSeed) => {
      // Distinct (ts, message id) as a store keeps them.
      const unique = [...new Map(points.map((p) => [`${p.ts}/${p.messageId}`, p])).values()];
      const whole = foldPoints(unique, 60_000);
      const cut = cutSeed % (unique.length + 1);
      const left = foldPoints(unique.slice(0, cut), 60_000);
      const right = foldPoints([...unique.slice(cut)].reverse(), 60_000);
      const merged = new Map<number, RollupAcc>();
      for (const [b, acc] of [...right, ...left]) {
        const cur = merged.get(b);
        if (cur) mergeAcc(cur, acc);
        else merged.set(b, { ...acc });
      }
      const id = (v: Value) => v;
      assert.deepEqual([...merged].sort((x, y) => x[0] - y[0]).map(([b, a]) => toRollup(b, a, id)), whole.map(([b, a]) => toRollup(b, a, id)));
    }), { numRuns: 200 });
  });

  it('strings and booleans count and can be first or last; numbers alone make min, max, sum and avg', () => {
    const acc = newAcc<Value>(10, 'm1', 'on');
    addPoint(acc, 20, 'm2', 4);
    addPoint(acc, 30, 'm3', true);
    addPoint(acc, 30, 'm0', 8);
    const r = toRollup(0, acc, (v) => v);
    assert.deepEqual([r.count, r.numericCount, r.min, r.max, r.sum, r.avg, r.first, r.last, r.lastTs], [4, 2, 4, 8, 12, 6, 'on', true, 30]);
    const text = toRollup(0, newAcc<Value>(5, 'm', 'x'), (v) => v);
    assert.deepEqual([text.min, text.max, text.sum, text.avg], [null, null, null, null]);
  });
});
