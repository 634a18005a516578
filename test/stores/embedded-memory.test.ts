/**
 * @module What the embedded store holds in memory is bounded and visible: SQLite's page cache
 * per connection is the configured ceiling (no memory-mapped I/O), pending state is emptied
 * by compaction and its series count triggers one, the caches of names and series start over
 * past their bounds with reads and roll-ups still exact, at most `maxQueuedRequests` calls per worker are sent and unanswered while
 * later callers wait in order (nothing dropped), and the workers' memory reports reach
 * /metrics as gauges.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Metrics } from '../../src/observability/metrics.js';
import { Engine } from '../../src/stores/embedded/engine.js';
import { EmbeddedStore } from '../../src/stores/embedded/index.js';
import { DEFAULT_CACHE_BYTES } from '../../src/stores/embedded/schema.js';
import { encodeBatch } from '../../src/stores/embedded/wire.js';
import type { TelemetryPoint } from '../../src/stores/store.js';
import { tempDir, waitFor } from '../helpers/wait.js';

const MiB = 2 ** 20;
const T0 = Date.UTC(2026, 0, 1);
const pt = (device: string, ts: number, value: number): TelemetryPoint => ({ tenant: 'acme', project: 'default', device, key: 'temp', ts, value, messageId: `${device}:${ts}` });

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const { dir, cleanup } = await tempDir('fluxgate-store-mem-');
  try { return await fn(dir); } finally { await cleanup(); }
}

/** The value of one series of a /metrics scrape, or undefined. */
async function metric(metrics: Metrics, name: string, labels: string): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('embedded store memory', () => {
  it('caps the SQLite page cache per connection at the configured size, without mmap, and reports its maps', () => withDir(async (dir) => {
    const engine = new Engine(join(dir, 'store.db'), { cacheBytes: 8 * MiB });
    try {
      const m = engine.memory();
      assert.equal(m.cacheLimitBytes, 8 * MiB);
      assert.equal(m.mmapBytes, 0);
      assert.ok(m.fileBytes > 0);
      const points = Array.from({ length: 300 }, (_, i) => pt(`d${i % 30}`, T0 + i * 1000, i));
      engine.call('writeBatch', [encodeBatch({ points, messages: [], deadLetters: [] }).wire]);
      const written = engine.memory().entries;
      assert.equal(written.pending_latest, 30); // one per series since the last compaction
      assert.equal(written.series, 30);
      assert.equal(written.staged_rows, 300);
      assert.ok(written.names >= 30 + 3, `names cached: ${written.names}`); // 30 devices, tenant, project, key
      engine.writer.compact();
      const compacted = engine.memory().entries;
      assert.equal(compacted.pending_latest, 0);
      assert.equal(compacted.pending_rollups, 0);
      assert.equal(compacted.staged_rows, 0);
    } finally {
      engine.close();
    }
    // No size given: the default, not SQLite's own.
    const other = new Engine(join(dir, 'store.db'));
    try { assert.equal(other.memory().cacheLimitBytes, DEFAULT_CACHE_BYTES); } finally { other.close(); }
  }));

  it('bounds its caches of names, known series and compaction bounds, and reads and roll-ups stay right', () => withDir(async (dir) => {
    const engine = new Engine(join(dir, 'store.db'), { limits: { names: 10, knownSeries: 8, trackedSeries: 8 } });
    try {
      // 5 batches of 20 devices each with 2 keys: 100 devices, 200 series, far past every bound.
      for (let b = 0; b < 5; b++) {
        const points = Array.from({ length: 20 }, (_, i) => [pt(`d${b * 20 + i}`, T0 + b * 1000, b + 1), { ...pt(`d${b * 20 + i}`, T0 + b * 1000, -b - 1), key: 'hum' }]).flat();
        engine.call('writeBatch', [encodeBatch({ points, messages: [], deadLetters: [] }).wire]);
        const e = engine.memory().entries;
        assert.ok(e.names <= 10, `names ${e.names}`);
        assert.ok(e.series <= 8 + 40, `series ${e.series}`); // one batch's new series may pass it until the next
        engine.writer.compact();
        assert.ok(engine.memory().entries.rollup_series <= 8 + 40, `rollup series ${engine.memory().entries.rollup_series}`);
      }
      // A second point of an early device after its bounds were forgotten: latest and roll-ups are exact.
      engine.call('writeBatch', [encodeBatch({ points: [pt('d3', T0 + 30_000, 42)], messages: [], deadLetters: [] }).wire]);
      engine.writer.compact();
      const latest = engine.call('latest', ['acme', 'd3']) as Array<{ key: string; value: unknown; ts: number }>;
      assert.deepEqual(latest.map((l) => [l.key, l.value]), [['hum', -1], ['temp', 42]]);
      const minute = engine.call('rollups', [{ tenant: 'acme', device: 'd3', key: 'temp', resolution: '1m', from: T0, to: T0 + 60_000 }]) as Array<{ count: number; sum: number }>;
      assert.equal(minute.length, 1);
      assert.equal(minute[0].count, 2);
      assert.equal(minute[0].sum, 43);
      assert.ok(engine.memory().entries.names <= 10);
    } finally {
      engine.close();
    }
  }));

  it('asks for a compaction once enough series hold pending state, however few rows are staged', () => withDir(async (dir) => {
    const engine = new Engine(join(dir, 'store.db'), { limits: { pendingSeries: 30 } });
    try {
      const batch = (from: number, n: number) => encodeBatch({ points: Array.from({ length: n }, (_, i) => pt(`d${from + i}`, T0, i)), messages: [], deadLetters: [] }).wire;
      engine.call('writeBatch', [batch(0, 20)]);
      assert.equal(engine.shouldCompact(), false);
      engine.call('writeBatch', [batch(20, 10)]);
      assert.equal(engine.memory().entries.pending_latest, 30);
      assert.equal(engine.shouldCompact(), true);
      engine.writer.compact();
      assert.equal(engine.shouldCompact(), false);
    } finally {
      engine.close();
    }
  }));

  it('sends at most maxQueuedRequests calls per worker; later callers wait in call order and all are answered', () => withDir(async (dir) => {
    const metrics = new Metrics({ defaultMetrics: false });
    const store = new EmbeddedStore({ dir, maxQueuedRequests: 2, metrics });
    await store.open();
    try {
      // 20 writes of the same object: the last must win, so the order must hold.
      const writes = Array.from({ length: 20 }, (_, i) => store.putObject({ kind: 'k', tenant: 'acme', id: 'o', body: { i }, updatedAt: i }));
      const reads = Array.from({ length: 10 }, () => store.getTenant('default'));
      assert.deepEqual(store.queued('writer'), { inFlight: 2, waiting: 18 });
      assert.deepEqual(store.queued('reader'), { inFlight: 2, waiting: 8 });
      assert.equal(await metric(metrics, 'fluxgate_store_queue_requests', 'role="writer",state="waiting"'), 18);
      assert.equal(await metric(metrics, 'fluxgate_store_queue_requests', 'role="writer",state="in_flight"'), 2);
      await Promise.all(writes);
      for (const t of await Promise.all(reads)) assert.equal(t?.id, 'default');
      assert.deepEqual((await store.getObject('k', 'acme', 'o'))?.body, { i: 19 });
      assert.deepEqual(store.queued('writer'), { inFlight: 0, waiting: 0 });
      assert.deepEqual(store.queued('reader'), { inFlight: 0, waiting: 0 });
    } finally {
      await store.close();
    }
    // Waiting callers are answered on close too (close queues behind them).
    const again = new EmbeddedStore({ dir, maxQueuedRequests: 1 });
    await again.open();
    const late = Array.from({ length: 5 }, (_, i) => again.putObject({ kind: 'k', tenant: 'acme', id: `late${i}`, body: {}, updatedAt: i }));
    await again.close();
    await Promise.all(late);
  }));

  it('publishes each worker\'s memory report as gauges', () => withDir(async (dir) => {
    const metrics = new Metrics({ defaultMetrics: false });
    const store = new EmbeddedStore({ dir, cacheBytes: 4 * MiB, workerHeapBytes: 256 * MiB, metrics });
    await store.open();
    try {
      await waitFor(() => store.memoryReports().writer && store.memoryReports().reader, { what: 'memory reports of both workers' });
      assert.equal(await metric(metrics, 'fluxgate_store_sqlite_cache_limit_bytes', 'role="writer"'), 4 * MiB);
      assert.equal(await metric(metrics, 'fluxgate_store_sqlite_cache_limit_bytes', 'role="reader"'), 4 * MiB);
      const heap = await metric(metrics, 'fluxgate_store_worker_heap_used_bytes', 'role="writer"');
      assert.ok(heap !== undefined && heap > 0, `writer heap ${heap}`);
      assert.ok((await metric(metrics, 'fluxgate_store_cached_entries', 'role="writer",map="names"')) !== undefined);
      // The old generation is capped at 256 MiB; the limit V8 reports adds the young generation.
      for (const role of ['writer', 'reader']) {
        const limit = (await metric(metrics, 'fluxgate_store_worker_heap_limit_bytes', `role="${role}"`))!;
        assert.ok(limit >= 256 * MiB && limit < 384 * MiB, `${role} heap limit ${limit / MiB} MiB`);
      }
    } finally {
      await store.close();
    }
  }));
});
