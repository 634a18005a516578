/**
 * @module MQTT across cluster nodes (src/sources/mqtt/cluster/): a JetStream nats-server of its
 * own, PostgreSQL (a fresh schema, dropped afterwards), three nodes in this process (A, B, C)
 * and, for the SIGKILL case, a fourth in a child process. Publish on one node, subscriber on
 * another (QoS 0/1, exactly once, never back twice to the origin's own subscribers); a shared
 * subscription with members on A and B gets each message once in total; the same client id on B
 * takes A's connection over (DISCONNECT 0x8E) with its persistent session and backlog; a
 * persistent session whose node is SIGKILLed resumes on B with the QoS 1 messages published
 * meanwhile through C; a REST command on A reaches a device on B and its reply comes back;
 * retained messages reach other nodes and nodes started later; garbage on the cluster subjects
 * stops nothing; a session brought to a node is cut to that node's mqtt.maxOfflineMessages;
 * deliveries resume after the NATS server restarts (last test).
 *
 * Exactly once is checked with a marker: each publisher's messages arrive in order, so once the
 * marker published last has arrived, everything before it has, and a duplicate would be counted.
 *
 * Skips, saying why, when nats-server is missing or PostgreSQL
 * (FLUXGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test) is unreachable
 * outside CI.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { IClientOptions } from 'mqtt';
import { NATS_SERVER_BIN, startNatsServer, type NatsHandle } from '../helpers/nats-server.js';
import { startTestNode, spawnNode, type TestNode } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';
import { Clients, collect, connackOf } from '../mqtt/helpers/broker.js';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { retainedKey } from '../../src/sources/mqtt/cluster/retained.js';
import { ReplayReader } from '../../src/sources/mqtt/cluster/replay.js';
import { encodeToken } from '../../src/log/jetstream/index.js';

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgProblem(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try { await c.connect(); await c.query('SELECT 1'); return undefined; } catch (err) { return (err as Error).message; } finally { await c.end().catch(() => undefined); }
}

const pgDown = NATS_SERVER_BIN ? await pgProblem() : undefined;
if (pgDown && process.env.CI) throw new Error(`PostgreSQL at ${PG_URL} is unreachable in CI: ${pgDown}`);
const skip = !NATS_SERVER_BIN ? 'nats-server is not installed (apt-get install nats-server)'
  : pgDown ? `PostgreSQL at ${PG_URL} is unreachable (${pgDown}); set FLUXGATE_TEST_POSTGRES_URL` : false;

const schema = `fluxgate_mqttx_${randomBytes(4).toString('hex')}`;
let nats: NatsHandle | undefined;
const nodes: Record<'a' | 'b' | 'c', TestNode> = {} as never;
let appKey = '';
let appTenant = '';

function mqttUrl(n: TestNode): string {
  return n.node.addresses.find((a) => a.name === 'mqtt')!.url;
}

before(async () => {
  if (skip) return;
  nats = await startNatsServer();
  for (const id of ['a', 'b', 'c'] as const) {
    nodes[id] = await startTestNode({ log: { backend: nats.url }, store: { backend: PG_URL, schema }, cluster: { nodeId: id, leaseTtlMs: 2000 } });
  }
  const key = await nodes.a.api('POST', '/api/v1/keys', { role: 'write', name: 'mqtt-apps' });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  appKey = key.body.key;
  appTenant = key.body.tenant;
});

after(async () => {
  for (const n of Object.values(nodes)) await n.stop().catch(() => undefined);
  await nats?.cleanup();
  if (!skip) {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try { await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`); } finally { await c.end(); }
  }
});

const app = (extra: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, username: 'app', password: appKey, ...extra });

/** Waits for `marker` on the client, then returns every message received before it on `prefix`. */
async function untilMarker(got: ReturnType<typeof collect>, marker: string): Promise<string[]> {
  await waitFor(() => got.some((m) => m.topic === marker), { timeoutMs: 10_000, what: `marker ${marker}` });
  return got.filter((m) => m.topic !== marker).map((m) => m.payload.toString());
}

