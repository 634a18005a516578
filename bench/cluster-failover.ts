/**
 * Cluster bench: throughput of 3 nodes behind HAProxy (and of one node alone, in the same
 * cluster), per-process CPU per 1,000 msg/s, and reconnect time after a node dies.
 * A 3-server NATS cluster (R3), PostgreSQL (a fresh schema, dropped at the end), 3 nodes and
 * HAProxy, all local (test/cluster/harness.ts).
 * Usage: node --import tsx bench/cluster-failover.ts [--seconds 10] [--connections 32] [--rounds 3] [--mqtt 6]
 * (PostgreSQL: FLUXGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test)
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import pg from 'pg';
import { startLocalCluster, type LocalCluster } from '../test/cluster/harness.js';
import { ADMIN_KEY, apiClient } from '../test/helpers/node.js';
import { waitFor } from '../test/helpers/wait.js';
import { load, machine, fmt } from './run.js';

const arg = (name: string, def: number) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const SECONDS = arg('seconds', 10);
const CONNECTIONS = arg('connections', 32);
const ROUNDS = arg('rounds', 3);
const MQTT_CLIENTS = arg('mqtt', 6);
const HTTP_CLIENTS = 8;
const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `fluxgate_bench_${randomBytes(4).toString('hex')}`;
const TICK = 100; // USER_HZ on Linux

const ticks = (pid: number | undefined): number => {
  if (!pid) return 0;
  try { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return Number(f[11]) + Number(f[12]); } catch { return 0; }
};

function processes(c: LocalCluster): Array<[string, number | undefined]> {
  return [
    ...c.nodes.map((n) => [n.name, n.child.pid] as [string, number | undefined]),
    ...c.nats.servers.map((s, i) => [`nats-${i + 1}`, s.pid] as [string, number | undefined]),
    ['haproxy', c.haproxyPid],
  ];
}

async function leader(c: LocalCluster): Promise<number> {
  for (let i = 0; i < c.nodes.length; i++) {
    if (!c.nodes[i]!.running) continue;
    const r = await c.readyz(i).catch(() => undefined);
    if (/^leader/.test(r?.components?.process?.detail ?? '')) return i;
  }
  return -1;
}

async function lagZero(c: LocalCluster): Promise<void> {
  const i = c.nodes.findIndex((n) => n.running);
  await waitFor(async () => (await c.readyz(i))?.components?.log?.detail?.startsWith('lag 0 '), { timeoutMs: 300_000, intervalMs: 100, what: 'processing to catch up' });
}

async function throughput(c: LocalCluster, label: string, url: string, tokens: string[]): Promise<void> {
  const procs = processes(c);
  const before = procs.map(([, pid]) => ticks(pid));
  const t0 = Date.now();
  const r = await load({
    url, connections: CONNECTIONS, seconds: SECONDS,
    request: (i) => ({ method: 'POST', path: `/api/v1/devices/dev-${i % tokens.length}/telemetry`, headers: { authorization: `Bearer ${tokens[i % tokens.length]}`, 'content-type': 'application/json' }, body: '{"temperature":21.5,"humidity":40}' }),
    watchPids: procs.map(([, p]) => p!).filter(Boolean),
  });
  const ingestEnd = Date.now();
  await lagZero(c);
  const drained = Date.now();
  const after = procs.map(([, pid]) => ticks(pid));
  const wall = (drained - t0) / 1000;
  console.log(`\n${label}: ${fmt(r.ok)} × 202 in ${fmt(r.seconds)} s = ${fmt(r.okPerSec)} msg/s acknowledged (other statuses ${JSON.stringify(Object.fromEntries(Object.entries(r.statuses).filter(([k]) => k !== '202')))}, errors ${r.errors}); latency ms p50 ${fmt(r.latency.p50 ?? 0, 2)} p99 ${fmt(r.latency.p99 ?? 0, 2)}; processing done ${fmt((drained - ingestEnd) / 1000, 1)} s after ingest ended (stored ${fmt(r.ok / wall)} msg/s over the whole run); cores busy ${r.cpuBusy.join('/')} %`);
  console.log('| process | CPU % of a core (ingest + drain) | CPU ms per 1,000 msg |');
  console.log('|---|---|---|');
  for (let i = 0; i < procs.length; i++) {
    const used = (after[i]! - before[i]!) / TICK;
    console.log(`| ${procs[i]![0]} | ${fmt((100 * used) / wall)} | ${fmt((1000 * used * 1000) / Math.max(1, r.ok), 1)} |`);
  }
}

async function failoverRound(c: LocalCluster, round: number, tokens: string[]): Promise<void> {
  const victim = round % c.nodes.length;
  const wasLeader = (await leader(c)) === victim;
  // HTTP clients: one fetch loop each; MQTT clients: QoS 1 publish loops with reconnect.
  let running = true;
  let faultAt = 0;
  let fails = 0;
  let n = 0;
  const firstOk: Array<number | undefined> = Array(HTTP_CLIENTS).fill(undefined);
  const httpClient = async (i: number) => {
    while (running) {
      const started = Date.now();
      try {
        const r = await fetch(`${c.httpUrl}/api/v1/devices/dev-${i}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${tokens[i]}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `r${round}-${n++}`, v: 1 }), signal: AbortSignal.timeout(10_000) });
        await r.arrayBuffer();
        if (r.status === 202) { if (faultAt && started >= faultAt && firstOk[i] === undefined) firstOk[i] = Date.now(); continue; }
      } catch { /* counted below */ }
      fails++;
      await new Promise((r) => setTimeout(r, 20)); // client back-off after a refusal
    }
  };
  const mq = await Promise.all(Array.from({ length: MQTT_CLIENTS }, async (_, i) => {
    const d = HTTP_CLIENTS + i;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${c.mqttPort}`, { username: tokens[d], clientId: `bench-r${round}-${d}`, protocolVersion: 4, clean: true, reconnectPeriod: 50, connectTimeout: 5000 });
    const s = { client, closedAfterFault: 0, reconnectedAt: 0, ackAfterReconnect: 0 };
    client.on('close', () => { if (faultAt && !s.closedAfterFault) s.closedAfterFault = Date.now(); });
    client.on('connect', () => { if (s.closedAfterFault && !s.reconnectedAt) s.reconnectedAt = Date.now(); });
    const loop = (async () => {
      let k = 0;
      while (running) {
        try {
          await client.publishAsync(`devices/dev-${d}/telemetry`, JSON.stringify({ id: `mr${round}-${k++}`, v: 1 }), { qos: 1 });
          if (s.reconnectedAt && !s.ackAfterReconnect) s.ackAfterReconnect = Date.now();
        } catch { await new Promise((r) => setTimeout(r, 20)); }
      }
    })();
    return { s, loop };
  }));
  const http = Array.from({ length: HTTP_CLIENTS }, (_, i) => httpClient(i));
  await waitFor(() => n > 200, { timeoutMs: 30_000, what: 'load running' });
  faultAt = Date.now();
  await c.killNode(victim);
  await waitFor(() => firstOk.every((t) => t !== undefined), { timeoutMs: 30_000, intervalMs: 5, what: 'HTTP clients served again' });
  const httpMs = Math.max(...firstOk.map((t) => t! - faultAt));
  const dropped = () => mq.filter((m) => m.s.closedAfterFault);
  await waitFor(() => dropped().every((m) => m.s.ackAfterReconnect), { timeoutMs: 30_000, intervalMs: 5, what: 'MQTT clients reconnected' });
  let takeoverMs = NaN;
  if (wasLeader) {
    await waitFor(async () => (await leader(c)) >= 0, { timeoutMs: 30_000, intervalMs: 20, what: 'a new processing leader' });
    takeoverMs = Date.now() - faultAt;
  }
  running = false;
  await Promise.all(http);
  // A publish in flight when its client ends may never settle: give the loops a moment, then end.
  await Promise.all(mq.map((m) => Promise.race([m.loop.catch(() => undefined), new Promise((r) => setTimeout(r, 5000))])));
  for (const m of mq) m.s.client.end(true);
  const rec = dropped().map((m) => m.s.reconnectedAt - faultAt);
  const acks = dropped().map((m) => m.s.ackAfterReconnect - faultAt);
  console.log(`| ${round + 1} | ${c.nodes[victim]!.name}${wasLeader ? ' (processing leader)' : ''} | ${httpMs} | ${fails} | ${dropped().length}/${MQTT_CLIENTS} | ${rec.length ? `${Math.min(...rec)}-${Math.max(...rec)}` : '-'} | ${acks.length ? `${Math.min(...acks)}-${Math.max(...acks)}` : '-'} | ${Number.isNaN(takeoverMs) ? '-' : takeoverMs} |`);
  await c.restartNode(victim);
}

async function main(): Promise<void> {
  console.log(`machine: ${machine()}`);
  console.log(`command: node --import tsx bench/cluster-failover.ts --seconds ${SECONDS} --connections ${CONNECTIONS} --rounds ${ROUNDS} --mqtt ${MQTT_CLIENTS}`);
  const c = await startLocalCluster({ nodes: 3, store: PG_URL, leaseTtlMs: 4000, env: { FLUXGATE_STORE_SCHEMA: schema, FLUXGATE_LOG_LEVEL: 'warn' } });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { console.error(`${sig}: stopping the cluster`); void c.cleanup().finally(() => process.exit(130)); });
  }
  try {
    const api = apiClient(c.httpUrl, ADMIN_KEY);
    const tokens: string[] = [];
    for (let i = 0; i < Math.max(CONNECTIONS, HTTP_CLIENTS + MQTT_CLIENTS); i++) {
      const r = await api('POST', '/api/v1/devices', { id: `dev-${i}` });
      if (r.status !== 201) throw new Error(`device: ${r.status} ${JSON.stringify(r.body)}`);
      tokens.push(r.body.token);
    }
    const lead = await leader(c);
    console.log(`processing leader: ${c.nodes[lead]?.name}`);
    await throughput(c, `3 nodes through HAProxy, ${CONNECTIONS} connections`, c.httpUrl, tokens.slice(0, CONNECTIONS));
    const other = (lead + 1) % c.nodes.length;
    await throughput(c, `one node alone (${c.nodes[other]!.name}, not the processing leader), ${CONNECTIONS} connections, direct`, c.nodes[other]!.url, tokens.slice(0, CONNECTIONS));

    console.log(`\nFailover: ${HTTP_CLIENTS} HTTP clients and ${MQTT_CLIENTS} MQTT QoS 1 publishers through HAProxy; one node SIGKILLed per round (restarted after). Times in ms from the kill.`);
    console.log('| round | killed | HTTP: every client served again | HTTP refused/failed | MQTT clients dropped | MQTT reconnected | MQTT first PUBACK after | processing taken over |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (let round = 0; round < ROUNDS; round++) await failoverRound(c, round, tokens);
    await lagZero(c);
  } finally {
    await c.cleanup();
    const cl = new pg.Client({ connectionString: PG_URL });
    await cl.connect();
    await cl.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => cl.end());
  }
}

await main();
process.exit(0);
