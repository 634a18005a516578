/**
 * @module Bridge source against a real second Mosquitto (test/helpers/mosquitto.ts): messages of
 * every payload shape at QoS 1 and 2 come in under the tenant and project of their topic; a
 * message logged but not acknowledged (within a run, and across a restart) is redelivered by
 * the broker and stored once; a broker that is down shows in /readyz and metrics and is
 * reached with back-off once up; bad credentials give a clear status; REST refuses malformed
 * bodies naming the fields, strangers and tenant keys, and never echoes passwords.
 * The SIGKILL run lives in ./bridge-crash.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { createMosquitto, MOSQUITTO_BIN, type Mosquitto } from '../helpers/mosquitto.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';
import type { Envelope } from '../../src/core/envelope.js';

const TENANT = 'acme-br';
const PROJECT = 'plant-1';
const PATTERN = 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#';
/** Each bridge of this file subscribes to topics ending in its own name, so tests do not see each other's messages. */
const topicOf = (device: string, bridge: string) => `mtic/msg/client/realtime/${TENANT}/${PROJECT}/${device}/${bridge}`;

async function publisher(url: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts });
  await new Promise<void>((resolve, reject) => { c.once('connect', () => resolve()); c.once('error', reject); });
  return c;
}

async function setupTenant(t: TestNode): Promise<void> {
  const r = await t.api('POST', '/api/v1/tenants', { id: TENANT });
  assert.ok(r.status === 201 || r.status === 409, JSON.stringify(r.body));
  const p = await t.api('POST', `/api/v1/projects?tenant=${TENANT}`, { name: PROJECT });
  assert.ok(p.status === 201 || p.status === 409, JSON.stringify(p.body));
}

