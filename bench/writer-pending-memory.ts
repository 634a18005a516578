/**
 * @module V8 heap the embedded store's writer holds per pending series between two compactions
 * (pending latest state, src/stores/embedded/latest.ts, and roll-up folds,
 * src/stores/embedded/rollups.ts). The fleet of the sizing case: devices each send a snapshot
 * of 9 keys, half of them a second one 20 s later in the same minute, so every series has one or
 * two points and one minute bucket pending. Batches go through the Engine's writeBatch after a
 * structured clone, as they reach the writer thread. Heap is read after `global.gc()`: before
 * the writes, after them, and after the compaction; "pending" is what the compaction freed,
 * "kept" what stays (name cache, known series, compacted bounds: bounded maps that outlive a
 * compaction).
 *
 *   node --expose-gc --import tsx bench/writer-pending-memory.ts [--series 100000] [--second 0.5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../src/stores/embedded/engine.js';
import { encodeBatch } from '../src/stores/embedded/wire.js';
import type { TelemetryPoint } from '../src/stores/store.js';

const { values: args } = parseArgs({ options: { series: { type: 'string', default: '100000' }, second: { type: 'string', default: '0.5' } } });
const KEYS = ['temperature', 'humidity', 'voltage', 'current', 'power', 'energy', 'rssi', 'uptime', 'state'];
const SERIES = Number(args.series);
const SECOND = Number(args.second);
const DEVICES = Math.ceil(SERIES / KEYS.length);
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const BATCH_DEVICES = 500;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
function heap(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const dir = mkdtempSync(join(tmpdir(), 'fluxgate-bench-pending-memory-'));
try {
  const engine = new Engine(join(dir, 'store.db'), { limits: { pendingSeries: Number.MAX_SAFE_INTEGER } });
  const write = (from: number, to: number, ts: number, round: number) => {
    const points: TelemetryPoint[] = [];
    for (let d = from; d < to; d++) {
      const messageId = `m-${d.toString(36)}-${round}-0123456789abcdef`;
      const device = `device-${d}`;
      KEYS.forEach((key, k) => points.push({ tenant: 'acme', project: 'plant-7', device, key, ts, value: k === 8 ? 'on' : (d * 7 + k + round) / 10, messageId }));
    }
    engine.call('writeBatch', [structuredClone(encodeBatch({ points, messages: [], deadLetters: [] }).wire)]);
  };
  // Warm up statements, caches and code with other devices, then start from a compacted store.
  for (let d = 0; d < 2_000; d += BATCH_DEVICES) write(DEVICES + d, DEVICES + d + BATCH_DEVICES, T0 - 3_600_000, 0);
  engine.writer.compact();
  const before = heap();
  let points = 0;
  for (let d = 0; d < DEVICES; d += BATCH_DEVICES) { write(d, Math.min(DEVICES, d + BATCH_DEVICES), T0, 1); points += (Math.min(DEVICES, d + BATCH_DEVICES) - d) * KEYS.length; }
  const twice = Math.floor(DEVICES * SECOND);
  for (let d = 0; d < twice; d += BATCH_DEVICES) { write(d, Math.min(twice, d + BATCH_DEVICES), T0 + 20_000, 2); points += (Math.min(twice, d + BATCH_DEVICES) - d) * KEYS.length; }
  const series = engine.writer.pending.size;
  const rollupSeries = engine.writer.rollups.size;
  const pendingHeap = heap();
  engine.writer.compact();
  const after = heap();
  engine.close();
  const mib = (b: number) => +(b / 1048576).toFixed(1);
  console.log(JSON.stringify({
    series, rollupSeries, points,
    heapMiB: { before: mib(before), pending: mib(pendingHeap), afterCompaction: mib(after) },
    bytesPerPendingSeries: Math.round((pendingHeap - after) / series),
    bytesKeptPerSeries: Math.round((after - before) / series),
  }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