test('a device publish on node A reaches subscribers on B (QoS 1 and 0) and on A, each exactly once', { skip }, async () => {
  const c = new Clients();
  try {
    const token = await nodes.a.createDevice('x-dev-1');
    const onB = await c.connect(mqttUrl(nodes.b), app());
    const onB0 = await c.connect(mqttUrl(nodes.b), app());
    const onA = await c.connect(mqttUrl(nodes.a), app());
    const gotB = collect(onB);
    const gotB0 = collect(onB0);
    const gotA = collect(onA);
    await onB.subscribeAsync(['devices/+/telemetry', 'x/marker'], { qos: 1 });
    await onB0.subscribeAsync(['devices/x-dev-1/#', 'x/marker'], { qos: 0 });
    await onA.subscribeAsync(['devices/+/telemetry', 'x/marker'], { qos: 1 });
    const dev = await c.connect(mqttUrl(nodes.a), { protocolVersion: 4, username: token });
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const body = JSON.stringify({ n: i });
      sent.push(body);
      await dev.publishAsync('devices/x-dev-1/telemetry', body, { qos: i % 2 ? 1 : 0 });
    }
    // The marker is an application's publish on A: routed, not logged, after the device's.
    const pub = await c.connect(mqttUrl(nodes.a), app());
    await waitFor(() => gotB.length >= 30, { timeoutMs: 10_000, what: '30 messages on B' });
    await pub.publishAsync('x/marker', 'end', { qos: 1 });
    assert.deepEqual(await untilMarker(gotB, 'x/marker'), sent, 'B: every message once, in order');
    assert.deepEqual(await untilMarker(gotB0, 'x/marker'), sent, 'B at QoS 0: every message once');
    assert.deepEqual(await untilMarker(gotA, 'x/marker'), sent, 'A (the origin): every message once');
    assert.ok(gotB.filter((m) => m.topic !== 'x/marker').every((m, i) => m.packet.qos === (i % 2 ? 1 : 0)), 'QoS is the lower of publish and subscription');
    assert.ok(gotB0.every((m) => m.packet.qos === 0));
  } finally {
    await c.closeAll();
  }
});

test('a shared subscription with members on A and B gets each message once in total', { skip }, async () => {
  const c = new Clients();
  try {
    const m1 = await c.connect(mqttUrl(nodes.a), app());
    const m2 = await c.connect(mqttUrl(nodes.b), app());
    const m3 = await c.connect(mqttUrl(nodes.b), app());
    const all = await c.connect(mqttUrl(nodes.a), app());
    const got = [collect(m1), collect(m2), collect(m3)];
    const gotAll = collect(all);
    for (const m of [m1, m2, m3]) await m.subscribeAsync('$share/workers/jobs/#', { qos: 1 });
    await all.subscribeAsync('jobs/#', { qos: 1 });
    const pub = await c.connect(mqttUrl(nodes.c), app());
    const N = 60;
    for (let i = 0; i < N; i++) await pub.publishAsync(`jobs/${i % 3}`, `job-${i}`, { qos: 1 });
    await waitFor(() => got.reduce((n, g) => n + g.length, 0) >= N, { timeoutMs: 10_000, what: `${N} shared deliveries` });
    // Anything still in flight to a member would arrive before this marker reaches the plain subscriber on A.
    await pub.publishAsync('jobs/marker', 'end', { qos: 1 });
    await untilMarker(gotAll, 'jobs/marker');
    await waitFor(() => got.some((g) => g.some((m) => m.topic === 'jobs/marker')), { timeoutMs: 10_000, what: 'the marker at one member' });
    const payloads = got.flatMap((g) => g.filter((m) => m.topic !== 'jobs/marker').map((m) => m.payload.toString()));
    assert.equal(payloads.length, N, 'each message once in total');
    assert.equal(new Set(payloads).size, N, 'no message twice');
    assert.ok(got[0]!.length > 0 && got[1]!.length + got[2]!.length > 0, `both nodes' members got some: ${got.map((g) => g.length).join(', ')}`);
  } finally {
    await c.closeAll();
  }
});

