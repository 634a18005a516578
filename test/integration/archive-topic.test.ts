/**
 * @module The raw archive over REST, GET /api/v1/messages: by tenant (the caller's), project,
 * MQTT topic filter and time range, for messages of any payload shape (`{}`, text, binary) as
 * they arrived in the log; a malformed filter is 400 and another tenant sees nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '../../src/core/envelope.js';
import { apiClient, startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const T0 = Date.UTC(2026, 10, 1);
const TOPIC = (tenant: string, project: string, device: string, tail: string) => `mtic/msg/client/realtime/${tenant}/${project}/${device}/${tail}`;

describe('raw archive by project, topic filter and time', () => {
  let t: TestNode;
  let acme: ReturnType<typeof apiClient>;
  let beta: ReturnType<typeof apiClient>;

  before(async () => {
    t = await startTestNode();
    acme = apiClient(t.url, (await t.api('POST', '/api/v1/tenants', { id: 'acme' })).body.key.key);
    beta = apiClient(t.url, (await t.api('POST', '/api/v1/tenants', { id: 'beta' })).body.key.key);
    for (const p of ['p1', 'p2']) assert.equal((await acme('POST', '/api/v1/projects', { name: p })).status, 201);
    const env = (tenant: string, project: string, device: string, tail: string, i: number, payload: Buffer): Envelope => ({
      tenant, project, device, kind: 'telemetry', topic: TOPIC(tenant, project, device, tail), protocol: 'mqtt', deviceTime: T0 + i * 60_000, receiveTime: T0 + i * 60_000 + 5, messageId: `${tenant}-${i}`, payload,
    });
    await t.node.log.append([
      env('acme', 'p1', 'd1', 'status', 0, Buffer.from('{}')),
      env('acme', 'p1', 'd2', 'status', 1, Buffer.from('plain text')),
      env('acme', 'p2', 'd1', 'status', 2, Buffer.from([0, 1, 2, 255])),
      env('acme', 'p1', 'd1', 'alarm/high', 3, Buffer.from('{"level":3}')),
      env('beta', 'default', 'd1', 'status', 4, Buffer.from('{}')),
    ]);
    await waitFor(async () => (await acme('GET', `/api/v1/messages?from=${T0}&to=${T0 + 3_600_000}`)).body?.items?.length === 4, { what: 'acme\'s 4 messages archived' });
  });
  after(() => t?.stop());

  const ids = async (query: string, who = acme) => {
    const range = /(^|&)from=/.test(query) ? '' : `from=${T0}&to=${T0 + 3_600_000}&`;
    const r = await who('GET', `/api/v1/messages?${range}${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.items.map((m: any) => m.messageId);
  };

  it('filters by topic filter, alone and with project and time', async () => {
    assert.deepEqual(await ids(`topic=${encodeURIComponent('mtic/msg/client/realtime/acme/+/+/status')}`), ['acme-0', 'acme-1', 'acme-2']);
    assert.deepEqual(await ids(`topic=${encodeURIComponent('mtic/msg/client/realtime/acme/p1/d1/#')}`), ['acme-0', 'acme-3']);
    assert.deepEqual(await ids(`project=p1&topic=${encodeURIComponent('mtic/msg/client/realtime/+/+/+/status')}`), ['acme-0', 'acme-1']);
    assert.deepEqual(await ids(`topic=${encodeURIComponent('mtic/#')}&from=${T0 + 60_000}&to=${T0 + 180_000}`), ['acme-1', 'acme-2']);
    assert.deepEqual(await ids(`topic=${encodeURIComponent('other/#')}`), []);
  });

  it('every payload shape is kept as received', async () => {
    const r = await acme('GET', `/api/v1/messages?from=${T0}&to=${T0 + 3_600_000}&topic=${encodeURIComponent('mtic/msg/client/realtime/acme/+/+/status')}`);
    const [empty, text, binary] = r.body.items;
    assert.equal(empty.payload, '{}');
    assert.equal(text.payload, 'plain text');
    assert.notEqual(binary.encoding, text.encoding, 'binary is encoded, not mangled');
    assert.deepEqual([empty.ts, empty.receiveTime, empty.topic, empty.project, empty.device], [T0, T0 + 5, TOPIC('acme', 'p1', 'd1', 'status'), 'p1', 'd1']);
  });

  it('another tenant sees none of it, even with a filter naming the first tenant', async () => {
    assert.deepEqual(await ids(`topic=${encodeURIComponent('mtic/msg/client/realtime/acme/#')}`, beta), []);
    assert.deepEqual(await ids(`topic=${encodeURIComponent('#')}`, beta), ['beta-4']);
    assert.equal((await beta('GET', `/api/v1/messages?tenant=acme&topic=%23`)).status, 403);
  });

  it('a malformed filter is 400 naming the parameter; no key is 401', async () => {
    for (const bad of ['a/#/b', 'a+/b', '$share/g/a/#', '']) {
      const r = await acme('GET', `/api/v1/messages?topic=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 400, `${JSON.stringify(bad)} → ${r.status}`);
      assert.match(r.body.message, /topic/);
    }
    assert.equal((await fetch(`${t.url}/api/v1/messages?topic=%23`)).status, 401);
  });
});
