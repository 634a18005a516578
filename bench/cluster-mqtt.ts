/**
 * Cluster MQTT bench: what a delivery from a publisher on node A to a subscriber on node B costs
 * (src/sources/mqtt/cluster/), beside the same delivery inside one node of the same cluster.
 * One nats-server with JetStream (R1), PostgreSQL (a fresh schema, dropped at the end, only for
 * the API key the clients log in with), two Fluxgate nodes in child processes. An application
 * client publishes QoS 1 messages (routed, not logged: this measures delivery, not ingest) at a
 * fixed rate, a QoS 1 subscriber receives them; latency is publish → receipt in this process.
 * CPU per process from /proc (utime + stime) over each run.
 * Usage: node --import tsx bench/cluster-mqtt.ts [--seconds 8] [--rates 1000,4000] [--max 1]
 * (PostgreSQL: FLUXGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { startNatsServer } from '../test/helpers/nats-server.js';
import { ADMIN_KEY, apiClient, spawnNode } from '../test/helpers/node.js';
import { tempDir, waitFor } from '../test/helpers/wait.js';
import { machine } from './run.js';

const arg = (name: string, def: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1]! : def; };
const SECONDS = Number(arg('seconds', '8'));
const RATES = arg('rates', '1000,4000').split(',').map(Number);
const MAX = arg('max', '1') !== '0';
/** --profile DIR: nodes A and B write V8 CPU profiles there (summed by self time at the end). */
const PROFILE = arg('profile', '');
const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `fluxgate_bench_mqtt_${randomBytes(4).toString('hex')}`;
const TICK = 100; // USER_HZ on Linux

const ticks = (pid: number | undefined): number => {
  if (!pid) return 0;
  try { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return Number(f[11]) + Number(f[12]); } catch { return 0; }
};