test('the same client id on B takes A\'s connection over (0x8E); the persistent session and its backlog come along', { skip }, async () => {
  const c = new Clients();
  try {
    const opts = app({ clientId: 'takeover-1', clean: false, properties: { sessionExpiryInterval: 600 } });
    const first = await c.connect(mqttUrl(nodes.a), opts);
    await first.subscribeAsync('orders/#', { qos: 1 });
    const pub = await c.connect(mqttUrl(nodes.c), app());
    await pub.publishAsync('orders/1', 'o-1', { qos: 1 });
    await waitFor(() => collect(first).length >= 1, { what: 'o-1 on A' });
    // Offline on A: o-2 and o-3 wait in its session there.
    await first.endAsync();
    await pub.publishAsync('orders/2', 'o-2', { qos: 1 });
    await pub.publishAsync('orders/3', 'o-3', { qos: 1 });
    const second = await c.connect(mqttUrl(nodes.a), opts);
    assert.equal(connackOf(second).sessionPresent, true);
    await waitFor(() => collect(second).length >= 2, { what: 'o-2, o-3 on A after reconnecting there' });
    // Now the same client id connects to B while connected to A.
    let reason: number | undefined;
    second.on('disconnect', (p) => { reason = p.reasonCode; });
    await pub.publishAsync('orders/4', 'o-4', { qos: 1 });
    const third = await c.connect(mqttUrl(nodes.b), opts);
    assert.equal(connackOf(third).sessionPresent, true, 'the session came from A');
    await waitFor(() => reason !== undefined, { what: 'DISCONNECT on A' });
    assert.equal(reason, 0x8e);
    await pub.publishAsync('orders/5', 'o-5', { qos: 1 });
    await pub.publishAsync('orders/marker', 'end', { qos: 1 });
    const onB = await untilMarker(collect(third), 'orders/marker');
    // o-4 may have reached A's connection before the takeover (then A handed it over unacknowledged, or A's client had it).
    const seenSecond = collect(second).map((m) => m.payload.toString());
    assert.ok(onB.includes('o-5'), `o-5 on B: ${onB}`);
    assert.ok(onB.includes('o-4') || seenSecond.includes('o-4'), 'o-4 delivered somewhere');
    assert.deepEqual(onB.filter((p) => p === 'o-5'), ['o-5'], 'once');
    assert.ok(!onB.includes('o-1') && !onB.includes('o-2'), 'acknowledged messages are not sent again');
  } finally {
    await c.closeAll();
  }
});

test('a clean client id taken over on another node: the old connection is closed, the new one starts fresh', { skip }, async () => {
  const c = new Clients();
  try {
    const opts = app({ clientId: 'takeover-clean' });
    const first = await c.connect(mqttUrl(nodes.b), opts);
    await first.subscribeAsync('clean/#', { qos: 1 });
    let reason: number | undefined;
    first.on('disconnect', (p) => { reason = p.reasonCode; });
    const second = await c.connect(mqttUrl(nodes.c), opts);
    assert.equal(connackOf(second).sessionPresent, false);
    await waitFor(() => reason === 0x8e, { what: 'DISCONNECT 0x8E on B' });
    // Connected twice anywhere is never the state: a third connect on A takes C's over.
    let reason2: number | undefined;
    second.on('disconnect', (p) => { reason2 = p.reasonCode; });
    await c.connect(mqttUrl(nodes.a), opts);
    await waitFor(() => reason2 === 0x8e, { what: 'DISCONNECT 0x8E on C' });
  } finally {
    await c.closeAll();
  }
});

test('the same client id connecting to A and B at the same moment ends up connected once', { skip }, async () => {
  const c = new Clients();
  try {
    for (let round = 0; round < 5; round++) {
      const id = `race-${round}`;
      const clients = await Promise.all([nodes.a, nodes.b].map((n) => c.connect(mqttUrl(n), app({ clientId: id }))));
      await waitFor(() => clients.filter((x) => x.connected).length === 1, { timeoutMs: 5000, what: `one connection left for ${id}` });
      // And it stays so.
      const survivor = clients.find((x) => x.connected)!;
      await survivor.subscribeAsync('race/#', { qos: 1 });
      assert.equal(clients.filter((x) => x.connected).length, 1);
    }
  } finally {
    await c.closeAll();
  }
});

