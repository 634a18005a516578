/**
 * @module PostgreSQL store ingest through its real Store API: batches of 5,000 points from
 * 1,000 devices × 3 keys (one message per device every 30 s, optionally archived too), each
 * writeBatch one transaction with latest state. Compares the two ingest paths, multi-row
 * INSERT over unnest() arrays and COPY into a temporary table then INSERT … ON CONFLICT, in
 * alternating phases, each in a fresh schema (so table size is equal), and prints sustained
 * rows/s, writeBatch latency and a replay of already stored batches (the idempotent path).
 * Every phase is bounded by --rows and --seconds; the schemas are dropped at the end.
 *
 *   node --import tsx bench/postgres-ingest.ts [--url postgres://postgres@127.0.0.1:5432/test]
 *     [--rows 1000000] [--seconds 15] [--rounds 2] [--inflight 1] [--messages]
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PostgresStore } from '../src/stores/postgres/index.js';
import type { WriteBatch } from '../src/stores/store.js';
import { fleetBatches, pct, FLEET_T0 } from './lib/fleet-batches.js';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
    rows: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '2' },
    batch: { type: 'string', default: '5000' },
    inflight: { type: 'string', default: '1' },
    messages: { type: 'boolean', default: false },
  },
});
const TARGET = Number(args.rows);
const MAX_MS = Number(args.seconds) * 1000;
const BATCH = Number(args.batch);
const INFLIGHT = Number(args.inflight);

interface PhaseResult { mode: 'insert' | 'copy'; rows: number; seconds: number; rowsPerSec: number; lastHalfRowsPerSec: number; p50: number; p99: number; replayRowsPerSec: number; clientCpuUsPerRow: number; serverCpuUsPerRow: number; reads: Record<string, number> }

/**
 * CPU time of the store's server sessions (found by their application name), read from
 * /proc when the server runs on this machine; the pool opens them at open() and keeps them
 * through the phase, so this is the server's work for the phase (WAL writer and checkpointer
 * excluded). NaN when /proc does not show them.
 */
async function backendCpuUs(schema: string): Promise<number> {
  const c = new pg.Client({ connectionString: args.url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [`fluxgate ${schema}`]);
    let ticks = 0;
    for (const { pid } of rows) {
      // Fields after the command name: utime is the 12th, stime the 13th (clock ticks, 100 per second).
      const after = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(after[11]) + Number(after[12]);
    }
    return rows.length ? ticks * 10_000 : NaN;
  } catch {
    return NaN;
  } finally {
    await c.end();
  }
}

