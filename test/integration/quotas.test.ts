/**
 * @module Tenant settings and quotas over REST, HTTP ingest and MQTT: GET/PATCH
 * /api/v1/tenants/:id (platform admin writes; a tenant's own admin key reads), effective
 * settings from the node's defaults, and the quotas they set (device count, message rate,
 * payload size), refused with the right code, counted per tenant, and never touching
 * another tenant.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import mqtt, { type IPublishPacket, type Packet } from 'mqtt';
import { apiClient, startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const metric = async (t: TestNode, tenant: string, quota: string) => {
  const m = new RegExp(`fluxgate_quota_refused_total\\{tenant="${tenant}",quota="${quota}"\\} (\\d+)`).exec(await (await fetch(`${t.url}/metrics`)).text());
  return m ? Number(m[1]) : 0;
};

describe('tenant settings over REST', () => {
  let t: TestNode;
  let acmeKey: string;
  let betaKey: string;

  before(async () => {
    t = await startTestNode({ tenants: { defaultMaxDevices: 1000, defaultRawRetentionDays: 5 } });
    acmeKey = (await t.api('POST', '/api/v1/tenants', { id: 'acme' })).body.key.key;
    betaKey = (await t.api('POST', '/api/v1/tenants', { id: 'beta' })).body.key.key;
  });
  after(() => t?.stop());

  it('a new tenant has no settings of its own; effective ones are the node defaults', async () => {
    const r = await t.api('GET', '/api/v1/tenants/acme');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.settings, {});
    assert.deepEqual(r.body.effective, {
      maxDevices: 1000, messagesPerSecond: 0, burstMessages: 0, maxPayloadBytes: 0, rawRetentionDays: 5, rollup1mRetentionDays: 30, rollup1hRetentionDays: 365,
    });
  });

  it('PATCH sets and unsets settings (null = node default), and a read after sees them', async () => {
    const p = await t.api('PATCH', '/api/v1/tenants/acme', { settings: { maxDevices: 3, messagesPerSecond: 10, rawRetentionDays: 0 } });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(p.body.settings, { maxDevices: 3, messagesPerSecond: 10, rawRetentionDays: 0 });
    assert.equal(p.body.effective.burstMessages, 10, 'burst defaults to one second of the rate');
    const p2 = await t.api('PATCH', '/api/v1/tenants/acme', { name: 'Acme Corp', settings: { messagesPerSecond: null, burstMessages: 20 } });
    assert.equal(p2.status, 200);
    const r = await t.api('GET', '/api/v1/tenants/acme');
    assert.equal(r.body.name, 'Acme Corp');
    assert.deepEqual(r.body.settings, { maxDevices: 3, rawRetentionDays: 0, burstMessages: 20 });
    assert.equal(r.body.effective.messagesPerSecond, 0);
    assert.equal(r.body.effective.rawRetentionDays, 0);
    // beta is untouched.
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/beta')).body.settings, {});
  });

  it('malformed patches are 400 naming the field, and change nothing', async () => {
    const before = (await t.api('GET', '/api/v1/tenants/acme')).body;
    for (const body of [{ settings: { maxDevices: -1 } }, { settings: { maxDevices: 1.5 } }, { settings: { maxDevices: 'ten' } }, { settings: { colour: 1 } }, { other: 1 }, { settings: { messagesPerSecond: 1e12 } }]) {
      const r = await t.api('PATCH', '/api/v1/tenants/acme', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'BAD_REQUEST');
    }
    const bad = await fetch(`${t.url}/api/v1/tenants/acme`, { method: 'PATCH', headers: { authorization: `Bearer ${(t.node.adminKey)}`, 'content-type': 'application/json' }, body: '{"settings": {' });
    assert.equal(bad.status, 400);
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/acme')).body, before);
  });

  it('only the platform admin patches; a tenant admin reads its own tenant only; unknown tenant is 404; no key is 401', async () => {
    const asAcme = apiClient(t.url, acmeKey);
    assert.equal((await asAcme('GET', '/api/v1/tenants/acme')).status, 200);
    assert.equal((await asAcme('PATCH', '/api/v1/tenants/acme', { settings: { maxDevices: 100000 } })).status, 403);
    const other = await asAcme('GET', '/api/v1/tenants/beta');
    assert.equal(other.status, 403);
    assert.ok(!JSON.stringify(other.body).includes('"settings"'));
    const readKey = (await asAcme('POST', '/api/v1/keys', { role: 'read' })).body.key;
    assert.equal((await apiClient(t.url, readKey)('GET', '/api/v1/tenants/acme')).status, 403, 'a read key may not read tenant settings');
    assert.equal((await t.api('GET', '/api/v1/tenants/nobody')).status, 404);
    assert.equal((await t.api('PATCH', '/api/v1/tenants/nobody', { settings: { maxDevices: 1 } })).status, 404);
    assert.equal((await fetch(`${t.url}/api/v1/tenants/acme`)).status, 401);
    assert.equal((await apiClient(t.url, betaKey)('PATCH', '/api/v1/tenants/beta', { settings: { maxDevices: 0 } })).status, 403);
  });

  it('fluxgate tenant set / show change and print the settings; a bad value names the flag and changes nothing', async () => {
    const cli = fileURLToPath(new URL('../../bin/fluxgate.js', import.meta.url));
    const run = (...args: string[]) => promisify(execFile)(process.execPath, [cli, ...args, '--url', t.url, '--key', t.node.adminKey])
      .then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
    const set = await run('tenant', 'set', 'beta', '--max-devices', '7', '--messages-per-second', '2.5', '--raw-retention-days', '0');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /maxDevices\s+7\s+\(tenant setting\)/);
    assert.match(set.stdout, /burstMessages\s+3\s+\(node default\)/);
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/beta')).body.settings, { maxDevices: 7, messagesPerSecond: 2.5, rawRetentionDays: 0 });
    const unset = await run('tenant', 'set', 'beta', '--messages-per-second', 'default');
    assert.equal(unset.code, 0, unset.stderr);
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/beta')).body.settings, { maxDevices: 7, rawRetentionDays: 0 });
    const bad = await run('tenant', 'set', 'beta', '--max-devices', 'lots');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--max-devices/);
    const show = await run('tenant', 'show', 'beta');
    assert.match(show.stdout, /tenant beta/);
    assert.match(show.stdout, /rawRetentionDays\s+0\s+\(tenant setting\)/);
  });
});

describe('quotas on messages (rate, payload) over HTTP and MQTT', () => {
  let t: TestNode;
  const tokens: Record<string, string> = {};
  const send = (device: string, body: unknown) => fetch(`${t.url}/api/v1/devices/${device}/telemetry`, {
    method: 'POST', headers: { authorization: `Bearer ${tokens[device]}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body),
  });

  before(async () => {
    t = await startTestNode();
    for (const [tenant, device] of [['acme', 'a1'], ['beta', 'b1'], ['mq', 'm1'], ['mq', 'm2']]) {
      if ((await t.api('GET', `/api/v1/tenants/${tenant}`)).status === 404) assert.equal((await t.api('POST', '/api/v1/tenants', { id: tenant })).status, 201);
      const r = await t.api('POST', `/api/v1/devices?tenant=${tenant}`, { id: device });
      assert.equal(r.status, 201);
      tokens[device] = r.body.token;
    }
  });
  after(() => t?.stop());

  it('HTTP: over the rate is 429 with Retry-After, counted; another tenant meanwhile is not slowed; a batch over the burst is refused whole', async () => {
    assert.equal((await t.api('PATCH', '/api/v1/tenants/acme', { settings: { messagesPerSecond: 0.5, burstMessages: 3 } })).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await send('a1', { v: i })).status, 202, `message ${i} within the burst`);
    const sent = performance.now();
    const over = await send('a1', { v: 99 });
    assert.equal(over.status, 429);
    assert.ok(performance.now() - sent >= 450, 'an over-rate answer waits tenants.refusalDelayMs (500 ms)');
    const body = await over.json();
    assert.equal(body.code, 'QUOTA_RATE');
    assert.match(body.message, /0\.5 messages per second/);
    const retryAfter = Number(over.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 2, `Retry-After ${over.headers.get('retry-after')}`);
    // beta has no quota: 50 messages, all taken and none held, while acme's refusals are held.
    const held = Promise.all([send('a1', { v: 98 }), send('a1', { v: 97 })]);
    const started = performance.now();
    for (let i = 0; i < 50; i++) assert.equal((await send('b1', { v: i })).status, 202);
    assert.ok(performance.now() - started < 5000);
    assert.deepEqual((await held).map((r) => r.status), [429, 429]);
    assert.equal((await send('a1', { v: 100 })).status, 429, 'acme is still over');
    assert.equal(await metric(t, 'acme', 'rate'), 4);
    assert.equal(await metric(t, 'beta', 'rate'), 0);
    const batch = await send('a1', [{ v: 1 }, { v: 2 }, { v: 3 }, { v: 4 }]);
    assert.equal(batch.status, 429);
    assert.match((await batch.json()).message, /at most 3 per request/);
    // After Retry-After the bucket has refilled: accepted again.
    const back = await waitFor(async () => { const r = await send('a1', { v: 7 }); return r.status === 202 ? r : undefined; }, { timeoutMs: 5000, intervalMs: 500, what: 'acme accepted again' });
    assert.equal(back.status, 202);
    // What was refused was never stored: the latest v is the last accepted one.
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/a1/latest?tenant=acme')).body?.latest?.v?.value === 7, { what: 'accepted message stored' });
  });

  it('HTTP: a message over maxPayloadBytes is 413 QUOTA_PAYLOAD, counted, and none of its batch is taken', async () => {
    assert.equal((await t.api('PATCH', '/api/v1/tenants/beta', { settings: { maxPayloadBytes: 40 } })).status, 200);
    assert.equal((await send('b1', { v: 'small' })).status, 202);
    const r = await send('b1', [{ v: 'ok' }, { v: 'x'.repeat(100) }]);
    assert.equal(r.status, 413);
    assert.equal((await r.json()).code, 'QUOTA_PAYLOAD');
    assert.equal(await metric(t, 'beta', 'payload'), 2);
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/b1/latest?tenant=beta')).body?.latest?.v?.value === 'small', { what: 'the small message stored' });
  });

  it('MQTT: over the rate, v5 PUBACK/PUBREC 0x97 and 3.1.1 acknowledged and dropped; counted; nothing logged', async () => {
    assert.equal((await t.api('PATCH', '/api/v1/tenants/mq', { settings: { messagesPerSecond: 0.2, burstMessages: 2 } })).status, 200);
    const url = t.node.addresses.find((x) => x.name === 'mqtt')!.url;
    const v5 = await mqtt.connectAsync(url, { protocolVersion: 5, username: tokens.m1, reconnectPeriod: 0, clientId: 'quota-v5' });
    const acks: Array<{ cmd: string; reasonCode?: number }> = [];
    v5.on('packetreceive', (p: Packet) => { if (p.cmd === 'puback' || p.cmd === 'pubrec') acks.push({ cmd: p.cmd, reasonCode: (p as { reasonCode?: number }).reasonCode }); });
    const publish = (c: mqtt.MqttClient, topic: string, v: number, qos: 1 | 2) => new Promise<void>((resolve) => c.publish(topic, JSON.stringify({ v }), { qos }, () => resolve()));
    await publish(v5, 'devices/m1/telemetry', 1, 1);
    await publish(v5, 'devices/m1/telemetry', 2, 2);
    await publish(v5, 'devices/m1/telemetry', 3, 1);
    await publish(v5, 'devices/m1/telemetry', 4, 2);
    await waitFor(() => acks.length >= 4, { what: 'four acknowledgements' });
    assert.deepEqual(acks.map((a) => [a.cmd, a.reasonCode ?? 0]), [['puback', 0], ['pubrec', 0], ['puback', 0x97], ['pubrec', 0x97]]);
    await v5.endAsync();
    const v3 = await mqtt.connectAsync(url, { protocolVersion: 4, username: tokens.m2, reconnectPeriod: 0, clientId: 'quota-v3' });
    await publish(v3, 'devices/m2/telemetry', 5, 1); // acknowledged (3.1.1 has no refusal code) and dropped
    await v3.endAsync();
    assert.equal(await metric(t, 'mq', 'rate'), 3);
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/m1/latest?tenant=mq')).body?.latest?.v?.value === 2, { what: 'the accepted messages stored' });
    const m2 = await t.api('GET', '/api/v1/devices/m2/latest?tenant=mq');
    assert.deepEqual(m2.body.latest ?? {}, {}, 'the dropped 3.1.1 message was not stored');
  });

  it('MQTT: a payload over maxPayloadBytes is refused 0x97 and counted; a smaller one passes', async () => {
    assert.equal((await t.api('PATCH', '/api/v1/tenants/beta', { settings: { maxPayloadBytes: 40 } })).status, 200);
    const url = t.node.addresses.find((x) => x.name === 'mqtt')!.url;
    const c = await mqtt.connectAsync(url, { protocolVersion: 5, username: tokens.b1, reconnectPeriod: 0, clientId: 'quota-payload' });
    const codes: number[] = [];
    c.on('packetreceive', (p: Packet) => { if (p.cmd === 'puback') codes.push((p as { reasonCode?: number }).reasonCode ?? 0); });
    const before = await metric(t, 'beta', 'payload');
    await new Promise<void>((r) => c.publish('devices/b1/telemetry', JSON.stringify({ v: 'y'.repeat(100) }), { qos: 1 }, () => r()));
    await new Promise<void>((r) => c.publish('devices/b1/telemetry', JSON.stringify({ v: 'mqtt-small' }), { qos: 1 }, () => r()));
    await waitFor(() => codes.length >= 2, { what: 'two PUBACKs' });
    assert.deepEqual(codes, [0x97, 0]);
    await c.endAsync();
    assert.equal(await metric(t, 'beta', 'payload'), before + 1);
    assert.match(await (await fetch(`${t.url}/metrics`)).text(), /fluxgate_mqtt_publishes_total\{tenant="beta",qos="1",outcome="quota"\} 1/);
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/b1/latest?tenant=beta')).body?.latest?.v?.value === 'mqtt-small', { what: 'the small message stored' });
  });
});
