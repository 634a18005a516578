/**
 * @module Shedding under overload (issue 6): a time-compressed fleet over MQTT drives a node
 * about 3× past what its processing sustains, and the bench checks the promises: every event
 * acknowledged is stored, snapshots are shed (refused with PUBACK 0x97, counted per tenant) and
 * only those acknowledged are stored, the node's memory stays bounded. Printed: offered and
 * processed rates, events offered/stored, snapshots offered/shed/stored, peak RSS of the node,
 * lag of each log lane over time.
 *
 * The fleet: `--devices` devices each send a full snapshot every `--snapshot-every` seconds
 * (the fleet's 5 minutes, compressed) and `--events-per-snapshot` change events in between.
 * Connections come from `--generators` child processes, each on its own source address
 * 127.0.0.(2+i) (the open-file limit is 20,000 per process, for the node too). Two modes:
 * - `--mode gateway` (default): `--connections` MQTT connections log in with a tenant API key
 *   (write role) and publish for many devices each under the topic template
 *   `bench/{device}/{kind}` (autoProvision: devices are registered on their first message).
 * - `--mode native`: one connection per device, username = the device's token, topics
 *   devices/{id}/events and devices/{id}/snapshot (devices created over REST first).
 *
 * Processing is made the bottleneck legitimately: a small `--batch` (process.batchSize) makes
 * each store write and commit carry few records. Bounded: `--seconds` of load, then at most
 * `--drain-seconds` for processing to catch up; every child and temp dir is removed at the end.
 *
 *   node --import tsx bench/shedding-100k.ts [--mode gateway|native] [--devices 100000] [--connections 200]
 *     [--generators 4] [--seconds 60] [--drain-seconds 50] [--snapshot-every 30] [--events-per-snapshot 0.33]
 *     [--batch 200] [--shed-at 50000] [--max-lag 500000] [--window 20] [--outbox 40] [--store embedded|postgres://user@host:5432/db]
 *     [--node-heap-mib N (the node's --max-old-space-size)] [--cpu-prof DIR] [--log file|jetstream]
 *     [--memory-every S] [--store-cache-mib N] [--dedup-max-ids N] [--store-worker-heap-mib N] [--warmup-seconds 300]
 *
 * `--memory-every S` (default 15) prints, at the end, where the node's memory was every S
 * seconds of the run (docs/benchmarks.md "Memory under sustained overload"): RSS, the main
 * thread's V8 heap and external memory, each store worker's heap, SQLite's page cache ceiling
 * and the database size, and the length of every queue and in-memory map that has a gauge.
 * `--store-cache-mib` sets store.cacheBytes, `--dedup-max-ids` process.dedupMaxIds,
 * `--store-worker-heap-mib` store.workerHeapBytes.
 *
 * `--log jetstream` starts a nats-server of its own (JetStream, temp dir) for the node's log:
 * the lanes are then the streams FLUXGATE and FLUXGATE_SNAPSHOTS.
 *
 * With a postgres:// store the bench uses a schema of its own (bench_shed_<pid>) and drops it at
 * the end. (Why offer it: the embedded store's writer thread runs at nice 10, so on a machine
 * loaded by other work it gets almost no CPU and processing nearly stops; PostgreSQL's server
 * processes run at normal priority.)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startNatsServer, type NatsHandle } from '../test/helpers/nats-server.js';
import { cpuProfArgs, fmt, machine, startNodeChild, stopChild, track, untrackDir, type Api } from './run.js';
import type { GeneratorConfig, GeneratorConn, GeneratorCounters } from './lib/shed-generator.js';

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string', default: 'gateway' },
    devices: { type: 'string', default: '100000' },
    connections: { type: 'string', default: '200' },
    generators: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '60' },
    'drain-seconds': { type: 'string', default: '50' },
    'snapshot-every': { type: 'string', default: '30' },
    'events-per-snapshot': { type: 'string', default: '0.33' },
    batch: { type: 'string', default: '200' },
    'shed-at': { type: 'string', default: '50000' },
    'max-lag': { type: 'string', default: '500000' },
    window: { type: 'string', default: '20' },
    outbox: { type: 'string', default: '40' },
    store: { type: 'string', default: 'embedded' },
    log: { type: 'string', default: 'file' },
    'cpu-prof': { type: 'string' },
    'node-heap-mib': { type: 'string' },
    'memory-every': { type: 'string', default: '15' },
    'store-cache-mib': { type: 'string' },
    'dedup-max-ids': { type: 'string' },
    'store-worker-heap-mib': { type: 'string' },
    'warmup-seconds': { type: 'string', default: '300' },
  },
});
const MODE = a.mode as 'gateway' | 'native';
const DEVICES = Number(a.devices);
const GENERATORS = Number(a.generators);
const CONNECTIONS = MODE === 'native' ? DEVICES : Number(a.connections);
const SECONDS = Number(a.seconds);
const DRAIN_S = Number(a['drain-seconds']);
const STORE = a.store;
const PG_SCHEMA = `bench_shed_${process.pid}`;
const GENERATOR = fileURLToPath(new URL('./lib/shed-generator.ts', import.meta.url));

interface Sample { t: number; offered: number; acked: number; processed: number; eventsLag: number; snapshotsLag: number; shed: number; rssMiB: number; anonMiB: number }

/** Resident memory of a process from /proc: VmRSS (all), RssAnon (heap, stacks), RssFile (mapped files, e.g. SQLite's mmap), VmHWM (peak VmRSS). */
async function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile' = 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** From one /metrics scrape: lag of each lane (group process), snapshots shed, messages appended (MQTT accepted). */
async function scrape(url: string): Promise<{ eventsLag: number; snapshotsLag: number; shed: number; appended: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let eventsLag = 0, snapshotsLag = 0, shed = 0, appended = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('fluxgate_log_lane_lag_records{') && line.includes('group="process"')) {
      const v = Number(line.split(' ').at(-1));
      if (line.includes('lane="events"')) eventsLag = v; else if (line.includes('lane="snapshots"')) snapshotsLag = v;
    } else if (line.startsWith('fluxgate_snapshots_shed_total{')) shed += Number(line.split(' ').at(-1));
    else if (line.startsWith('fluxgate_mqtt_publishes_total{') && line.includes('outcome="accepted"')) appended += Number(line.split(' ').at(-1));
  }
  return { eventsLag, snapshotsLag, shed, appended };
}