async function phase(mode: 'insert' | 'copy'): Promise<PhaseResult> {
  const schema = `fluxgate_bench_${randomBytes(4).toString('hex')}`;
  const store = new PostgresStore({ url: args.url, schema, ingest: mode, poolSize: Math.max(2, INFLIGHT + 1) });
  try {
    await store.open();
    const latencies: number[] = [];
    const marks: Array<[number, number]> = [];
    const written: WriteBatch[] = [];
    let rows = 0;
    const gen = fleetBatches({ target: TARGET, batch: BATCH, messages: Boolean(args.messages) });
    let done = false;
    const start = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (!done) {
        const next = gen.next();
        if (next.done || performance.now() - start > MAX_MS) { done = true; return; }
        const t = performance.now();
        await store.writeBatch(next.value);
        latencies.push(performance.now() - t);
        rows += next.value.points.length;
        marks.push([performance.now(), rows]);
        if (written.length < 20) written.push(next.value);
      }
    }));
    const end = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const serverCpuUs = await backendCpuUs(schema);
    latencies.sort((a, b) => a - b);
    const half = marks[Math.floor(marks.length / 2)] ?? [start, 0];
    // Reads on the filled store, each the median of 5 (first run warms the plan and cache).
    const time = async (fn: () => Promise<unknown>) => {
      const t: number[] = [];
      for (let i = 0; i < 5; i++) { const t0 = performance.now(); await fn(); t.push(performance.now() - t0); }
      return +t.sort((a, b) => a - b)[2].toFixed(2);
    };
    const reads = {
      latestMs: await time(() => store.latest('acme', 'dev-777')),
      rangePage1000AllKeysMs: await time(() => store.range({ tenant: 'acme', device: 'dev-500', from: FLEET_T0, to: FLEET_T0 + 86_400_000, limit: 1000 })),
      dayOf1MinAvgMs: await time(() => store.aggregate({ tenant: 'acme', device: 'dev-500', key: 'humidity', from: FLEET_T0, to: FLEET_T0 + 86_400_000, intervalMs: 60_000, agg: 'avg' })),
      messagesPage100Ms: await time(() => store.messages({ tenant: 'acme', device: 'dev-500', from: FLEET_T0, to: FLEET_T0 + 86_400_000, limit: 100 })),
    };
    // The same batches again: every row conflicts, as after a crash replays the log.
    const r0 = performance.now();
    let replayed = 0;
    for (const b of written) { await store.writeBatch(b); replayed += b.points.length; }
    const replaySec = (performance.now() - r0) / 1000;
    const seconds = (end - start) / 1000;
    return {
      mode, rows, seconds: +seconds.toFixed(2), rowsPerSec: Math.round(rows / seconds),
      lastHalfRowsPerSec: Math.round((rows - half[1]) / ((end - half[0]) / 1000)),
      p50: +pct(latencies, 0.5).toFixed(1), p99: +pct(latencies, 0.99).toFixed(1), replayRowsPerSec: Math.round(replayed / replaySec),
      // This process only (building and sending the batches); the server's CPU is not in it.
      clientCpuUsPerRow: +((cpu.user + cpu.system) / rows).toFixed(2), serverCpuUsPerRow: +(serverCpuUs / rows).toFixed(2), reads,
    };
  } finally {
    await store.close();
    const c = new pg.Client({ connectionString: args.url });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
  }
}

const results: PhaseResult[] = [];
for (let round = 0; round < Number(args.rounds); round++) {
  const order: Array<'insert' | 'copy'> = round % 2 === 0 ? ['insert', 'copy'] : ['copy', 'insert'];
  for (const mode of order) {
    const r = await phase(mode);
    results.push(r);
    console.error(JSON.stringify(r));
  }
}
const c = new pg.Client({ connectionString: args.url });
await c.connect();
const version = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0].server_version;
await c.end();
console.log(`\nPostgreSQL ${version}, ${cpus().length} cores, load average ${loadavg()[0].toFixed(2)}; batch ${BATCH}, in flight ${INFLIGHT}, archive ${args.messages ? 'yes' : 'no'}`);
console.log('\n| ingest | rows | seconds | rows/s (overall) | rows/s (second half) | writeBatch p50 / p99 ms | replay rows/s (all duplicates) | client CPU µs/row | server CPU µs/row |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.mode === 'insert' ? 'INSERT … unnest()' : 'COPY → temp → INSERT'} | ${r.rows.toLocaleString('en')} | ${r.seconds} | ${r.rowsPerSec.toLocaleString('en')} | ${r.lastHalfRowsPerSec.toLocaleString('en')} | ${r.p50} / ${r.p99} | ${r.replayRowsPerSec.toLocaleString('en')} | ${r.clientCpuUsPerRow} | ${r.serverCpuUsPerRow} |`);
}
console.log(`\nReads on the filled store after each phase (median of 5, ms): ${results.map((r) => `${r.mode} ${JSON.stringify(r.reads)}`).join('; ')}`);
for (const mode of ['insert', 'copy'] as const) {
  const rs = results.filter((r) => r.mode === mode).map((r) => r.rowsPerSec).sort((a, b) => a - b);
  console.log(`${mode}: median ${rs[Math.floor(rs.length / 2)]?.toLocaleString('en')} rows/s over ${rs.length} phase(s)`);
}
