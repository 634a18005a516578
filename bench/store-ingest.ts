/**
 * @module Embedded store ingest through its real Store API (worker threads included): batches
 * of 5,000 points from 1,000 devices × 3 keys, one message per device every 30 s, optionally
 * with the raw message archived too. Prints sustained rows/s (and per CPU-second, steadier on
 * a shared machine), writeBatch latency, latest() and range() latency for a dashboard polling
 * during ingest,
 * the main thread's event-loop delay, and read times on the full store. Bounded by --rows and
 * --seconds.
 *
 *   node --import tsx bench/store-ingest.ts [--rows 3000000] [--seconds 40] [--messages] [--inflight 1]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { EmbeddedStore } from '../src/stores/embedded/index.js';
import { fleetBatches, pct, FLEET_T0 } from './lib/fleet-batches.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '3000000' },
    seconds: { type: 'string', default: '40' },
    batch: { type: 'string', default: '5000' },
    inflight: { type: 'string', default: '1' },
    messages: { type: 'boolean', default: false },
  },
});
const TARGET = Number(args.rows);
const MAX_MS = Number(args.seconds) * 1000;
const BATCH = Number(args.batch);
const INFLIGHT = Number(args.inflight);

const dir = mkdtempSync(join(tmpdir(), 'fluxgate-bench-store-ingest-'));
const store = new EmbeddedStore({ dir });
try {
  await store.open();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const latencies: number[] = [];
  const marks: Array<[number, number]> = [];
  let rows = 0;
  let messages = 0;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  const gen = fleetBatches({ target: TARGET, batch: BATCH, messages: Boolean(args.messages) });
  let done = false;
  // A dashboard polling one device every 50 ms while ingest runs: its latest state (answered by
  // the writer) and its last 100 points (answered by the read connection).
  const readLatencies: number[] = [];
  const rangeLatencies: number[] = [];
  const reader = (async () => {
    while (!done) {
      let t = performance.now();
      await store.latest('acme', 'dev-42');
      readLatencies.push(performance.now() - t);
      t = performance.now();
      await store.range({ tenant: 'acme', device: 'dev-42', key: 'voltage', from: FLEET_T0, to: FLEET_T0 + 86_400_000 * 365, limit: 100 });
      rangeLatencies.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  // INFLIGHT writers pull from one generator: batches keep their order of submission.
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (!done) {
      const next = gen.next();
      if (next.done || performance.now() - start > MAX_MS) { done = true; return; }
      const b = next.value;
      const t = performance.now();
      await store.writeBatch(b);
      latencies.push(performance.now() - t);
      rows += b.points.length;
      messages += b.messages.length;
      marks.push([performance.now(), rows]);
    }
  }));
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await reader;
  readLatencies.sort((a, b) => a - b);
  rangeLatencies.sort((a, b) => a - b);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  loop.disable();
  const seconds = (end - start) / 1000;
  const cut = marks[Math.floor(marks.length * 0.8)] ?? [start, 0];
  const lastFifth = (rows - cut[1]) / ((end - cut[0]) / 1000);
  latencies.sort((a, b) => a - b);

  const r = async <T>(fn: () => Promise<T>): Promise<[T, number]> => { const t = performance.now(); const v = await fn(); return [v, performance.now() - t]; };
  const [, latestMs] = await r(() => store.latest('acme', 'dev-777'));
  const [day, aggMs] = await r(() => store.aggregate({ tenant: 'acme', device: 'dev-500', key: 'humidity', from: FLEET_T0, to: FLEET_T0 + 86_400_000, intervalMs: 60_000, agg: 'avg' }));
  const [page, rangeMs] = await r(() => store.range({ tenant: 'acme', device: 'dev-500', from: FLEET_T0, to: FLEET_T0 + 86_400_000, limit: 1000 }));
  const [compacted, compactMs] = await r(() => store.compact());
  const [, aggAfterMs] = await r(() => store.aggregate({ tenant: 'acme', device: 'dev-500', key: 'humidity', from: FLEET_T0, to: FLEET_T0 + 86_400_000, intervalMs: 60_000, agg: 'avg' }));

  const result = {
    rows, messages, seconds: +seconds.toFixed(2), rowsPerSec: Math.round(rows / seconds), lastFifthRowsPerSec: Math.round(lastFifth),
    // Both threads (main + worker) together; on a shared machine this moves less than wall time.
    cpuSeconds: +cpuSeconds.toFixed(2), rowsPerCpuSecond: Math.round(rows / cpuSeconds), loadAverage: loadavg()[0].toFixed(2),
    writeBatchMs: { p50: +pct(latencies, 0.5).toFixed(2), p99: +pct(latencies, 0.99).toFixed(2), max: +(latencies.at(-1) ?? NaN).toFixed(2) },
    latestDuringIngestMs: { reads: readLatencies.length, p50: +pct(readLatencies, 0.5).toFixed(2), p99: +pct(readLatencies, 0.99).toFixed(2), max: +(readLatencies.at(-1) ?? NaN).toFixed(2) },
    rangeDuringIngestMs: { reads: rangeLatencies.length, p50: +pct(rangeLatencies, 0.5).toFixed(2), p99: +pct(rangeLatencies, 0.99).toFixed(2), max: +(rangeLatencies.at(-1) ?? NaN).toFixed(2) },
    mainLoopDelayMs: { p99: +(loop.percentile(99) / 1e6).toFixed(2), max: +(loop.max / 1e6).toFixed(2) },
    reads: { latestMs: +latestMs.toFixed(3), dayOf1MinAvgMs: +aggMs.toFixed(2), buckets: day.length, rangePage1000Ms: +rangeMs.toFixed(2), rangeItems: page.items.length, finalCompactRows: compacted, finalCompactMs: +compactMs.toFixed(1), dayOf1MinAvgAfterCompactMs: +aggAfterMs.toFixed(2) },
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(`\n| batch | in flight | archive | rows | rows/s (overall) | rows/s (last fifth) | rows per CPU-second | writeBatch p50 / p99 / max ms | latest() during ingest p50 / p99 / max ms | range() during ingest p50 / p99 / max ms | main event-loop delay p99 / max ms | load avg |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|---|`);
  console.log(`| ${BATCH} | ${INFLIGHT} | ${args.messages ? `yes (${messages.toLocaleString('en')} msgs)` : 'no'} | ${rows.toLocaleString('en')} | ${result.rowsPerSec.toLocaleString('en')} | ${result.lastFifthRowsPerSec.toLocaleString('en')} | ${result.rowsPerCpuSecond.toLocaleString('en')} | ${result.writeBatchMs.p50} / ${result.writeBatchMs.p99} / ${result.writeBatchMs.max} | ${result.latestDuringIngestMs.p50} / ${result.latestDuringIngestMs.p99} / ${result.latestDuringIngestMs.max} | ${result.rangeDuringIngestMs.p50} / ${result.rangeDuringIngestMs.p99} / ${result.rangeDuringIngestMs.max} | ${result.mainLoopDelayMs.p99} / ${result.mainLoopDelayMs.max} | ${result.loadAverage} |`);
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
