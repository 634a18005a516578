/**
 * @module Cluster failover, end to end on this machine: a 3-server NATS JetStream cluster (R3),
 * PostgreSQL (a fresh schema, dropped afterwards), 3 Fluxgate nodes in child processes and
 * HAProxy in front (config generated from deploy/haproxy.cfg), all on free ports
 * (test/cluster/harness.ts). HTTP clients and MQTT QoS 1 publishers send unique messages through HAProxy while
 *   1. the node holding the processing lease is SIGKILLed: clients must get 202s / PUBACKs again within
 *      2 s (a deadline, not a speed measurement) and processing must move to a survivor;
 *   2. the NATS server leading the log stream is SIGKILLed: clients get 202s again once the
 *      stream has a new leader (deadline 15 s).
 * Afterwards every message that got a 202 or a PUBACK is in PostgreSQL exactly once, read back through the
 * REST API of a surviving node.
 *
 * Skips, saying why, when nats-server is missing, when haproxy is missing outside CI, or when
 * PostgreSQL (FLUXGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test) is
 * unreachable outside CI.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import mqtt from 'mqtt';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { HAPROXY_BIN, startLocalCluster, type LocalCluster } from '../cluster/harness.js';
import { NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { apiClient, ADMIN_KEY } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgProblem(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try { await c.connect(); await c.query('SELECT 1'); return undefined; } catch (err) { return (err as Error).message; } finally { await c.end().catch(() => undefined); }
}

async function sql(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(text); } finally { await c.end(); }
}

const pgDown = NATS_SERVER_BIN && (HAPROXY_BIN || process.env.CI) ? await pgProblem() : undefined;
if (pgDown && process.env.CI) throw new Error(`PostgreSQL at ${PG_URL} is unreachable in CI: ${pgDown}`);
const skip = !NATS_SERVER_BIN ? 'nats-server is not installed (apt-get install nats-server)'
  : !HAPROXY_BIN && !process.env.CI ? 'haproxy is not installed (apt-get install haproxy; .ci/run installs it)'
    : pgDown ? `PostgreSQL at ${PG_URL} is unreachable (${pgDown}); set FLUXGATE_TEST_POSTGRES_URL`
      : false;

const HTTP_CLIENTS = 8;
const MQTT_CLIENTS = 4;
const DEVICES = HTTP_CLIENTS + MQTT_CLIENTS;
const BASE_TS = 1_700_000_000_000;
const schema = `fluxgate_cluster_${randomBytes(4).toString('hex')}`;
let cluster: LocalCluster | undefined;
let tokens: string[] = [];
const acked = new Map<string, Set<number>>(); // device → seq numbers answered 202
let seq = 0;

before(async () => {
  if (skip) return;
  // Device times start at BASE_TS (November 2023): raw retention is off so no retention pass removes them mid-test.
  cluster = await startLocalCluster({ nodes: 3, store: PG_URL, leaseTtlMs: 2000, env: { FLUXGATE_STORE_SCHEMA: schema, FLUXGATE_TENANTS_DEFAULT_RAW_RETENTION_DAYS: '0' } });
  const api = apiClient(cluster.httpUrl, ADMIN_KEY);
  tokens = [];
  for (let i = 0; i < DEVICES; i++) {
    const r = await api('POST', '/api/v1/devices', { id: `dev-${i}` });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    tokens.push(r.body.token);
    acked.set(`dev-${i}`, new Set());
  }
});

after(async () => {
  try { await cluster?.cleanup(); } finally { if (!skip) await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined); }
});

interface Load { stop(): Promise<{ sent: number; ok: number; failed: number; recoveredMs: number }> }

/**
 * One client per device, posting unique messages through HAProxy as fast as answers come:
 * HTTP clients (dev-0 … dev-7) and MQTT QoS 1 publishers (dev-8 …, mqtt.js reconnecting every
 * 100 ms and resending what was not acknowledged). `recoveredMs`: after `markFault()`, the
 * longest time any client waited from the fault until its first 202 / PUBACK for a message
 * sent after the fault (every client must have had one).
 */