/** Where the node's memory is, from /proc and one /metrics scrape (MiB unless a count). */
interface MemorySample {
  t: number; rss: number; anon: number; mainHeapUsed: number; mainHeapTotal: number; mainExternal: number;
  writerHeap: number; writerHeapTotal: number; readerHeap: number; readerHeapTotal: number; workersExternal: number;
  cacheLimit: number; dbFile: number; logPending: number;
  dedupIds: number; suppressKeys: number; ingestQueue: number; storeQueue: number; names: number; series: number; pendingLatest: number; rollupSeries: number;
}

async function memorySample(url: string, pid: number, t: number): Promise<MemorySample> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const v = (name: string, labels = '') => text.split('\n').filter((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && l.includes(labels)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  const mib = (n: number) => n / 2 ** 20;
  return {
    t, rss: await rssMiB(pid), anon: await rssMiB(pid, 'RssAnon'),
    mainHeapUsed: mib(v('fluxgate_process_nodejs_heap_size_used_bytes')), mainHeapTotal: mib(v('fluxgate_process_nodejs_heap_size_total_bytes')), mainExternal: mib(v('fluxgate_process_nodejs_external_memory_bytes')),
    writerHeap: mib(v('fluxgate_store_worker_heap_used_bytes', 'role="writer"')), writerHeapTotal: mib(v('fluxgate_store_worker_heap_total_bytes', 'role="writer"')),
    readerHeap: mib(v('fluxgate_store_worker_heap_used_bytes', 'role="reader"')), readerHeapTotal: mib(v('fluxgate_store_worker_heap_total_bytes', 'role="reader"')),
    workersExternal: mib(v('fluxgate_store_worker_external_bytes')),
    cacheLimit: mib(v('fluxgate_store_sqlite_cache_limit_bytes')), dbFile: mib(v('fluxgate_store_file_bytes', 'role="writer"')), logPending: mib(v('fluxgate_log_pending_bytes')),
    dedupIds: v('fluxgate_dedup_window_ids'), suppressKeys: v('fluxgate_suppress_keys'), ingestQueue: v('fluxgate_mqtt_ingest_queue_messages'), storeQueue: v('fluxgate_store_queue_requests'),
    names: v('fluxgate_store_cached_entries', 'map="names"'), series: v('fluxgate_store_cached_entries', 'map="series"'),
    pendingLatest: v('fluxgate_store_cached_entries', 'map="pending_latest"'), rollupSeries: v('fluxgate_store_cached_entries', 'map="rollup_series"'),
  };
}

function printMemory(samples: MemorySample[]): void {
  console.log(`\nMemory every ${a['memory-every']} s (MiB; counts are entries). heap = V8 heap used/total; SQLite cache = both connections' ceiling (database file size); rest = RSS − main heap total − main external − worker heaps total − worker external`);
  console.log('| t s | RSS (anon) | main heap | main external | writer heap | reader heap | worker external | SQLite cache (db file) | rest | dedup ids | suppress keys | MQTT ingest queue | store queue | log pending | names | series | pending latest | roll-up series |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const m of samples) {
    const rest = m.rss - m.mainHeapTotal - m.mainExternal - m.writerHeapTotal - m.readerHeapTotal - m.workersExternal;
    console.log(`| ${m.t.toFixed(0)} | ${fmt(m.rss)} (${fmt(m.anon)}) | ${fmt(m.mainHeapUsed)}/${fmt(m.mainHeapTotal)} | ${fmt(m.mainExternal)} | ${fmt(m.writerHeap)}/${fmt(m.writerHeapTotal)} | ${fmt(m.readerHeap)}/${fmt(m.readerHeapTotal)} | ${fmt(m.workersExternal)} | ${fmt(m.cacheLimit)} (${fmt(m.dbFile)}) | ${fmt(rest)} | ${fmt(m.dedupIds)} | ${fmt(m.suppressKeys)} | ${fmt(m.ingestQueue)} | ${fmt(m.storeQueue)} | ${fmt(m.logPending, 1)} | ${fmt(m.names)} | ${fmt(m.series)} | ${fmt(m.pendingLatest)} | ${fmt(m.rollupSeries)} |`);
  }
}

function sum(cs: GeneratorCounters[]): GeneratorCounters {
  const out: GeneratorCounters = { eventsOffered: 0, eventsAcked: 0, eventsRefused: 0, snapshotsOffered: 0, snapshotsAcked: 0, snapshotsShed: 0, snapshotsRefused: 0, heldBack: 0, connected: 0, errors: [], warmupAcked: 0 };
  for (const c of cs) {
    for (const k of Object.keys(out) as Array<keyof GeneratorCounters>) if (k !== 'errors') (out[k] as number) += c[k] as number;
    out.errors.push(...c.errors);
  }
  return out;
}

/** Creates devices over REST, `parallel` at a time; returns their tokens. */
async function createDevices(api: Api, ids: string[], parallel = 32): Promise<string[]> {
  const tokens: string[] = new Array(ids.length);
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < ids.length) {
      const i = next++;
      const r = await api('POST', '/api/v1/devices', { id: ids[i] });
      if (r.status !== 201) throw new Error(`create device ${ids[i]}: ${r.status} ${JSON.stringify(r.body)}`);
      tokens[i] = r.body.token;
    }
  }));
  return tokens;
}

