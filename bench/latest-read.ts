/**
 * Latest-state read latency (GET /api/v1/devices/{id}/latest) while ingesting 10,000 msg/s, and
 * device time → visible in REST at half the node's maximum sustained rate.
 *
 * The node runs in a child process pinned to core 0 (processing on, as shipped); this process
 * (autocannon loads and probes) pins itself to core 1. Phases, each bounded by `--seconds`:
 *  1. idle reads: latest of one of 100 devices, 500 reads/s, no ingest (baseline);
 *  2. the same reads while ingesting `--rate` msg/s (10,000) as `--batch`-message arrays over
 *     the 100 devices; goal p99 ≤ 2 ms;
 *  3. maximum sustained rate: unthrottled ingest of 100-message arrays; the rate is what
 *     processing stored per second (readyz "N records processed"), which is what the node
 *     sustains end to end; then wait until the log lag is back to 0;
 *  4. at half that rate, a probe device sends {probe: n, ts: now} one at a time and polls its
 *     latest every ~1 ms until n is visible: visible − ts, goal p99 ≤ 50 ms.
 * Exact latencies (ms, float) from autocannon's response events and performance.now(). The
 * machine is shared: each phase first waits (up to 30 s) until other processes are quiet,
 * and "other procs" is the CPU they used meanwhile (% of a core).
 *
 *   node --import tsx bench/latest-read.ts [--seconds 10] [--rate 10000] [--batch 10] [--cpu-prof DIR]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_KEY, cpuProfArgs, createDevices, foreignCpu, histDelta, metricsSnapshot, waitQuiet, fmt, load, machine, percentiles, pin, startNodeChild, stopChild, track, untrackDir, type Api, type LoadResult, type Req } from './run.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '10000' }, batch: { type: 'string', default: '10' },
  devices: { type: 'string', default: '100' }, 'read-rate': { type: 'string', default: '500' }, 'cpu-prof': { type: 'string' },
} });
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const BATCH = Number(values.batch);
const DEVICES = Number(values.devices);
const READ_RATE = Number(values['read-rate']);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const body = (n: number) => JSON.stringify(n === 1 ? { temperature: 21.5, humidity: 40.25, on: true } : Array.from({ length: n }, (_, i) => ({ temperature: 20 + i / 10, humidity: 40.25, on: true })));

function ingestRequest(tokens: string[], batch: number): (i: number) => Req {
  const b = body(batch);
  return (i) => ({ method: 'POST', path: `/api/v1/devices/lr-${i % tokens.length}/telemetry`, body: b, headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[i % tokens.length]}` } });
}
const readRequest = (i: number): Req => ({ method: 'GET', path: `/api/v1/devices/lr-${(i * 7) % DEVICES}/latest`, headers: { authorization: `Bearer ${ADMIN_KEY}` } });

async function readyz(api: Api): Promise<{ lag: number; processed: number }> {
  const r = await api('GET', '/readyz');
  const c = r.body?.components ?? {};
  return { lag: Number(/lag (\d+)/.exec(c.log?.detail ?? '')?.[1] ?? NaN), processed: Number(/(\d+) records processed/.exec(c.process?.detail ?? '')?.[1] ?? NaN) };
}

async function waitLagZero(api: Api, timeoutMs = 300_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if ((await readyz(api)).lag === 0) return performance.now() - t0;
    await sleep(50);
  }
  throw new Error(`processing did not catch up within ${timeoutMs} ms`);
}

const lat = (l: Record<string, number>) => `p50 ${fmt(l.p50, 2)} ms  p99 ${fmt(l.p99, 2)} ms  p99.9 ${fmt(l['p99.9'], 2)} ms  max ${fmt(l.max, 2)} ms`;
const others = (r: LoadResult) => Object.entries(r.statuses).filter(([c]) => !c.startsWith('2')).map(([c, n]) => `${c}×${n}`).join(' ') || 'none';

async function main(): Promise<void> {
  const pinned = pin('1');
  console.log(`# latest read and visibility — ${machine()}`);
  console.log(`# node on core 0 (processing on), load and probes (this process) on core ${pinned ? '1' : '? (taskset failed)'}; ${SECONDS} s per phase\n`);
  const dir = await mkdtemp(join(tmpdir(), 'fluxgate-bench-latest-'));
  track(undefined, dir);
  const node = await startNodeChild(dir, {}, { nodeArgs: cpuProfArgs(values['cpu-prof'] && resolve(values['cpu-prof'])) });
  try {
    const api = node.api;
    const tokens = await createDevices(api, 'lr-', DEVICES);
    const [probeToken] = await createDevices(api, 'probe-', 1);
    // every device has a latest state before reads start
    await load({ url: node.url, connections: DEVICES, seconds: 1, request: ingestRequest(tokens, 1), overallRate: 2000 });
    await waitLagZero(api);

    const quiet = async () => { const f = await waitQuiet([node.pid], 10, 30); if (f >= 10) console.log(`  (the machine is not quiet: other processes use ${f}% of a core)`); };
    // 1. idle reads
    await quiet();
    await load({ url: node.url, connections: 4, seconds: 1, request: readRequest, overallRate: READ_RATE });
    const idle = await load({ url: node.url, connections: 4, seconds: SECONDS, request: readRequest, overallRate: READ_RATE });
    console.log(`latest read, no ingest:          ${fmt(idle.okPerSec)} reads/s  ${lat(idle.latency)}  other procs ${idle.foreign}%  (non-2xx: ${others(idle)})`);

    // 2. reads while ingesting RATE msg/s
    const ingestOpts = { url: node.url, connections: Math.min(DEVICES, 50), request: ingestRequest(tokens, BATCH), overallRate: Math.round(RATE / BATCH) };
    await quiet();
    const warm = load({ ...ingestOpts, seconds: 2 });
    await warm;
    const before = await readyz(api);
    const snap0 = await metricsSnapshot(node.url);
    const ingest = load({ ...ingestOpts, seconds: SECONDS + 2 });
    await sleep(1000);
    const reads = await load({ url: node.url, connections: 4, seconds: SECONDS, request: readRequest, overallRate: READ_RATE, watchPids: [node.pid] });
    const ing = await ingest;
    const after = await readyz(api);
    const snap1 = await metricsSnapshot(node.url);
    console.log(`ingest during reads:             ${fmt(ing.okPerSec * BATCH)} msg/s acknowledged (${fmt(ing.okPerSec)} req/s of ${BATCH}; p99 ack ${fmt(ing.latency.p99, 2)} ms; non-2xx: ${others(ing)}); stored ${fmt((after.processed - before.processed) / ing.seconds)} msg/s; lag at end ${after.lag}`);
    console.log(`latest read while ingesting:     ${fmt(reads.okPerSec)} reads/s  ${lat(reads.latency)}  cpu0/1 ${reads.cpuBusy.join('/')}% other procs ${reads.foreign}%  (non-2xx: ${others(reads)})`);
    const readGoal = reads.latency.p99 <= 2;
    for (const h of ['fluxgate_store_write_seconds', 'fluxgate_store_compaction_seconds', 'fluxgate_log_append_seconds']) console.log(`  ${histDelta(snap0, snap1, h)}`);
    console.log(`GOAL latest-read p99 ≤ 2 ms at ${fmt(RATE)} msg/s: ${fmt(reads.latency.p99, 2)} ms — ${readGoal ? 'MET' : 'NOT MET'}`);
    await waitLagZero(api);

    // 3. maximum sustained rate (end to end: stored per second)
    const maxOpts = { url: node.url, connections: DEVICES, request: ingestRequest(tokens, 100) };
    await quiet();
    await load({ ...maxOpts, seconds: 2 });
    const m0 = await readyz(api);
    const t0 = performance.now();
    const max = await load({ ...maxOpts, seconds: SECONDS, watchPids: [node.pid] });
    const m1 = await readyz(api);
    const storedPerSec = (m1.processed - m0.processed) / ((performance.now() - t0) / 1000);
    console.log(`max: ingest ${fmt(max.okPerSec * 100)} msg/s acknowledged (non-2xx: ${others(max)}), stored ${fmt(storedPerSec)} msg/s, lag at end ${fmt(m1.lag)}; cpu0/1 ${max.cpuBusy.join('/')}% other procs ${max.foreign}%`);
    const maxRate = Math.min(storedPerSec, max.okPerSec * 100);
    const caughtUp = await waitLagZero(api);
    console.log(`  (processing caught up ${fmt(caughtUp / 1000, 1)} s after the load stopped)`);

    // 4. visibility at half the maximum rate
    const half = Math.round(maxRate / 2);
    const halfBatch = 100;
    await quiet();
    const bg = load({ url: node.url, connections: Math.min(DEVICES, 50), request: ingestRequest(tokens, halfBatch), overallRate: Math.max(1, Math.round(half / halfBatch)), seconds: SECONDS + 3 });
    await sleep(2000);
    const snap2 = await metricsSnapshot(node.url);
    const foreign = foreignCpu([node.pid]);
    const probeApi = async (method: string, path: string, b?: unknown) => api(method, path, b, method === 'POST' ? probeToken : ADMIN_KEY);
    const visible: number[] = [];
    const acks: number[] = [];
    let timeouts = 0;
    let refused = 0;
    const end = performance.now() + SECONDS * 1000;
    for (let n = 1; performance.now() < end; n++) {
      const ts = Date.now();
      const sent = performance.now();
      const r = await probeApi('POST', '/api/v1/devices/probe-0/telemetry', { probe: n, ts });
      if (r.status !== 202) { refused++; await sleep(20); continue; }
      acks.push(performance.now() - sent);
      const deadline = performance.now() + 5000;
      let seen = false;
      while (performance.now() < deadline) {
        const l = await probeApi('GET', '/api/v1/devices/probe-0/latest');
        if (l.body?.latest?.probe?.value === n) { visible.push(Date.now() - ts); seen = true; break; }
        await sleep(1);
      }
      if (!seen) timeouts++;
      await sleep(10);
    }
    const snap3 = await metricsSnapshot(node.url);
    const foreignPct = foreign();
    const bgr = await bg;
    const v = percentiles(visible);
    console.log(`visibility at half max (${fmt(half)} msg/s target; background acknowledged ${fmt(bgr.okPerSec * halfBatch)} msg/s, non-2xx: ${others(bgr)}; other procs ${foreignPct}%):`);
    console.log(`  device time → visible in REST: ${visible.length} probes  ${lat(v)}${timeouts ? `  (${timeouts} not visible within 5 s)` : ''}${refused ? `  (${refused} probes refused)` : ''}`);
    console.log(`  device time → 202 (ack):       ${lat(percentiles(acks))}`);
    for (const h of ['fluxgate_store_write_seconds', 'fluxgate_store_compaction_seconds', 'fluxgate_log_append_seconds']) console.log(`  ${histDelta(snap2, snap3, h)}`);
    const visGoal = v.p99 <= 50 && timeouts === 0;
    console.log(`GOAL device time → visible p99 ≤ 50 ms at half max rate: ${fmt(v.p99, 2)} ms — ${visGoal ? 'MET' : 'NOT MET'}`);
  } finally {
    await stopChild(node.child);
    await rm(dir, { recursive: true, force: true });
    untrackDir(dir);
  }
  process.exit(0);
}

await main();
