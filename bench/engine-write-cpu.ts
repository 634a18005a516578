/**
 * @module CPU cost of the embedded store's writeBatch in one thread (no worker, no other
 * traffic): the synthetic fleet of bench/lib/fleet-batches.ts with raw messages archived, written
 * through the Engine, compactions included. Prints rows per CPU-second, which moves much less
 * than wall time on a shared, loaded machine. Used for A/B comparisons of the write path (run it
 * in two exported trees that differ by one change).
 *
 *   node --import tsx bench/engine-write-cpu.ts [--rows 600000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../src/stores/embedded/engine.js';
import { encodeBatch } from '../src/stores/embedded/wire.js';
import { fleetBatches } from './lib/fleet-batches.js';

const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '600000' } } });
const dir = mkdtempSync(join(tmpdir(), 'fluxgate-bench-engine-'));
try {
  const engine = new Engine(join(dir, 'store.db'));
  const batches = [...fleetBatches({ target: Number(args.rows), batch: 5000, messages: true })].map((b) => ({ wire: encodeBatch(b).wire, messages: b.messages.length }));
  let rows = 0;
  let messages = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const b of batches) {
    engine.call('writeBatch', [b.wire]);
    rows += b.wire.points.n;
    messages += b.messages;
    if (engine.shouldCompact()) engine.writer.compact();
  }
  engine.writer.compact();
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  engine.close();
  console.log(JSON.stringify({ rows, messages, cpuSeconds: +cpuS.toFixed(2), wallSeconds: +((performance.now() - t0) / 1000).toFixed(2), rowsPerCpuSecond: Math.round(rows / cpuS), cpuMicrosPerMessage: +(cpuS * 1e6 / messages).toFixed(2), loadAverage: loadavg()[0].toFixed(2) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