test('a persistent session resumes on B after its node was SIGKILLed; QoS 1 messages published meanwhile through C are delivered', { skip }, async () => {
  const tmp = await tempDir('fluxgate-mqttx-kill-');
  const k = await spawnNode(tmp.dir, { FLUXGATE_LOG: nats!.url, FLUXGATE_STORE: PG_URL, FLUXGATE_STORE_SCHEMA: schema, FLUXGATE_NODE_ID: 'k' });
  const c = new Clients();
  try {
    const opts = app({ clientId: 'survivor-1', clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 });
    const onK = await c.connect(`mqtt://127.0.0.1:${k.mqttPort}`, opts);
    await onK.subscribeAsync(['alerts/#', 'events/+/x'], { qos: 1 });
    // A second persistent session on K is offline when K dies: what K queued for it must not be lost.
    const opts2 = app({ clientId: 'survivor-2', clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 });
    const offline = await c.connect(`mqtt://127.0.0.1:${k.mqttPort}`, opts2);
    await offline.subscribeAsync('queued/#', { qos: 1 });
    await offline.endAsync();
    const pub = await c.connect(mqttUrl(nodes.c), app());
    for (let i = 0; i < 3; i++) await pub.publishAsync('queued/q', `queued-${i}`, { qos: 1 });
    await pub.publishAsync('alerts/a', 'before', { qos: 1 });
    await waitFor(() => collect(onK).length >= 1, { what: 'the first alert on K' });
    k.child.kill('SIGKILL');
    await new Promise((r) => k.child.once('exit', r));
    const sent: string[] = [];
    for (let i = 0; i < 25; i++) {
      sent.push(`alert-${i}`);
      await pub.publishAsync(`alerts/${i % 4}`, `alert-${i}`, { qos: 1 });
    }
    await pub.publishAsync('other/topic', 'not subscribed', { qos: 1 });
    await pub.publishAsync('events/z/x', 'matched-too', { qos: 1 });
    const onB = await c.connect(mqttUrl(nodes.b), opts);
    assert.equal(connackOf(onB).sessionPresent, true, 'the session was rebuilt on B');
    await pub.publishAsync('alerts/marker', 'end', { qos: 1 });
    const got = await untilMarker(collect(onB), 'alerts/marker');
    const alerts = got.filter((p) => p.startsWith('alert-'));
    assert.deepEqual(alerts, sent, 'every QoS 1 message published while K was dead, once, in order');
    assert.ok(got.includes('matched-too'));
    assert.ok(!got.includes('not subscribed'));
    // 'before' was acknowledged just before the kill, so it may come again (at least once), never more.
    assert.ok(got.filter((p) => p === 'before').length <= 1);
    await pub.publishAsync('queued/q', 'queued-after', { qos: 1 });
    const back = await c.connect(mqttUrl(nodes.b), opts2);
    assert.equal(connackOf(back).sessionPresent, true);
    await pub.publishAsync('queued/marker', 'end', { qos: 1 });
    assert.deepEqual(await untilMarker(collect(back), 'queued/marker'), ['queued-0', 'queued-1', 'queued-2', 'queued-after'], 'queued on K while offline, and published after K died');
    // Both came back on B from K's one watermark: the second replay used the first one's read.
    const detail: string = (await nodes.b.api('GET', '/readyz')).body.components.mqtt.detail;
    const shared = Number(/replays read \((\d+) shared\)/.exec(detail)?.[1]);
    assert.ok(shared >= 1, detail);
  } finally {
    await c.closeAll();
    if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill('SIGKILL');
    await tmp.cleanup();
  }
});

