/**
 * @module JetStream log benchmark: durable appends per second and append latency (call →
 * every PubAck back) for N concurrent appenders of 100-byte payloads, one envelope per append
 * as a device connection does, optionally also batched appends; then the processing
 * consumer's read + commit throughput in 5,000-record batches. It starts its own nats-server
 * (one server, or with --cluster three servers and replicas 3) on free ports in a temp dir,
 * and stops it at the end. Every level is bounded by --count appends and --seconds of time.
 *
 *   node --import tsx bench/jetstream-append.ts [--concurrency 1,10,100] [--count 20000] [--seconds 10] [--payload 100] [--batch 1] [--cluster]
 */
import { parseArgs } from 'node:util';
import type { Envelope } from '../src/core/envelope.js';
import { createJetStreamLog } from '../src/log/jetstream/index.js';
import type { Log } from '../src/log/log.js';
import { startNatsCluster, startNatsServer } from '../test/helpers/nats-server.js';

const { values: args } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,10,100' },
    count: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '10' },
    payload: { type: 'string', default: '100' },
    batch: { type: 'string', default: '1' },
    cluster: { type: 'boolean', default: false },
  },
});
const LEVELS = args.concurrency.split(',').map(Number);
const COUNT = Number(args.count);
const MAX_MS = Number(args.seconds) * 1000;
const PAYLOAD = Number(args.payload);
const BATCH = Number(args.batch);

function envelope(i: number): Envelope {
  return {
    tenant: 'acme', project: 'plant-7', device: `dev-${i % 1000}`, kind: 'event', topic: `mtic/msg/client/realtime/acme/plant-7/dev-${i % 1000}`,
    protocol: 'mqtt', receiveTime: Date.now(), messageId: `m-${i}`, payload: Buffer.alloc(PAYLOAD, 0x61),
  };
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function level(servers: string[], concurrency: number, replicas: number): Promise<void> {
  const log: Log = createJetStreamLog({ servers, stream: `BENCH_C${concurrency}_B${BATCH}`, replicas, maxLagRecords: 1e12, retentionHours: 0, retentionBytes: 0 });
  await log.open();
  const latencies = new Float64Array(Math.ceil(COUNT / BATCH) + concurrency);
  let issued = 0;
  let done = 0;
  let calls = 0;
  const started = performance.now();
  const deadline = started + MAX_MS;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (issued < COUNT && performance.now() < deadline) {
      const from = issued;
      issued += BATCH;
      const batch = Array.from({ length: BATCH }, (_, k) => envelope(from + k));
      const t0 = performance.now();
      await log.append(batch);
      latencies[calls++] = performance.now() - t0;
      done += BATCH;
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  const sorted = latencies.subarray(0, calls).sort();
  console.log(`| ${concurrency} | ${BATCH} | ${done} | ${(done / elapsed).toFixed(0)} | ${pct(sorted, 0.5).toFixed(3)} | ${pct(sorted, 0.99).toFixed(3)} | ${sorted[calls - 1]!.toFixed(3)} |`);

  const t1 = performance.now();
  let read = 0;
  while (read < done) {
    const b = await log.read('bench', 5000, 1000);
    if (b.records.length === 0) break;
    read += b.records.length;
    await log.commit('bench', b);
  }
  const readS = (performance.now() - t1) / 1000;
  readFigures.push(`c${concurrency}: ${read} records read and committed in ${(readS * 1000).toFixed(0)} ms = ${(read / readS).toFixed(0)} records/s`);
  await log.close();
}
const readFigures: string[] = [];

const replicas = args.cluster ? 3 : 1;
const nats = args.cluster ? await startNatsCluster(3) : await startNatsServer();
const servers = 'urls' in nats ? nats.urls : [nats.url];
try {
  console.log(`nats-server ${args.cluster ? 'cluster of 3, replicas 3' : 'single, replicas 1'}; ${PAYLOAD}-byte payloads, ${BATCH} envelope(s) per append`);
  console.log('| appenders | envelopes/append | envelopes | durable envelopes/s | p50 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of LEVELS) {
    // A cluster elects its JetStream meta leader after start: the first open may need a retry.
    for (let attempt = 0; ; attempt++) {
      try {
        await level(servers, c, replicas);
        break;
      } catch (err) {
        if (attempt > 20 || (err as { code?: string }).code !== 'LOG_UNAVAILABLE') throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  console.log('\nReads (5,000-record batches, each committed):');
  for (const f of readFigures) console.log(`  ${f}`);
} finally {
  await nats.cleanup();
}