async function messages(t: TestNode, device?: string): Promise<any[]> {
  const out: any[] = [];
  let after: string | undefined;
  for (;;) {
    const q = `/api/v1/messages?tenant=${TENANT}&from=0&to=${Date.now() + 3_600_000}&limit=10000${device ? `&device=${device}` : ''}${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const r = await t.api('GET', q);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.items);
    if (!r.body.next) return out;
    after = r.body.next;
  }
}

const bridgeBody = (name: string, url: string, extra: Record<string, unknown> = {}) => ({
  name, url, topics: [`mtic/msg/client/realtime/+/+/+/${name}`], qos: 1,
  template: { pattern: PATTERN, autoProvision: true },
  reconnect: { initialMs: 50, maxMs: 500 }, ...extra,
});

const metric = async (t: TestNode, line: RegExp) => {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const m = line.exec(text);
  return m ? Number(m[1]) : undefined;
};

describe('bridge source', { skip: MOSQUITTO_BIN ? false : 'mosquitto is not installed' }, () => {
  let broker: Mosquitto;
  let t: TestNode;

  before(async () => {
    broker = await createMosquitto();
    t = await startTestNode();
    await setupTenant(t);
  });
  after(async () => {
    await t?.stop();
    await broker?.destroy();
  });

  it('brings QoS 1 and 2 messages of every payload shape in, under the tenant and project of the topic, once each', async () => {
    const created = await t.api('POST', '/api/v1/bridges', bridgeBody('shapes', broker.url, { qos: 2, username: 'u', password: 'pw-never-shown-x7' }));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(JSON.stringify(created.body).includes('pw-never-shown-x7'), false, 'password not echoed');
    await waitFor(async () => (await t.api('GET', '/api/v1/bridges/shapes')).body.status.connected, { what: 'bridge connected' });

    const pub = await publisher(broker.url, { protocolVersion: 5 });
    const sent: Array<{ device: string; qos: 1 | 2; payload: Buffer }> = [
      { device: 'd-json', qos: 1, payload: Buffer.from('{"temp":21.5}') },
      { device: 'd-empty-obj', qos: 2, payload: Buffer.from('{}') },
      { device: 'd-text', qos: 1, payload: Buffer.from('hello, not json') },
      { device: 'd-bin', qos: 2, payload: Buffer.from([0, 1, 2, 0xfe, 0xff]) },
      { device: 'd-empty', qos: 1, payload: Buffer.alloc(0) },
      { device: 'd-json', qos: 2, payload: Buffer.from(`{"temp":22.5,"ts":${Date.now() + 60_000}}`) },
    ];
    for (const s of sent) await pub.publishAsync(topicOf(s.device, 'shapes'), s.payload, { qos: s.qos });
    await pub.endAsync();

    const got = await waitFor(async () => { const m = await messages(t); return m.length >= sent.length ? m : undefined; }, { timeoutMs: 15_000, what: 'all bridged messages stored' });
    assert.equal(got.length, sent.length, 'each message stored exactly once');
    for (const s of sent) {
      const match = got.filter((m) => m.device === s.device && Buffer.from(m.payload, m.encoding === 'base64' ? 'base64' : 'utf8').equals(s.payload));
      assert.equal(match.length, 1, `${s.device} ${s.payload.toString('hex')} once: ${JSON.stringify(got)}`);
      assert.equal(match[0].project, PROJECT);
      assert.equal(match[0].topic, topicOf(s.device, 'shapes'));
    }
    // Telemetry points of the JSON messages, under the auto-provisioned device.
    const latest = await waitFor(async () => { const r = await t.api('GET', `/api/v1/devices/d-json/latest?tenant=${TENANT}`); return r.body?.latest?.temp?.value === 22.5 ? r.body.latest : undefined; }, { what: "latest temp from the newer device time" });
    assert.equal(latest.temp.value, 22.5);
    const dev = await t.api('GET', `/api/v1/devices/d-bin?tenant=${TENANT}`);
    assert.equal(dev.body.project, PROJECT);

    const status = (await t.api('GET', '/api/v1/bridges/shapes')).body;
    assert.equal(status.status.counters.logged, sent.length);
    assert.equal(status.status.lag, 0);
    assert.equal(status.definition.hasPassword, true);
    assert.equal(JSON.stringify(status).includes('pw-never-shown-x7'), false);
    assert.equal(await metric(t, /fluxgate_bridge_connected\{bridge="shapes"\} (\d+)/), 1);
    assert.equal(await metric(t, /fluxgate_bridge_messages_total\{bridge="shapes",outcome="logged"\} (\d+)/), sent.length);
    const ready = await (await fetch(`${t.url}/readyz`)).json() as any;
    assert.match(ready.components['bridge:shapes'].detail, /^connected to mqtt:\/\/127\.0\.0\.1:\d+/);
    assert.equal((await t.api('DELETE', '/api/v1/bridges/shapes')).status, 204);
    assert.equal((await t.api('GET', '/api/v1/bridges/shapes')).status, 404);
  });

  it('a message logged but not acknowledged (the acknowledgement lost) is redelivered by the broker and stored once (MQTT 3.1.1, QoS 1 and 2)', async () => {
    // The log takes the batch durably, then the append "fails": the bridge must not acknowledge,
    // drops the connection, and the broker redelivers with DUP under the same packet id.
    const log = t.node.log;
    const real = log.append.bind(log);
    // The first batch holding each of these devices is made durable, then reported failed.
    const lose = new Set(['lost-q1', 'lost-q2']);
    log.append = async (batch: Envelope[]) => {
      await real(batch);
      const hit = batch.filter((e) => e.protocol === 'bridge' && lose.has(e.device));
      for (const e of hit) lose.delete(e.device);
      if (hit.length) throw new Error('simulated: durable, but the answer was lost');
    };
    try {
      const created = await t.api('POST', '/api/v1/bridges', bridgeBody('lost', broker.url, { qos: 2, protocolVersion: 4 }));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/lost')).body.status.connected, { what: 'bridge connected' });
      const pub = await publisher(broker.url);
      await pub.publishAsync(topicOf('lost-q1', 'lost'), '{"n":1}', { qos: 1 });
      await pub.publishAsync(topicOf('lost-q2', 'lost'), '{"n":2}', { qos: 2 });
      await pub.endAsync();
      const b = await waitFor(async () => { const r = (await t.api('GET', '/api/v1/bridges/lost')).body; return r.status.counters.redelivered >= 2 && r.status.lag === 0 && r.status.connected ? r : undefined; }, { timeoutMs: 15_000, what: 'redeliveries taken' });
      assert.ok(b.status.counters.appendFailures >= 1);
      assert.match(b.status.lastError ?? '', /log refused a batch/);
      await waitFor(async () => (await messages(t, 'lost-q2')).length === 1 && (await messages(t, 'lost-q1')).length === 1, { what: 'both stored' }).catch(async (err) => {
        throw new Error(`${err.message}: ${JSON.stringify(await messages(t))}`);
      });
      // Points too: the redelivery carries the first copy's receive time, so no second point.
      const pts = await waitFor(async () => { const r = await t.api('GET', `/api/v1/devices/lost-q1/telemetry?tenant=${TENANT}&key=n&from=${Date.now() - 3_600_000}&resolution=raw`); return r.body?.items?.length ? r.body.items : undefined; });
      assert.equal(pts.length, 1, JSON.stringify(pts));
      await new Promise((r) => setTimeout(r, 300)); // nothing more may arrive
      assert.equal((await messages(t, 'lost-q1')).length, 1);
      assert.equal((await messages(t, 'lost-q2')).length, 1);
    } finally {
      log.append = real;
      await t.api('DELETE', '/api/v1/bridges/lost');
    }
  });

  it('a broker that is down shows in /readyz and metrics (node stays ready) and is reached with back-off once it is up', async () => {
    const late = await createMosquitto({ start: false });
    try {
      const created = await t.api('POST', '/api/v1/bridges', bridgeBody('late', late.url));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      await waitFor(async () => ((await metric(t, /fluxgate_bridge_connects_total\{bridge="late",outcome="failed"\} (\d+)/)) ?? 0) >= 2, { what: 'failed attempts counted' });
      const ready = await fetch(`${t.url}/readyz`);
      assert.equal(ready.status, 200, 'a disconnected bridge does not make the node unready');
      const body = await ready.json() as any;
      assert.match(body.components['bridge:late'].detail, /^disconnected from mqtt:\/\/127\.0\.0\.1:\d+: cannot reach .*ECONNREFUSED/);
      assert.equal(await metric(t, /fluxgate_bridge_connected\{bridge="late"\} (\d+)/), 0);
      const st = (await t.api('GET', '/api/v1/bridges/late')).body.status;
      assert.equal(st.connected, false);
      assert.ok(['waiting', 'connecting'].includes(st.state), st.state);
      await late.start();
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/late')).body.status.connected, { timeoutMs: 10_000, what: 'bridge connected after the broker came up' });
      assert.equal(await metric(t, /fluxgate_bridge_connected\{bridge="late"\} (\d+)/), 1);
      const pub = await publisher(late.url);
      await pub.publishAsync(topicOf('late-dev', 'late'), 'after the outage', { qos: 1 });
      await pub.endAsync();
      await waitFor(async () => (await messages(t, 'late-dev')).length === 1, { what: 'message through the late bridge' });
    } finally {
      await t.api('DELETE', '/api/v1/bridges/late');
      await late.destroy();
    }
  });

  it('bad credentials: a clear status with the broker\'s reason; good ones connect', async () => {
    const secured = await createMosquitto({ users: { bridge: 'right-pw' } });
    try {
      for (const protocolVersion of [4, 5]) {
        const name = `badpw-v${protocolVersion}`;
        assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody(name, secured.url, { username: 'bridge', password: 'wrong-pw', protocolVersion }))).status, 201);
        const st = await waitFor(async () => { const s = (await t.api('GET', `/api/v1/bridges/${name}`)).body.status; return s.lastError ? s : undefined; }, { what: 'refusal reported' });
        assert.equal(st.connected, false);
        assert.match(st.lastError, /the broker refused the connection: .*(Not authorized|Bad User Name or Password|Bad username or password).*check username, password and clientId/i);
        assert.ok(((await metric(t, new RegExp(`fluxgate_bridge_connects_total\\{bridge="${name}",outcome="refused"\\} (\\d+)`))) ?? 0) >= 1);
        await t.api('DELETE', `/api/v1/bridges/${name}`);
      }
      assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('goodpw', secured.url, { username: 'bridge', password: 'right-pw' }))).status, 201);
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/goodpw')).body.status.connected, { what: 'connected with the right password' });
    } finally {
      await t.api('DELETE', '/api/v1/bridges/goodpw');
      await secured.destroy();
    }
  });

  it('mqtts: a broker certificate signed by the configured CA is accepted; without the CA the status says why', async () => {
    const secure = await createMosquitto({ tls: true });
    try {
      assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('tls-noca', secure.url))).status, 201);
      const st = await waitFor(async () => { const s = (await t.api('GET', '/api/v1/bridges/tls-noca')).body.status; return s.lastError ? s : undefined; }, { what: 'TLS failure reported' });
      assert.equal(st.connected, false);
      assert.match(st.lastError, /cannot reach mqtts:\/\/127\.0\.0\.1:\d+: .*(self[- ]signed|unable to (get|verify)|certificate)/i);
      assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('tls-ca', secure.url, { tls: { ca: secure.caPem } }))).status, 201);
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/tls-ca')).body.status.connected, { what: 'connected over TLS' });
      const pub = await publisher(secure.url, { ca: secure.caPem });
      await pub.publishAsync(topicOf('tls-dev', 'tls-ca'), 'over tls', { qos: 1 });
      await pub.endAsync();
      await waitFor(async () => (await messages(t, 'tls-dev')).length === 1, { what: 'message over TLS' });
    } finally {
      await t.api('DELETE', '/api/v1/bridges/tls-noca');
      await t.api('DELETE', '/api/v1/bridges/tls-ca');
      await secure.destroy();
    }
  });

  it('subscribes with a $share/<group>/… filter (MQTT 5 shared subscription)', async () => {
    assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('shared', broker.url, { topics: ['$share/fluxgate/mtic/msg/client/realtime/+/+/+/shared'] }))).status, 201);
    try {
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/shared')).body.status.connected, { what: 'bridge connected' });
      const pub = await publisher(broker.url);
      await pub.publishAsync(topicOf('shared-dev', 'shared'), '{"s":1}', { qos: 1 });
      await pub.endAsync();
      const got = await waitFor(async () => { const m = await messages(t, 'shared-dev'); return m.length ? m : undefined; }, { what: 'message through the shared subscription' });
      assert.equal(got[0].topic, topicOf('shared-dev', 'shared'));
    } finally {
      await t.api('DELETE', '/api/v1/bridges/shared');
    }
  });

  it('refuses unknown tenants and, without autoProvision, unknown devices: acknowledged, counted, shown', async () => {
    assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('strict', broker.url, { template: { pattern: PATTERN } }))).status, 201);
    try {
      await waitFor(async () => (await t.api('GET', '/api/v1/bridges/strict')).body.status.connected);
      const pub = await publisher(broker.url);
      await pub.publishAsync('mtic/msg/client/realtime/no-such-tenant/p/d1/strict', '{"v":1}', { qos: 1 });
      await pub.publishAsync(topicOf('never-registered', 'strict'), '{"v":1}', { qos: 1 });
      await pub.endAsync();
      const st = await waitFor(async () => { const s = (await t.api('GET', '/api/v1/bridges/strict')).body.status; return s.counters.refused >= 2 && s.lag === 0 ? s : undefined; });
      assert.match(st.lastRefusal, /unknown_device|unknown_tenant/);
      assert.ok(((await metric(t, /fluxgate_bridge_refused_total\{bridge="strict",reason="unknown_tenant"\} (\d+)/)) ?? 0) >= 1);
      assert.ok(((await metric(t, /fluxgate_bridge_refused_total\{bridge="strict",reason="unknown_device"\} (\d+)/)) ?? 0) >= 1);
    } finally {
      await t.api('DELETE', '/api/v1/bridges/strict');
    }
  });

  it('REST: malformed bodies get 400 naming the fields; duplicates 409; strangers 401; tenant keys 403', async () => {
    const bad = await t.api('POST', '/api/v1/bridges', { name: 'bad name!', url: 'http://x', topics: [], qos: 3, template: { pattern: 'a/b' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'BAD_REQUEST');
    for (const field of ['name', 'url', 'topics', 'qos']) assert.match(bad.body.message, new RegExp(`\\b${field}\\b`), `names ${field}: ${bad.body.message}`);
    const semantic = await t.api('POST', '/api/v1/bridges', { name: 'semantic', url: broker.url, topics: ['a/#/b', '$share/g'], template: { pattern: 'a/{tenant}/x' }, reconnect: { initialMs: 5000, maxMs: 100 } });
    assert.equal(semantic.status, 400);
    for (const field of ['topics\\[0\\]', 'topics\\[1\\]', 'template.pattern', 'reconnect.initialMs']) assert.match(semantic.body.message, new RegExp(field), `names ${field}: ${semantic.body.message}`);
    const extra = await t.api('POST', '/api/v1/bridges', { ...bridgeBody('extra', broker.url), colour: 'blue' });
    assert.equal(extra.status, 400);
    assert.equal((await t.api('POST', '/api/v1/bridges', 'not json')).status, 400);
    assert.equal((await t.api('GET', '/api/v1/bridges')).body.items.some((b: any) => ['bad name!', 'semantic', 'extra'].includes(b.definition.name)), false, 'nothing of a refused body was created');

    assert.equal((await t.api('POST', '/api/v1/bridges', bridgeBody('dup', broker.url))).status, 201);
    const dup = await t.api('POST', '/api/v1/bridges', bridgeBody('dup', broker.url));
    assert.equal(dup.status, 409);
    assert.equal(dup.body.code, 'BRIDGE_EXISTS');
    assert.equal((await t.api('DELETE', '/api/v1/bridges/dup')).status, 204);
    assert.equal((await t.api('DELETE', '/api/v1/bridges/dup')).status, 404);

    const anon = await fetch(`${t.url}/api/v1/bridges`);
    assert.equal(anon.status, 401);
    const key = (await t.api('POST', `/api/v1/keys?tenant=${TENANT}`, { role: 'admin', name: 'tenant-admin' })).body.key as string;
    for (const [method, path, body] of [['GET', '/api/v1/bridges'], ['POST', '/api/v1/bridges', bridgeBody('by-tenant', broker.url)], ['GET', '/api/v1/bridges/x'], ['DELETE', '/api/v1/bridges/x']] as const) {
      const r = await t.api(method, path, body, key);
      assert.equal(r.status, 403, `${method} ${path} with a tenant admin key: ${r.status}`);
    }
  });

  it('a bridge may name a platform template of the configuration by id; an unknown id is 400', async () => {
    const dir = await tempDir('fluxgate-bridge-template-');
    let n: TestNode | undefined;
    try {
      n = await startTestNode({ templates: [{ id: 'mtic-platform', pattern: PATTERN, autoProvision: true }] } as any, dir.dir);
      await setupTenant(n);
      const unknown = await n.api('POST', '/api/v1/bridges', bridgeBody('by-unknown', broker.url, { template: 'no-such-template' }));
      assert.equal(unknown.status, 400);
      assert.match(unknown.body.message, /template: no platform topic template "no-such-template"/);
      assert.equal((await n.api('POST', '/api/v1/bridges', bridgeBody('by-id', broker.url, { template: 'mtic-platform' }))).status, 201);
      await waitFor(async () => (await n!.api('GET', '/api/v1/bridges/by-id')).body.status.connected, { what: 'bridge connected' });
      const pub = await publisher(broker.url);
      await pub.publishAsync(topicOf('by-id-dev', 'by-id'), '{"v":7}', { qos: 1 });
      await pub.endAsync();
      const got = await waitFor(async () => { const m = await messages(n!, 'by-id-dev'); return m.length ? m : undefined; }, { what: 'message through the template by id' });
      assert.equal(got.length, 1);
      assert.equal(got[0].project, PROJECT);
    } finally {
      await n?.node.stop();
      await dir.cleanup();
    }
  });

  it('REST bridges survive a restart (kept in the store); configured bridges cannot be deleted over REST', async () => {
    const dir = await tempDir('fluxgate-bridge-restart-');
    let n1: TestNode | undefined;
    let n2: TestNode | undefined;
    try {
      const configured = () => ({ ...bridgeBody('from-file', broker.url), qos: 1 as const, protocolVersion: 5 as const }) as any;
      n1 = await startTestNode({ bridges: [configured()] }, dir.dir);
      assert.equal((await n1.api('POST', '/api/v1/bridges', bridgeBody('from-rest', broker.url))).status, 201);
      const del = await n1.api('DELETE', '/api/v1/bridges/from-file');
      assert.equal(del.status, 403);
      assert.match(del.body.message, /configuration file/);
      await n1.node.stop();
      n1 = undefined;
      n2 = await startTestNode({ bridges: [configured()] }, dir.dir);
      const list = (await n2.api('GET', '/api/v1/bridges')).body.items;
      assert.deepEqual(list.map((b: any) => [b.definition.name, b.origin]), [['from-file', 'config'], ['from-rest', 'api']]);
      await waitFor(async () => (await n2!.api('GET', '/api/v1/bridges')).body.items.every((b: any) => b.status.connected), { what: 'both bridges connected after the restart' });
    } finally {
      await n1?.node.stop();
      await n2?.node.stop();
      await dir.cleanup();
    }
  });
});