test('a device command sent through node A reaches the device on node B and its reply comes back', { skip }, async () => {
  const c = new Clients();
  try {
    const token = await nodes.a.createDevice('x-cmd-1');
    const dev = await c.connect(mqttUrl(nodes.b), { protocolVersion: 5, username: token });
    dev.on('message', (topic, payload) => {
      if (!/^devices\/x-cmd-1\/commands\/[^/]+$/.test(topic)) return;
      const cmd = JSON.parse(payload.toString());
      dev.publish(`${topic}/reply`, JSON.stringify({ ok: true, echo: cmd.params }), { qos: 1 });
    });
    await dev.subscribeAsync('devices/x-cmd-1/commands/#', { qos: 1 });
    const r = await nodes.a.api('POST', '/api/v1/devices/x-cmd-1/commands', { name: 'reboot', params: { delay: 3 }, timeoutMs: 5000 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(JSON.parse(r.body.reply), { ok: true, echo: { delay: 3 } });
    // Nobody listening on any node: 504, not a hang.
    const none = await nodes.a.createDevice('x-cmd-2');
    assert.ok(none);
    const t = await nodes.c.api('POST', '/api/v1/devices/x-cmd-2/commands', { name: 'x', timeoutMs: 300 });
    assert.equal(t.status, 504);
  } finally {
    await c.closeAll();
  }
});

test('a retained message published through C reaches a v3.1.1 subscriber on A once, and a later subscriber on B', { skip }, async () => {
  const c = new Clients();
  try {
    const sub = await c.connect(mqttUrl(nodes.a), { protocolVersion: 4, username: 'app', password: appKey });
    await sub.subscribeAsync('v3/#', { qos: 1 });
    const pub = await c.connect(mqttUrl(nodes.c), app());
    await pub.publishAsync('v3/a', 'one', { qos: 1, retain: true });
    await pub.publishAsync('v3/marker', 'end', { qos: 1 });
    assert.deepEqual(await untilMarker(collect(sub), 'v3/marker'), ['one']);
    // Retained messages are applied on every node: a new subscriber on B gets it.
    const late = await c.connect(mqttUrl(nodes.b), app());
    await late.subscribeAsync('v3/a', { qos: 1 });
    await waitFor(() => collect(late).length >= 1, { what: 'the retained message on B' });
    assert.equal(collect(late)[0]!.payload.toString(), 'one');
    assert.equal(collect(late)[0]!.packet.retain, true);
    // A node started afterwards loads them from the cluster's bucket; a cleared one stays cleared.
    await pub.publishAsync('v3/b', 'soon gone', { qos: 1, retain: true });
    await pub.publishAsync('v3/b', '', { qos: 1, retain: true });
    await pub.publishAsync('v3/c', 'three', { qos: 1, retain: true });
    // An application's PUBACK does not wait for the cluster: wait until the bucket holds both writes.
    const nc = await natsConnect({ servers: nats!.url });
    try {
      const jsm = await jetstreamManager(nc);
      const entry = async (topic: string) => (await jsm.streams.getMessage('KV_fgmqtt_retained', { last_by_subj: `$KV.fgmqtt_retained.${retainedKey(appTenant, topic)}` }).catch(() => null))?.json<{ m?: unknown }>();
      await waitFor(async () => (await entry('v3/c'))?.m && (await entry('v3/b')) && !(await entry('v3/b'))!.m, { what: 'the retained writes in the bucket' });
    } finally {
      await nc.close();
    }
    const d = await startTestNode({ log: { backend: nats!.url }, store: { backend: PG_URL, schema }, cluster: { nodeId: 'd', leaseTtlMs: 2000 } });
    try {
      const onD = await c.connect(mqttUrl(d), app());
      await onD.subscribeAsync(['v3/#', 'v3-marker'], { qos: 1 });
      await pub.publishAsync('v3-marker', 'end', { qos: 1 });
      const got = collect(onD);
      await waitFor(() => got.some((m) => m.topic === 'v3-marker'), { what: 'the marker on D' });
      assert.deepEqual(got.filter((m) => m.topic !== 'v3-marker').map((m) => [m.topic, m.payload.toString(), m.packet.retain]).sort(), [['v3/a', 'one', true], ['v3/c', 'three', true]]);
    } finally {
      await c.closeAll();
      await d.stop();
    }
  } finally {
    await c.closeAll();
  }
});

test('HTTP telemetry goes to other nodes only once one of them holds a subscription of the tenant', { skip }, async () => {
  const c = new Clients();
  try {
    const t = await nodes.a.api('POST', '/api/v1/tenants', { id: 'quiet' });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    const admin: string = t.body.key.key;
    const d = await nodes.a.api('POST', '/api/v1/devices', { id: 'q-1' }, admin);
    assert.equal(d.status, 201, JSON.stringify(d.body));
    const kept = async () => Number(/(\d+) forwarded telemetry kept here/.exec((await nodes.a.api('GET', '/readyz')).body.components.mqtt.detail)?.[1]);
    const before = await kept();
    const send = async (n: number) => {
      const r = await fetch(`${nodes.a.url}/api/v1/devices/q-1/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${d.body.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ n }) });
      assert.equal(r.status, 202);
    };
    await send(0);
    await waitFor(async () => (await kept()) === before + 1, { what: 'nobody in tenant quiet subscribes: the forwarded copy stays on A' });
    // An application of tenant quiet subscribes on B; within about a second A learns it.
    const sub = await c.connect(mqttUrl(nodes.b), { protocolVersion: 5, username: 'app', password: admin });
    await sub.subscribeAsync('devices/+/telemetry', { qos: 1 });
    let n = 1;
    await waitFor(async () => { await send(n++); return collect(sub).length > 0; }, { timeoutMs: 10_000, intervalMs: 200, what: 'forwarded telemetry on B' });
    assert.ok((await kept()) >= before + 1);
  } finally {
    await c.closeAll();
  }
});

test('the session and node buckets expire entries mqtt.maxSessionExpirySeconds + 2 days after their last write', { skip }, async () => {
  const nc = await natsConnect({ servers: nats!.url });
  try {
    const jsm = await jetstreamManager(nc);
    const want = (nodes.a.node.config.mqtt.maxSessionExpirySeconds + 2 * 86_400) * 1e9;
    for (const bucket of ['KV_fgmqtt_sessions', 'KV_fgmqtt_nodes']) assert.equal((await jsm.streams.info(bucket)).config.max_age, want, bucket);
    const stream = (await jsm.streams.info('FLUXGATE_MQTT')).config;
    assert.equal(stream.max_bytes, 1024 ** 3);
    assert.ok(stream.max_age > 0 && stream.max_age <= 24 * 3600 * 1e9);
  } finally {
    await nc.close();
  }
});

test('bad input on the cluster subjects is ignored: garbage on the message stream and a malformed takeover request stop nothing', { skip }, async () => {
  const c = new Clients();
  const nc = await natsConnect({ servers: nats!.url });
  try {
    const sub = await c.connect(mqttUrl(nodes.b), app());
    await sub.subscribeAsync('bad/#', { qos: 1 });
    const js = jetstream(nc);
    // Stored in the stream like a real message, read by every node.
    await js.publish(`fluxgate.mqtt.r.${appTenant}`, new Uint8Array([0, 0, 0, 99, 1, 2, 3]));
    await js.publish(`fluxgate.mqtt.r.${appTenant}`, new TextEncoder().encode('not a message'));
    // Every node gets a takeover request that is not JSON, then one for a session it does not hold.
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('KV_fgmqtt_nodes', { subjects_filter: '>' });
    const instances = Object.keys(info.state.subjects ?? {}).map((subj) => subj.split('.').pop()!);
    assert.ok(instances.length >= 3, `node entries: ${instances.length}`);
    let answered = 0;
    for (const id of instances) {
      nc.publish(`fluxgate.mqtt.node.${id}.takeover`, 'garbage');
      // Entries of nodes stopped earlier in this file have nobody listening any more.
      const r = await nc.request(`fluxgate.mqtt.node.${id}.takeover`, JSON.stringify({ key: 'nobody', clean: true }), { timeout: 2000 }).catch(() => undefined);
      if (r) { assert.deepEqual(r.json(), { none: true }); answered++; }
    }
    assert.ok(answered >= 3, `live nodes answered: ${answered}`);
    const pub = await c.connect(mqttUrl(nodes.a), app());
    await pub.publishAsync('bad/after', 'still works', { qos: 1 });
    await waitFor(() => collect(sub).some((m) => m.payload.toString() === 'still works'), { what: 'a delivery after the garbage' });
    assert.deepEqual(collect(sub).map((m) => m.payload.toString()), ['still works']);
  } finally {
    await nc.close();
    await c.closeAll();
  }
});

test('a persistent session brought to a node keeps at most its mqtt.maxOfflineMessages, the oldest first', { skip }, async () => {
  const small = await startTestNode({ log: { backend: nats!.url }, store: { backend: PG_URL, schema }, cluster: { nodeId: 'small', leaseTtlMs: 2000 }, mqtt: { maxOfflineMessages: 5 } });
  const c = new Clients();
  try {
    const opts = app({ clientId: 'bounded-1', clean: false, properties: { sessionExpiryInterval: 600 } });
    const first = await c.connect(mqttUrl(nodes.a), opts);
    await first.subscribeAsync('bounded/#', { qos: 1 });
    await first.endAsync();
    const pub = await c.connect(mqttUrl(nodes.c), app());
    for (let i = 0; i < 12; i++) await pub.publishAsync('bounded/x', `b-${i}`, { qos: 1 });
    // Whatever A had queued comes with the handover, the rest from the stream: twelve in order, cut to five.
    const again = await c.connect(mqttUrl(small), opts);
    assert.equal(connackOf(again).sessionPresent, true);
    await pub.publishAsync('bounded/marker', 'end', { qos: 1 });
    const got = await untilMarker(collect(again), 'bounded/marker');
    assert.deepEqual(got, ['b-0', 'b-1', 'b-2', 'b-3', 'b-4']);
  } finally {
    await c.closeAll();
    await small.stop();
  }
});

test('replays: a second read of the same range is served from the first; past its byte bound each caller reads on its own, with the same result', { skip }, async () => {
  const nc = await natsConnect({ servers: nats!.url });
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const upper = (await jsm.streams.info('FLUXGATE_MQTT')).state.last_seq;
    const subject = (t: string) => `fluxgate.mqtt.r.${encodeToken(t)}`;
    const big = new ReplayReader(js, jsm, 'FLUXGATE_MQTT', subject);
    const small = new ReplayReader(js, jsm, 'FLUXGATE_MQTT', subject, 10);
    try {
      const a = await big.read(appTenant, 1, upper);
      assert.ok(a.length > 10, `${a.length} QoS 1/2 messages of the tenant`);
      assert.ok(a.every((x, i) => x.msg.qos > 0 && (i === 0 || x.seq > a[i - 1]!.seq)), 'QoS 1/2 only, in stream order');
      const b = await small.read(appTenant, 1, upper);
      assert.deepEqual(b.map((x) => x.seq), a.map((x) => x.seq));
      const mid = a[Math.floor(a.length / 2)]!.seq;
      const again = await big.read(appTenant, 1, mid);
      assert.deepEqual(again.map((x) => x.seq), a.filter((x) => x.seq <= mid).map((x) => x.seq));
      assert.equal(big.stats.reads, 1, 'the second read came from the first');
      assert.equal(big.stats.shared, 1);
      assert.deepEqual(await big.read(appTenant, upper + 1, upper + 10), [], 'nothing past the end, at once');
    } finally {
      big.close();
      small.close();
    }
  } finally {
    await nc.close();
  }
});

// Last: it restarts the NATS server under every node.
test('after the NATS server restarts, deliveries across nodes resume by themselves, once each', { skip }, async () => {
  const c = new Clients();
  try {
    const sub = await c.connect(mqttUrl(nodes.b), app());
    await sub.subscribeAsync('restart/#', { qos: 1 });
    const pub = await c.connect(mqttUrl(nodes.a), app());
    await nats!.server.kill();
    await nats!.server.start();
    // MQTT clients never noticed; the nodes reconnect to NATS. Publish until one arrives.
    let n = 0;
    await waitFor(async () => {
      await pub.publishAsync('restart/probe', `probe-${n++}`, { qos: 1 });
      return collect(sub).length > 0;
    }, { timeoutMs: 30_000, intervalMs: 250, what: 'a delivery from A to B after the restart' });
    const before = collect(sub).length;
    for (let i = 0; i < 20; i++) await pub.publishAsync('restart/x', `after-${i}`, { qos: 1 });
    await pub.publishAsync('restart/marker', 'end', { qos: 1 });
    const got = (await untilMarker(collect(sub), 'restart/marker')).slice(before);
    assert.deepEqual(got.filter((p) => p.startsWith('after-')), Array.from({ length: 20 }, (_, i) => `after-${i}`));
  } finally {
    await c.closeAll();
  }
});