/** Node flags for a profiled child (V8 writes the profile when it exits, SIGTERM included). */
const prof = (name: string): string[] => (PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}/node-${name}`] : []);

/** spawnNode (test/helpers/node.ts), or with node flags the same command line by hand. */
async function startNode(dir: string, env: Record<string, string>, flags: string[]): Promise<Awaited<ReturnType<typeof spawnNode>>> {
  if (flags.length === 0) return spawnNode(dir, env);
  const cli = fileURLToPath(new URL('../bin/fluxgate.js', import.meta.url));
  const child = spawn(process.execPath, [...flags, cli, 'start'], {
    env: { ...process.env, FLUXGATE_DATA_DIR: dir, FLUXGATE_HTTP_PORT: '0', FLUXGATE_MQTT_PORT: '0', FLUXGATE_ADMIN_KEY: ADMIN_KEY, FLUXGATE_HTTP_HOST: '127.0.0.1', FLUXGATE_MQTT_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const url = await waitFor(() => /HTTP\s+(http:\/\/\S+)/.exec(out)?.[1], { timeoutMs: 30_000, what: 'the node banner' });
  const mqttPort = Number(/MQTT\s+mqtt:\/\/[^:\s]+:(\d+)/.exec(out)?.[1]);
  await waitFor(async () => (await fetch(url + '/readyz').catch(() => undefined))?.ok, { timeoutMs: 30_000, what: '/readyz' });
  return { child, url, mqttPort, output: () => out };
}

function connect(port: number, key: string): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, username: 'bench', password: key, reconnectPeriod: 0 });
  return new Promise((resolve, reject) => { c.once('connect', () => resolve(c)); c.once('error', reject); });
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

interface Run { label: string; offered: number | 'max'; sent: number; received: number; seconds: number; p50: number; p99: number; cpu: Record<string, number> }

async function run(label: string, pubPort: number, subPort: number, key: string, rate: number | 'max', procs: Record<string, number | undefined>): Promise<Run> {
  const topic = `bench/${randomBytes(3).toString('hex')}`;
  const sub = await connect(subPort, key);
  const pub = await connect(pubPort, key);
  await sub.subscribeAsync(topic, { qos: 1 });
  const lat: number[] = [];
  let received = 0;
  sub.on('message', (_t, payload) => { received++; lat.push(performance.now() - Number(payload.toString())); });
  // A warm-up message, so the subscription is known on every node before the clock starts.
  await pub.publishAsync(topic, String(performance.now()), { qos: 1 });
  await waitFor(() => received >= 1, { timeoutMs: 10_000, what: 'the warm-up message' });
  received = 0;
  lat.length = 0;
  const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, ticks(pid)]));
  const t0 = performance.now();
  let sent = 0;
  if (rate === 'max') {
    // As fast as PUBACKs come back, 64 in flight.
    const end = t0 + SECONDS * 1000;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (performance.now() < end) { sent++; await pub.publishAsync(topic, String(performance.now()), { qos: 1 }); }
    }));
  } else {
    const perTick = rate / 100;
    let due = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - t0;
        if (elapsed >= SECONDS * 1000) { clearInterval(timer); resolve(); return; }
        due = (elapsed / 10 + 1) * perTick;
        while (sent < due) { sent++; pub.publish(topic, String(performance.now()), { qos: 1 }); }
      }, 10);
    });
  }
  await waitFor(() => received >= sent, { timeoutMs: 60_000, intervalMs: 50, what: `${sent} deliveries (have ${received})` }).catch(() => undefined);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, (ticks(pid) - before[k]!) / TICK]));
  await pub.endAsync();
  await sub.endAsync();
  lat.sort((a, b) => a - b);
  return { label, offered: rate, sent, received, seconds, p50: pct(lat, 50), p99: pct(lat, 99), cpu };
}

async function main(): Promise<void> {
  console.log(machine());
  const nats = await startNatsServer();
  const dirs = [await tempDir('fluxgate-bench-a-'), await tempDir('fluxgate-bench-b-')];
  const env = { FLUXGATE_LOG: nats.url, FLUXGATE_STORE: PG_URL, FLUXGATE_STORE_SCHEMA: schema, FLUXGATE_LOG_LEVEL: 'error' };
  dirs.push(await tempDir('fluxgate-bench-solo-'));
  const a = await startNode(dirs[0]!.dir, { ...env, FLUXGATE_NODE_ID: 'a' }, prof('a'));
  const b = await startNode(dirs[1]!.dir, { ...env, FLUXGATE_NODE_ID: 'b' }, prof('b'));
  // The baseline: one node on its embedded log and store, no cluster code in the path.
  const solo = await spawnNode(dirs[2]!.dir, { FLUXGATE_LOG_LEVEL: 'error' });
  const results: Run[] = [];
  try {
    const r = await apiClient(a.url, ADMIN_KEY)('POST', '/api/v1/keys', { role: 'write', name: 'bench' });
    if (r.status !== 201) throw new Error(`API key: ${r.status} ${JSON.stringify(r.body)}`);
    const key = r.body.key as string;
    const rs = await apiClient(solo.url, ADMIN_KEY)('POST', '/api/v1/keys', { role: 'write', name: 'bench' });
    if (rs.status !== 201) throw new Error(`API key: ${rs.status} ${JSON.stringify(rs.body)}`);
    const procs = { 'node A': a.child.pid, 'node B': b.child.pid, 'nats-server': nats.server.pid };
    const rates: Array<number | 'max'> = [...RATES, ...(MAX ? ['max' as const] : [])];
    for (const rate of rates) {
      results.push(await run('A → B (cross-node)', a.mqttPort!, b.mqttPort!, key, rate, procs));
      results.push(await run('A → A (same node, cluster mode)', a.mqttPort!, a.mqttPort!, key, rate, procs));
      results.push(await run('one node, embedded (no cluster; its CPU in the A column)', solo.mqttPort!, solo.mqttPort!, rs.body.key as string, rate, { 'node A': solo.child.pid, 'node B': undefined, 'nats-server': undefined }));
    }
  } finally {
    for (const n of [a, b, solo]) n.child.kill('SIGTERM');
    await Promise.all([a, b, solo].map((n) => new Promise((r) => (n.child.exitCode !== null ? r(undefined) : n.child.once('exit', r)))));
    await nats.cleanup();
    for (const d of dirs) await d.cleanup();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try { await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`); } finally { await c.end(); }
  }
  console.log('\n| path | offered msg/s | delivered msg/s | lost | p50 ms | p99 ms | node A CPU s | node B CPU s | nats-server CPU s | CPU s per 1,000 msg/s: A / B / NATS |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const rate = r.received / r.seconds;
    const per = (s: number) => (s / r.seconds / (rate / 1000)).toFixed(3);
    console.log(`| ${r.label} | ${r.offered === 'max' ? 'max (64 in flight)' : r.offered} | ${Math.round(rate)} | ${r.sent - r.received} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.cpu['node A']!.toFixed(2)} | ${r.cpu['node B']!.toFixed(2)} | ${r.cpu['nats-server']!.toFixed(2)} | ${per(r.cpu['node A']!)} / ${per(r.cpu['node B']!)} / ${per(r.cpu['nats-server']!)} |`);
  }
}

/** Top functions by self time in a V8 .cpuprofile, as % of the profile's samples. */
function topFunctions(file: string, n = 12): string[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>; samples: number[] };
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  for (const id of p.samples) {
    const f = byId.get(id)!.callFrame;
    const k = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/src\//, 'src/')}:${f.lineNumber + 1}`;
    self.set(k, (self.get(k) ?? 0) + 1);
  }
  return [...self].sort((x, y) => y[1] - x[1]).slice(0, n).map(([k, v]) => `${((100 * v) / p.samples.length).toFixed(1)}% ${k}`);
}

async function report(): Promise<void> {
  await main();
  if (!PROFILE) return;
  for (const name of ['a', 'b']) {
    // One profile per thread (tsx's loader runs in a worker): the main thread's is the largest.
    const dir = `${PROFILE}/node-${name}`;
    const f = readdirSync(dir).map((x) => `${dir}/${x}`).sort((x, y) => statSync(y).size - statSync(x).size)[0]!;
    try { console.log(`\nnode ${name.toUpperCase()} self time:\n  ${topFunctions(f).join('\n  ')}`); } catch (err) { console.log(`no profile for node ${name}: ${(err as Error).message}`); }
  }
}

report().catch((err) => { console.error(err); process.exitCode = 1; });