/** Every stored raw message id, by kind (paging the REST raw archive). */
async function storedIds(api: Api, from: number, to: number): Promise<{ events: Set<string>; snapshots: number }> {
  const events = new Set<string>();
  let snapshots = 0;
  let after: string | undefined;
  do {
    const r = await api('GET', `/api/v1/messages?from=${from}&to=${to}&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    if (r.status !== 200) throw new Error(`GET /api/v1/messages: ${r.status} ${JSON.stringify(r.body)}`);
    for (const m of r.body.items as Array<{ kind: string; messageId: string }>) {
      if (m.kind === 'snapshot') snapshots++;
      else if (m.kind === 'event') events.add(m.messageId); // not the warm-up's attributes, which may fall in the range
    }
    after = r.body.next;
  } while (after);
  return { events, snapshots };
}

const root = await mkdtemp(join(tmpdir(), 'fluxgate-bench-shed-'));
track(undefined, root);
const generators: ChildProcess[] = [];
let nats: NatsHandle | undefined;
/** The node's output, for a run that fails before its report. */
let nodeOutput = (): string => '';
/** The node, stopped in `finally` too when a run fails (before the schema is dropped). */
let nodeChild: ChildProcess | undefined;
try {
  if (a.log === 'jetstream') nats = await startNatsServer();
  console.log(`Shedding under overload: ${nats ? 'JetStream log' : 'embedded log'}, ${STORE === 'embedded' ? 'embedded store' : 'PostgreSQL store'}, ${fmt(DEVICES)} devices (${MODE}), ${fmt(CONNECTIONS)} MQTT connections from ${GENERATORS} generator processes; snapshot every ${a['snapshot-every']} s + ${a['events-per-snapshot']} event(s) per device in between; ${SECONDS} s of load; process.batchSize ${a.batch}; shedSnapshotsAtRecords ${a['shed-at']}; maxLagRecords ${a['max-lag']}`);
  console.log(`machine: ${machine()} — shared with other work while measured`);
  const configFile = join(root, 'fluxgate.json');
  await writeFile(configFile, JSON.stringify(MODE === 'gateway' ? { templates: [{ id: 'bench', pattern: 'bench/{device}/{kind}', kinds: { events: 'event', snapshot: 'snapshot' }, autoProvision: true }] } : {}));
  const node = await startNodeChild(join(root, 'data'), {
    ...(STORE === 'embedded' ? {} : { FLUXGATE_STORE: STORE, FLUXGATE_STORE_SCHEMA: PG_SCHEMA }),
    ...(nats ? { FLUXGATE_LOG: nats.url } : {}),
    ...(a['store-cache-mib'] ? { FLUXGATE_STORE_CACHE_BYTES: String(Number(a['store-cache-mib']) * 2 ** 20) } : {}),
    ...(a['dedup-max-ids'] ? { FLUXGATE_PROCESS_DEDUP_MAX_IDS: a['dedup-max-ids'] } : {}),
    ...(a['store-worker-heap-mib'] ? { FLUXGATE_STORE_WORKER_HEAP_BYTES: String(Number(a['store-worker-heap-mib']) * 2 ** 20) } : {}),
    FLUXGATE_CONFIG: configFile, FLUXGATE_PROCESS_BATCH_SIZE: a.batch, FLUXGATE_LOG_SHED_SNAPSHOTS_AT_RECORDS: a['shed-at'], FLUXGATE_LOG_MAX_LAG_RECORDS: a['max-lag'],
  }, { cpu: '0-1', nodeArgs: [...cpuProfArgs(a['cpu-prof']), ...(a['node-heap-mib'] ? [`--max-old-space-size=${a['node-heap-mib']}`] : [])] });
  nodeOutput = node.output;
  nodeChild = node.child;
  const mqttPort = Number(/MQTT\s+mqtt:\/\/\S+:(\d+)/.exec(node.output())?.[1] ?? NaN);
  if (!Number.isFinite(mqttPort)) throw new Error(`no MQTT port in the node's banner:\n${node.output()}`);

  // Who connects, carrying which devices.
  const ids = Array.from({ length: DEVICES }, (_, i) => `fleet-${i}`);
  let conns: GeneratorConn[];
  let topic: string;
  if (MODE === 'native') {
    const t0 = performance.now();
    const tokens = await createDevices(node.api, ids);
    console.log(`created ${fmt(DEVICES)} devices over REST in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    conns = ids.map((id, i) => ({ username: tokens[i]!, clientId: id, devices: [id] }));
    topic = 'devices/{device}/{kind}';
  } else {
    const key = await node.api('POST', '/api/v1/keys', { role: 'write', name: 'bench-gateway' });
    if (key.status !== 201) throw new Error(`create gateway key: ${key.status} ${JSON.stringify(key.body)}`);
    conns = Array.from({ length: CONNECTIONS }, (_, c) => ({ username: 'bench-gateway', password: key.body.key as string, clientId: `gw-${c}`, devices: ids.filter((_, i) => i % CONNECTIONS === c) }));
    topic = 'bench/{device}/{kind}';
  }
  const kindWords = MODE === 'native' ? { event: 'events', snapshot: 'snapshot' } : { event: 'events', snapshot: 'snapshot' };

  // Generators: each its own source address and its share of the connections.
  const progress: GeneratorCounters[] = [];
  const done: Array<Promise<{ counters: GeneratorCounters; acked: Array<{ devices: string[]; acked: number[]; sent: number[] }>; undrained: number }>> = [];
  const connected: Array<Promise<void>> = [];
  const warmed: Array<Promise<void>> = [];
  for (let g = 0; g < GENERATORS; g++) {
    const child = fork(GENERATOR, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    track(child);
    generators.push(child);
    const cfg: GeneratorConfig = {
      host: '127.0.0.1', port: mqttPort, localAddress: `127.0.0.${2 + g}`, conns: conns.filter((_, i) => i % GENERATORS === g), topic, kindWords,
      snapshotEveryS: Number(a['snapshot-every']), eventsPerSnapshot: Number(a['events-per-snapshot']), durationS: SECONDS, window: Number(a.window), outboxMax: Number(a.outbox),
      warmupTopic: topic.replace('{kind}', 'attributes'),
    };
    progress.push(sum([]));
    warmed.push(new Promise((resolve, reject) => {
      child.on('message', (m: any) => {
        if (m.type === 'warmed') resolve();
        if (m.type === 'failed') reject(new Error(`generator ${g}: ${m.error}`));
      });
      child.once('exit', (code) => reject(new Error(`generator ${g} exited (${code}) during the warm-up`)));
    }));
    connected.push(new Promise((resolve, reject) => {
      child.on('message', (m: any) => {
        if (m.type === 'connected') resolve();
        if (m.type === 'failed') reject(new Error(`generator ${g}: ${m.error}`));
      });
    }));
    done.push(new Promise((resolve, reject) => {
      child.on('message', (m: any) => {
        if (m.type === 'progress') progress[g] = m.counters;
        if (m.type === 'done') { progress[g] = m.counters; resolve(m); }
        if (m.type === 'failed') reject(new Error(`generator ${g}: ${m.error}`));
      });
      child.once('exit', (code) => reject(new Error(`generator ${g} exited (${code})`)));
    }));
    // Generators are killed in `finally` after a failed run: their exits then reject promises nobody awaits any more.
    for (const p of [warmed.at(-1)!, connected.at(-1)!, done.at(-1)!]) p.catch(() => undefined);
    child.send(cfg);
  }
  const tc = performance.now();
  await Promise.all(connected);
  console.log(`${fmt(CONNECTIONS)} connections up in ${((performance.now() - tc) / 1000).toFixed(1)} s`);
  // Warm-up (not measured): every device announces itself once, and processing catches up.
  const tw = performance.now();
  for (const g of generators) g.send('warmup');
  // Bounded: a warm-up that stops making progress fails the run with where it stood.
  let warmTimer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([Promise.all(warmed), new Promise<never>((_, reject) => {
      warmTimer = setTimeout(() => reject(new Error(`the warm-up did not finish within ${a['warmup-seconds']} s (--warmup-seconds): ${fmt(progress.reduce((n, p) => n + p.warmupAcked, 0))} of ${fmt(DEVICES)} warm-up messages acknowledged; generator errors: ${progress.flatMap((p) => p.errors).slice(0, 5).join(' | ') || 'none'}`)), Number(a['warmup-seconds']) * 1000);
    })]);
  } finally {
    clearTimeout(warmTimer);
  }
  const warmAcked = performance.now();
  for (;;) {
    const m = await scrape(node.url);
    if (m.eventsLag + m.snapshotsLag === 0) break;
    if (performance.now() - tw > 300_000) throw new Error('processing did not catch up with the warm-up within 5 minutes');
    await new Promise((r) => setTimeout(r, 500));
  }
  const memory: MemorySample[] = [await memorySample(node.url, node.pid, 0)];
  console.log(`warm-up: ${fmt(DEVICES)} attributes messages (one per device${MODE === 'gateway' ? ', which registers it' : ''}) acknowledged in ${((warmAcked - tw) / 1000).toFixed(1)} s, processed ${((performance.now() - tw) / 1000).toFixed(1)} s after the start; node RSS ${fmt(await rssMiB(node.pid))} MiB before load`);

  // Load, sampled every second.
  const fromTs = Date.now() - 1000;
  const samples: Sample[] = [];
  const t0 = performance.now();
  for (const g of generators) g.send('start');
  let finished = false;
  const all = Promise.all(done).finally(() => { finished = true; });
  all.catch(() => undefined);
  console.log('\n| t s | offered msg/s | logged msg/s (PUBACK 0) | processed msg/s | lag events | lag snapshots | shed total | node RSS MiB (anonymous) |');
  console.log('|---|---|---|---|---|---|---|---|');
  let prev: Sample = { t: 0, offered: 0, acked: 0, processed: 0, eventsLag: 0, snapshotsLag: 0, shed: 0, rssMiB: 0, anonMiB: 0 };
  const deadline = t0 + (SECONDS + DRAIN_S) * 1000;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const c = sum(progress);
    const m = await scrape(node.url).catch(() => ({ eventsLag: NaN, snapshotsLag: NaN, shed: NaN, appended: NaN }));
    const acked = c.eventsAcked + c.snapshotsAcked;
    const s: Sample = { t: (performance.now() - t0) / 1000, offered: c.eventsOffered + c.snapshotsOffered, acked, processed: m.appended - m.eventsLag - m.snapshotsLag, eventsLag: m.eventsLag, snapshotsLag: m.snapshotsLag, shed: m.shed, rssMiB: await rssMiB(node.pid), anonMiB: await rssMiB(node.pid, 'RssAnon') };
    samples.push(s);
    if (s.t - memory.at(-1)!.t >= Number(a['memory-every']) - 0.5) memory.push(await memorySample(node.url, node.pid, s.t).catch(() => memory.at(-1)!));
    const dt = s.t - prev.t;
    if (samples.length % 5 === 0 || (finished && s.eventsLag + s.snapshotsLag === 0)) {
      const p5 = samples[Math.max(0, samples.length - 6)]!;
      const span = s.t - (samples.length > 5 ? p5.t : 0);
      const base = samples.length > 5 ? p5 : { offered: 0, acked: 0, processed: 0 };
      console.log(`| ${s.t.toFixed(0)} | ${fmt((s.offered - base.offered) / span)} | ${fmt((s.acked - base.acked) / span)} | ${fmt((s.processed - base.processed) / span)} | ${fmt(s.eventsLag)} | ${fmt(s.snapshotsLag)} | ${fmt(s.shed)} | ${fmt(s.rssMiB)} (${fmt(s.anonMiB)}) |`);
    }
    void dt;
    prev = s;
    if (finished && s.eventsLag === 0 && s.snapshotsLag === 0) break;
    if (performance.now() > deadline) { console.log(`stopped waiting for the drain after ${SECONDS + DRAIN_S} s`); break; }
  }
  const results = await all;
  memory.push(await memorySample(node.url, node.pid, (performance.now() - t0) / 1000));
  const c = sum(results.map((r) => r.counters));
  const peakRss = await rssMiB(node.pid, 'VmHWM');
  const loadS = SECONDS;
  const loadSamples = samples.filter((s) => s.t <= loadS + 0.5);
  const lastLoad = loadSamples.at(-1) ?? samples.at(-1)!;
  const firstLoad = loadSamples.find((s) => s.t >= 10) ?? samples[0]!; // after the first snapshot period's provisioning
  const processedRate = (lastLoad.processed - firstLoad.processed) / (lastLoad.t - firstLoad.t);
  const offeredRate = (lastLoad.offered - firstLoad.offered) / (lastLoad.t - firstLoad.t);

  // What the store holds.
  const tq = performance.now();
  const stored = await storedIds(node.api, fromTs, Date.now() + 1000);
  let expectedEvents = 0, missing = 0, unacked = 0;
  for (const r of results) for (const conn of r.acked) conn.devices.forEach((d, i) => {
    const sent = conn.sent[i]!;
    expectedEvents += sent;
    if (conn.acked[i] !== sent) unacked += sent - conn.acked[i]!;
    for (let s = 0; s < sent; s++) if (!stored.events.has(`${d}:${s}`)) missing++;
  });
  const shedMetric = (await scrape(node.url)).shed;
  const metricsText = await (await fetch(`${node.url}/metrics`)).text();
  const metric = (name: string) => metricsText.split('\n').filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  const writes = metric('fluxgate_store_write_seconds_count');
  const mib = (n: number) => fmt(n / 2 ** 20);
  console.log(`node main thread at the end: heap used ${mib(metric('fluxgate_process_nodejs_heap_size_used_bytes'))} MiB of ${mib(metric('fluxgate_process_nodejs_heap_size_total_bytes'))} MiB, external ${mib(metric('fluxgate_process_nodejs_external_memory_bytes'))} MiB${a['node-heap-mib'] ? ` (--max-old-space-size=${a['node-heap-mib']})` : ''}`);
  console.log(`store writes: ${fmt(writes)} batches, ${(metric('fluxgate_store_write_seconds_sum') * 1000 / writes).toFixed(1)} ms each on average; node CPU ${fmt(metric('fluxgate_process_process_cpu_seconds_total'), 1)} s`);
  console.log(`\nread back ${fmt(stored.events.size + stored.snapshots)} stored messages over REST in ${((performance.now() - tq) / 1000).toFixed(1)} s`);
  console.log(`offered ${fmt(offeredRate)} msg/s vs processed ${fmt(processedRate)} msg/s over t=${firstLoad.t.toFixed(0)}..${lastLoad.t.toFixed(0)} s: ${(offeredRate / processedRate).toFixed(1)}× past what processing sustained`);
  console.log(`events: offered ${fmt(c.eventsOffered)}, acknowledged ${fmt(c.eventsAcked)}, refused ${fmt(c.eventsRefused)}, stored ${fmt(stored.events.size)} (expected ${fmt(expectedEvents)}, missing ${fmt(missing)}, never answered ${fmt(unacked)})`);
  console.log(`snapshots: offered ${fmt(c.snapshotsOffered)}, shed ${fmt(c.snapshotsShed)} (fluxgate_snapshots_shed_total ${fmt(shedMetric)}), acknowledged ${fmt(c.snapshotsAcked)}, refused otherwise ${fmt(c.snapshotsRefused)}, stored ${fmt(stored.snapshots)}`);
  console.log(`held back in the generators while the node slowed them down: ${fmt(c.heldBack)}; connections at the end: ${fmt(c.connected)}; peak node RSS ${fmt(peakRss)} MiB (VmHWM), peak anonymous RSS sampled ${fmt(Math.max(...samples.map((x) => x.anonMiB)))} MiB, RSS of mapped files at the end ${fmt(await rssMiB(node.pid, 'RssFile'))} MiB`);
  printMemory(memory);
  if (c.errors.length) console.log(`generator errors (first ${c.errors.length}): ${c.errors.slice(0, 5).join(' | ')}`);
  const ok = missing === 0 && unacked === 0 && c.eventsRefused === 0 && stored.events.size === c.eventsAcked && stored.snapshots === c.snapshotsAcked && shedMetric === c.snapshotsShed;
  console.log(ok ? 'CHECK passed: every event stored, shed snapshots counted, acknowledged snapshots stored' : 'CHECK FAILED (see the figures above)');
  if (!ok) console.log(`node output (last lines):\n${node.output().split('\n').slice(-8).map((l) => l.slice(0, 400)).join('\n')}`);
  process.exitCode = ok ? 0 : 1;
  await stopChild(node.child);
} catch (err) {
  console.log(`node output (last lines):\n${nodeOutput().split('\n').slice(-15).map((l) => l.slice(0, 4000)).join('\n')}`);
  throw err;
} finally {
  if (nodeChild) await stopChild(nodeChild);
  for (const g of generators) await stopChild(g, 'SIGKILL', 1000);
  await nats?.cleanup();
  await rm(root, { recursive: true, force: true });
  untrackDir(root);
  if (STORE !== 'embedded') {
    const c = new pg.Client({ connectionString: STORE });
    await c.connect();
    try { await c.query(`DROP SCHEMA IF EXISTS "${PG_SCHEMA}" CASCADE`); } finally { await c.end(); }
  }
}
