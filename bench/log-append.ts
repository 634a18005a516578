/**
 * @module Embedded log (WAL) benchmark: durable appends per second and append latency
 * (call → fdatasync done) for N concurrent appenders of 100-byte payloads, one envelope per
 * append as a device connection does; the fsync count shows how many appends one group
 * commit carried. Then sequential read throughput in 5,000-record batches (the processing
 * batch), and, with --open-gib, the restart time of a log of that size after a simulated
 * kill -9 (a torn tail to repair, a group committed in the middle to resume). Every level is
 * bounded by --count appends and --seconds of time. Data lives in a temp dir, removed at the end.
 *
 *   node --import tsx bench/log-append.ts [--concurrency 1,10,100] [--count 20000] [--seconds 10] [--payload 100] [--open-gib 1]
 *   --lanes: the log as the node runs it (src/log/lanes/, events and snapshots lanes); --snapshot-every N: every Nth append is a snapshot
 */
import { appendFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Envelope } from '../src/core/envelope.js';
import type { Log } from '../src/log/log.js';
import { createFileLog } from '../src/log/wal/index.js';
import { createFileLaneLog } from '../src/log/lanes/index.js';
import { Metrics } from '../src/observability/metrics.js';

const { values: args } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,10,100' },
    count: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '10' },
    payload: { type: 'string', default: '100' },
    'open-gib': { type: 'string', default: '0' },
    lanes: { type: 'boolean', default: false },
    'snapshot-every': { type: 'string', default: '0' },
  },
});
const LEVELS = args.concurrency.split(',').map(Number);
const COUNT = Number(args.count);
const MAX_MS = Number(args.seconds) * 1000;
const PAYLOAD = Number(args.payload);
const OPEN_GIB = Number(args['open-gib']);
const SEGMENT_BYTES = 128 * 1024 * 1024; // the configuration default
const SNAPSHOT_EVERY = Number(args['snapshot-every']);

function envelope(i: number, payloadBytes = PAYLOAD): Envelope {
  return {
    tenant: 'acme', project: 'plant-7', device: `dev-${i % 1000}`, kind: SNAPSHOT_EVERY > 0 && i % SNAPSHOT_EVERY === 0 ? 'snapshot' : 'event', topic: `mtic/msg/client/realtime/acme/plant-7/dev-${i % 1000}`,
    protocol: 'mqtt', receiveTime: Date.now(), messageId: `m-${i}`, payload: Buffer.alloc(payloadBytes, 0x61),
  };
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function counter(m: Metrics): Promise<number> {
  return (await m.logSyncs.get()).values.reduce((n, v) => n + v.value, 0);
}

function openLog(dir: string, metrics?: Metrics): Log {
  return (args.lanes ? createFileLaneLog : createFileLog)({ dir, segmentBytes: SEGMENT_BYTES, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e12, metrics });
}

async function appendLevel(root: string, concurrency: number): Promise<void> {
  const dir = join(root, `c${concurrency}`);
  const metrics = new Metrics({ defaultMetrics: false });
  const log = openLog(dir, metrics);
  await log.open();
  const latencies = new Float64Array(COUNT);
  let issued = 0;
  let done = 0;
  const started = performance.now();
  const deadline = started + MAX_MS;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (issued < COUNT && performance.now() < deadline) {
      const i = issued++;
      const env = envelope(i);
      const t0 = performance.now();
      await log.append([env]);
      latencies[done++] = performance.now() - t0;
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  const syncs = await counter(metrics);
  const sorted = latencies.subarray(0, done).sort();
  console.log(`| ${concurrency} | ${done} | ${(done / elapsed).toFixed(0)} | ${pct(sorted, 0.5).toFixed(3)} | ${pct(sorted, 0.99).toFixed(3)} | ${sorted[done - 1]!.toFixed(3)} | ${syncs} (${(done / syncs).toFixed(1)} appends/fsync) |`);

  const t1 = performance.now();
  let read = 0;
  for (;;) {
    const b = await log.read('bench', 5000, 0);
    if (b.records.length === 0) break;
    read += b.records.length;
  }
  readFigures.push(`c${concurrency}: ${read} records in ${((performance.now() - t1)).toFixed(1)} ms = ${(read / ((performance.now() - t1) / 1000)).toFixed(0)} records/s`);
  await log.close();
}
const readFigures: string[] = [];

async function restartTime(root: string): Promise<void> {
  const dir = join(root, 'big');
  const log = openLog(dir);
  await log.open();
  const target = OPEN_GIB * 1024 ** 3;
  const payloadBytes = 1024;
  const perBatch = 1000;
  let written = 0;
  let n = 0;
  const t0 = performance.now();
  // 8 concurrent appenders of 1,000-envelope batches: fills the log quickly.
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (written < target) {
      const batch = Array.from({ length: perBatch }, () => envelope(n++, payloadBytes));
      written += batch.length * (payloadBytes + 120);
      await log.append(batch);
    }
  }));
  const fillS = (performance.now() - t0) / 1000;
  // A group committed halfway: the restart must find its position without scanning everything.
  const half = Math.floor(n / 2);
  let consumed = 0;
  while (consumed < half) {
    const b = await log.read('process', Math.min(5000, half - consumed), 0);
    consumed += b.records.length;
    await log.commit('process', b);
  }
  // kill -9 is simulated by abandoning this instance (everything acknowledged is already
  // fdatasync'd) and tearing the tail as an interrupted write would.
  const segs = (await readdir(dir)).filter((f) => f.endsWith('.wal')).sort();
  await appendFile(join(dir, segs.at(-1)!), Buffer.from([0xff, 0x00, 0x10, 0x00, 0x00, 0x00, 0x42]));
  let bytes = 0;
  for (const f of segs) bytes += (await stat(join(dir, f))).size;

  const t1 = performance.now();
  const again = openLog(dir);
  await again.open();
  const openMs = performance.now() - t1;
  const first = await again.read('process', 5000, 0);
  const readyMs = performance.now() - t1;
  console.log(`\nrestart: ${(bytes / 1024 ** 3).toFixed(2)} GiB in ${segs.length} segments (${n} records, filled in ${fillS.toFixed(1)} s): open() ${openMs.toFixed(0)} ms, first read of a group committed at record ${half} after ${readyMs.toFixed(0)} ms (got offset ${first.records[0]?.offset})`);
  await again.close();
  await log.close().catch(() => undefined);
}

const root = await mkdtemp(join(tmpdir(), 'fluxgate-bench-log-'));
try {
  console.log(`WAL append${args.lanes ? ' (lanes)' : ''}${SNAPSHOT_EVERY ? `, every ${SNAPSHOT_EVERY}th a snapshot` : ''}: ${PAYLOAD}-byte payloads, one envelope per append, ${COUNT} appends or ${MAX_MS / 1000} s per level, segmentBytes ${SEGMENT_BYTES}`);
  console.log('| appenders | appends | durable appends/s | p50 ms | p99 ms | max ms | fsyncs |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of LEVELS) await appendLevel(root, c);
  console.log(`\nread (5,000-record batches): ${readFigures.join('; ')}`);
  if (OPEN_GIB > 0) await restartTime(root);
} finally {
  await rm(root, { recursive: true, force: true });
}