async function runLoad(c: LocalCluster): Promise<Load & { markFault(): void; recovered(): boolean }> {
  let running = true;
  let faultAt = 0;
  let sent = 0;
  let ok = 0;
  let failed = 0;
  const firstOkAfterFault: Array<number | undefined> = Array(DEVICES).fill(undefined);
  const acknowledged = (i: number, n: number, startedAt: number) => {
    ok++;
    acked.get(`dev-${i}`)!.add(n);
    if (faultAt && startedAt >= faultAt && firstOkAfterFault[i] === undefined) firstOkAfterFault[i] = Date.now();
  };
  const httpClient = async (i: number) => {
    const device = `dev-${i}`;
    while (running) {
      const n = seq++;
      const startedAt = Date.now();
      sent++;
      try {
        const r = await fetch(`${c.httpUrl}/api/v1/devices/${device}/telemetry`, {
          method: 'POST', headers: { authorization: `Bearer ${tokens[i]}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id: `m-${n}`, ts: BASE_TS + n, seq: n }), signal: AbortSignal.timeout(10_000),
        });
        await r.arrayBuffer();
        if (r.status === 202) { acknowledged(i, n, startedAt); continue; }
        failed++;
      } catch {
        failed++;
      }
      await new Promise((r) => setTimeout(r, 20)); // a client's back-off after a refusal, not synchronisation
    }
  };
  const mqttClients = await Promise.all(Array.from({ length: MQTT_CLIENTS }, (_, k) => mqtt.connectAsync(`mqtt://127.0.0.1:${c.mqttPort}`, {
    username: tokens[HTTP_CLIENTS + k], clientId: `cluster-test-${k}-${randomBytes(3).toString('hex')}`, protocolVersion: 4, clean: true, reconnectPeriod: 100, connectTimeout: 5000,
  })));
  const mqttClient = async (k: number) => {
    const i = HTTP_CLIENTS + k;
    const client = mqttClients[k]!;
    while (running) {
      const n = seq++;
      const startedAt = Date.now();
      sent++;
      try {
        // Resolves on PUBACK; a publish cut off by a dead node is resent by mqtt.js after it reconnected.
        await client.publishAsync(`devices/dev-${i}/telemetry`, JSON.stringify({ id: `m-${n}`, ts: BASE_TS + n, seq: n }), { qos: 1 });
        acknowledged(i, n, startedAt);
      } catch {
        failed++;
        await new Promise((r) => setTimeout(r, 20)); // back-off, not synchronisation
      }
    }
  };
  const all = [...Array.from({ length: HTTP_CLIENTS }, (_, i) => httpClient(i)), ...Array.from({ length: MQTT_CLIENTS }, (_, k) => mqttClient(k))];
  return {
    markFault() { faultAt = Date.now(); firstOkAfterFault.fill(undefined); },
    recovered: () => firstOkAfterFault.every((t) => t !== undefined),
    async stop() {
      running = false;
      await Promise.all(all);
      await Promise.all(mqttClients.map((m) => m.endAsync()));
      const recoveredMs = faultAt ? Math.max(...firstOkAfterFault.map((t) => (t ?? Infinity) - faultAt)) : 0;
      return { sent, ok, failed, recoveredMs };
    },
  };
}

async function leaderIndex(c: LocalCluster): Promise<number> {
  return waitFor(async () => {
    for (let i = 0; i < c.nodes.length; i++) {
      if (!c.nodes[i]!.running) continue;
      const r = await c.readyz(i);
      if (/^leader/.test(r?.components?.process?.detail ?? '')) return i + 1;
    }
    return 0;
  }, { timeoutMs: 15_000, what: 'a processing leader' }) .then((i) => i - 1);
}

/** Every 202 stored exactly once, read through a surviving node's REST API once processing caught up. */
async function checkStored(c: LocalCluster): Promise<{ acked: number; stored: number; storedUnacked: number }> {
  const i = c.nodes.findIndex((n) => n.running);
  const api = apiClient(c.nodes[i]!.url, ADMIN_KEY);
  await waitFor(async () => (await api('GET', '/readyz')).body?.components?.log?.detail?.startsWith('lag 0 '), { timeoutMs: 60_000, what: 'processing to catch up (lag 0)' });
  let lost = 0;
  let dup = 0;
  let stored = 0;
  let storedUnacked = 0;
  let total = 0;
  for (let d = 0; d < DEVICES; d++) {
    const device = `dev-${d}`;
    const seen = new Map<number, number>();
    let after: string | undefined;
    do {
      const page = await api('GET', `/api/v1/devices/${device}/telemetry?key=seq&from=${BASE_TS}&to=${BASE_TS + 100_000_000}&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      for (const p of page.body.items) seen.set(p.value, (seen.get(p.value) ?? 0) + 1);
      after = page.body.next;
    } while (after);
    const mine = acked.get(device)!;
    total += mine.size;
    for (const n of mine) if (!seen.has(n)) lost++;
    for (const [n, count] of seen) { stored++; if (count > 1) dup++; if (!mine.has(n)) storedUnacked++; }
  }
  assert.equal(lost, 0, `${lost} acknowledged messages are not stored`);
  assert.equal(dup, 0, `${dup} messages are stored more than once`);
  return { acked: total, stored, storedUnacked };
}

test('cluster: the processing leader node is SIGKILLed mid-run; HTTP and MQTT QoS 1 clients through HAProxy are served again within 2 s, processing moves, every 202 stored once', { skip }, async (t) => {
  const c = cluster!;
  const leader = await leaderIndex(c);
  const load = await runLoad(c);
  await waitFor(() => [...acked.values()].every((s) => s.size >= 50), { timeoutMs: 30_000, what: '50 acknowledged messages per client before the kill' });
  load.markFault();
  await c.killNode(leader);
  await waitFor(() => load.recovered(), { timeoutMs: 2_000, intervalMs: 10, what: 'every client to get a 202 / PUBACK after the kill (deadline 2 s)' }).catch(async (err) => {
    throw new Error(`${(err as Error).message}\nHAProxy:\n${c.haproxyOutput()}`);
  });
  // Keep going a little with the survivors, and until processing has moved.
  const newLeader = await leaderIndex(c);
  assert.notEqual(newLeader, leader, 'processing moved to another node');
  const until = Date.now() + 1500;
  await waitFor(() => Date.now() > until, { timeoutMs: 5000, what: 'more load after the failover' });
  const r = await load.stop();
  t.diagnostic(`node kill: killed ${c.nodes[leader]!.name} (processing leader); ${r.sent} requests, ${r.ok} acknowledged (202 / PUBACK), ${r.failed} refused or failed; every client had a 202 / PUBACK again ${r.recoveredMs} ms after the kill; processing now on ${c.nodes[newLeader]!.name}`);
  assert.ok(r.recoveredMs <= 2000, `clients recovered after ${r.recoveredMs} ms`);
  const s = await checkStored(c);
  t.diagnostic(`stored: ${s.acked} acknowledged messages each stored exactly once (${s.storedUnacked} more stored whose answer was lost)`);
});

test('cluster: the NATS server leading the log stream is SIGKILLed mid-run (R3); clients get 202s again, every 202 stored once', { skip }, async (t) => {
  const c = cluster!;
  const load = await runLoad(c);
  const before = [...acked.values()].map((s) => s.size);
  await waitFor(() => [...acked.values()].every((s, i) => s.size >= before[i]! + 50), { timeoutMs: 30_000, what: '50 more acknowledged messages per client before the kill' });
  const nc = await connect({ servers: c.nats.urls });
  let killedName: string;
  try {
    const info = await (await jetstreamManager(nc)).streams.info('FLUXGATE');
    killedName = info.cluster!.leader!;
    assert.ok(killedName, 'the log stream has a leader');
  } finally {
    await nc.close();
  }
  const server = c.nats.servers.find((s) => s.name === killedName)!;
  load.markFault();
  await server.kill();
  await waitFor(() => load.recovered(), { timeoutMs: 15_000, intervalMs: 10, what: 'every client to get a 202 / PUBACK after the NATS kill (deadline 15 s)' });
  const until = Date.now() + 1500;
  await waitFor(() => Date.now() > until, { timeoutMs: 5000, what: 'more load after the failover' });
  const r = await load.stop();
  t.diagnostic(`NATS kill: killed ${killedName} (log stream leader); ${r.sent} requests, ${r.ok} acknowledged (202 / PUBACK), ${r.failed} refused (503) or failed; every client had a 202 / PUBACK again ${r.recoveredMs} ms after the kill`);
  await leaderIndex(c);
  const s = await checkStored(c);
  t.diagnostic(`stored: ${s.acked} acknowledged messages (both runs) each stored exactly once (${s.storedUnacked} more stored whose answer was lost)`);
});
