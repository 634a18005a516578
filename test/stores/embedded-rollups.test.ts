/**
 * @module Roll-ups of the embedded store across what the conformance suite cannot reach through
 * the Store contract: a writer that stops (crash) with points staged and their pending buckets
 * only in memory, replays after it, and late points behind a compaction. Each case checks the
 * roll-ups against a recomputation from the raw points read back.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Engine } from '../../src/stores/embedded/engine.js';
import { encodeBatch } from '../../src/stores/embedded/wire.js';
import { foldPoints, toRollup } from '../../src/stores/rollup.js';
import type { Page, Rollup, TelemetryPoint, Value } from '../../src/stores/store.js';
import { tempDir } from '../helpers/wait.js';

const T0 = Date.UTC(2026, 0, 1, 10);
const MIN = 60_000;
const HOUR = 3_600_000;
const pt = (ts: number, value: Value, messageId = `m-${ts}`): TelemetryPoint =>
  ({ tenant: 'acme', project: 'plant', device: 'd1', key: 'temp', ts, value, messageId });
const write = (e: Engine, points: TelemetryPoint[]) => e.call('writeBatch', [encodeBatch({ points, messages: [], deadLetters: [] }).wire]);

function check(e: Engine): void {
  const raw = e.call('range', [{ tenant: 'acme', device: 'd1', key: 'temp', from: T0 - HOUR, to: T0 + 3 * HOUR, limit: 10_000 }]) as Page<TelemetryPoint>;
  for (const [r, ms] of [['1m', MIN], ['1h', HOUR]] as const) {
    const got = e.call('rollups', [{ tenant: 'acme', device: 'd1', key: 'temp', from: T0 - HOUR, to: T0 + 3 * HOUR, resolution: r }]) as Rollup[];
    assert.deepEqual(got, foldPoints(raw.items, ms).map(([b, acc]) => toRollup(b, acc, (v) => v)), r);
  }
}

describe('embedded store roll-ups', () => {
  it('a crash with points staged: the next writer recomputes their buckets; replays after it count once', async () => {
    const { dir, cleanup } = await tempDir('fluxgate-rollups-');
    const file = join(dir, 'store.db');
    try {
      const first = new Engine(file);
      write(first, [pt(T0, 1), pt(T0 + 20_000, 2), pt(T0 + MIN + 1, 3)]);
      first.writer.compact();
      // Staged only: a late point into a compacted bucket, and new ones.
      write(first, [pt(T0 + 10_000, 10), pt(T0 + 2 * MIN, 4), pt(T0 + HOUR + 5, 5)]);
      // The writer stops here: its pending buckets were only in memory.
      first.db.close();

      const second = new Engine(file);
      try {
        check(second);
        write(second, [pt(T0 + 10_000, 10), pt(T0 + 2 * MIN, 4), pt(T0, 1)]);
        write(second, [pt(T0 + 2 * MIN + 1, 6)]);
        check(second);
        second.writer.compact();
        check(second);
        // After the compaction: a replay of everything and one more late point.
        write(second, [pt(T0, 1), pt(T0 + 20_000, 2), pt(T0 + MIN + 1, 3), pt(T0 + 10_000, 10), pt(T0 + 30_000, -7)]);
        check(second);
        second.writer.compact();
        check(second);
        const [m] = second.call('rollups', [{ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + MIN, resolution: '1m' }]) as Rollup[];
        assert.deepEqual([m.count, m.sum, m.min, m.max, m.first, m.last], [4, 6, -7, 10, 1, -7]);
      } finally {
        second.close();
      }
    } finally {
      await cleanup();
    }
  });

  it('a batch whose statement held a duplicate still counts its new points, and the duplicate once', async () => {
    const { dir, cleanup } = await tempDir('fluxgate-rollups-');
    try {
      const e = new Engine(join(dir, 'store.db'));
      try {
        // 250 points: two full 100-row statements and a tail; one already-staged point in each.
        const pts = Array.from({ length: 250 }, (_, i) => pt(T0 + i * 1_000, i));
        write(e, [pts[5], pts[150], pts[240]]);
        write(e, pts);
        check(e);
        e.writer.compact();
        check(e);
        const [h] = e.call('rollups', [{ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + HOUR, resolution: '1h' }]) as Rollup[];
        assert.equal(h.count, 250);
      } finally {
        e.close();
      }
    } finally {
      await cleanup();
    }
  });
});
