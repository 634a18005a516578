/** @module MQTT subscriptions and routing: device data to application subscribers, wildcards, $share, retained, v5 options. */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { IDisconnectPacket, IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { waitFor } from '../helpers/wait.js';
import { Clients, collect, startBroker, type TestBroker } from './helpers/broker.js';
import { RawClient } from './helpers/raw.js';

const app = (tenant = 't1') => ({ username: `app:${tenant}`, password: 'app-secret' });

describe('mqtt - subscriptions and routing', () => {
  let b: TestBroker;
  let d1: string;
  before(async () => {
    b = await startBroker({ mqtt: { maxQueuedMessages: 5 } });
    d1 = await b.addDevice('d1', { tenant: 't1' });
    await b.addDevice('x1', { tenant: 't2' });
  });
  after(() => b.stop());

  for (const protocolVersion of [4, 5] as const) {
    it(`v${protocolVersion}: device telemetry reaches an application subscribed by wildcard in its tenant, and no other tenant`, async () => {
      const c = new Clients();
      try {
        const sub = await c.connect(b.url, { protocolVersion, ...app('t1') });
        const other = await c.connect(b.url, { protocolVersion, ...app('t2') });
        const got = collect(sub);
        const otherGot = collect(other);
        await sub.subscribeAsync('devices/+/telemetry', { qos: 1 });
        await other.subscribeAsync('#', { qos: 1 });
        const dev = await c.connect(b.url, { protocolVersion, username: d1 });
        await dev.publishAsync('devices/d1/telemetry', '{"t":1}', { qos: 1 });
        await dev.publishAsync('devices/d1/events', '{"e":1}', { qos: 1 });
        await waitFor(() => got.length >= 1);
        assert.deepEqual(got.map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['devices/d1/telemetry', '{"t":1}', 1]]);
        await dev.publishAsync('devices/d1/telemetry', '{"t":2}', { qos: 0 });
        await waitFor(() => got.length >= 2);
        assert.equal(otherGot.length, 0);
      } finally {
        await c.closeAll();
      }
    });
  }

  it('# and + match by level; $-topics are not matched by a leading wildcard [MQTT-4.7.2-1]', async () => {
    const c = new Clients();
    try {
      const all = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const sys = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const plus = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const gotAll = collect(all);
      const gotSys = collect(sys);
      const gotPlus = collect(plus);
      await all.subscribeAsync('#');
      await sys.subscribeAsync('$app/#');
      await plus.subscribeAsync('a/+/c');
      const pub = await c.connect(b.url, { protocolVersion: 5, ...app() });
      for (const t of ['$app/x', 'a/b/c', 'a/b/c/d', 'a/c', 'a']) await pub.publishAsync(t, t, { qos: 1 });
      await waitFor(() => gotAll.length >= 4 && gotSys.length >= 1 && gotPlus.length >= 1);
      assert.deepEqual(gotAll.map((m) => m.topic), ['a/b/c', 'a/b/c/d', 'a/c', 'a']);
      assert.deepEqual(gotSys.map((m) => m.topic), ['$app/x']);
      assert.deepEqual(gotPlus.map((m) => m.topic), ['a/b/c']);
    } finally {
      await c.closeAll();
    }
  });

  it('a device subscribes only to its own command topics (v5 0x87, v3.1.1 0x80) and receives commands', async () => {
    const c = new Clients();
    try {
      // mqtt.js rejects a SUBACK with refusals, so the refusals are checked on raw clients.
      const raw5 = await RawClient.open(b.port, 5);
      const raw4 = await RawClient.open(b.port, 4);
      try {
        await raw5.connect({ clientId: 'acl5', username: d1 });
        await raw4.connect({ clientId: 'acl4', username: d1 });
        raw5.send({ cmd: 'subscribe', messageId: 1, subscriptions: ['devices/d1/commands/#', 'devices/d2/commands/#', 'devices/d1/telemetry', '#', 'a/#/b'].map((topic) => ({ topic, qos: 1 as const })) });
        assert.deepEqual(((await raw5.next('suback')) as ISubackPacket).granted, [1, 0x87, 0x87, 0x87, 0x8f]);
        raw4.send({ cmd: 'subscribe', messageId: 1, subscriptions: ['devices/d1/commands/+', 'devices/+/commands/#'].map((topic) => ({ topic, qos: 1 as const })) });
        assert.deepEqual(((await raw4.next('suback')) as ISubackPacket).granted, [1, 0x80]);
      } finally {
        raw5.close();
        raw4.close();
      }
      const dev5 = await c.connect(b.url, { protocolVersion: 5, username: d1, clientId: 'dev5' });
      const dev4 = await c.connect(b.url, { protocolVersion: 4, username: d1, clientId: 'dev4' });
      await dev5.subscribeAsync('devices/d1/commands/#', { qos: 1 });
      await dev4.subscribeAsync('devices/d1/commands/+', { qos: 1 });
      const got5 = collect(dev5);
      const got4 = collect(dev4);
      const operator = await c.connect(b.url, { protocolVersion: 5, ...app() });
      await operator.publishAsync('devices/d1/commands/reboot', '{"delay":5}', { qos: 1 });
      await waitFor(() => got5.length === 1 && got4.length === 1);
      assert.equal(got5[0].topic, 'devices/d1/commands/reboot');
      // The node itself can send commands too (REST POST /devices/{id}/commands).
      b.source.publish('t1', { topic: 'devices/d1/commands/c9', payload: '{}', qos: 1 });
      await waitFor(() => got5.length === 2 && got4.length === 2);
      // Applications may not forge device data.
      const refused = await new Promise<number | undefined>((resolve) => operator.publish('devices/d1/telemetry', '{}', { qos: 1 }, (err, pkt) => resolve((pkt as { reasonCode?: number } | undefined)?.reasonCode ?? (err as { code?: number } | undefined)?.code)));
      assert.equal(refused, 0x87);
    } finally {
      await c.closeAll();
    }
  });

  it('a command reply reaches in-process listeners (onMessage) without being logged', async () => {
    const c = new Clients();
    const replies: string[] = [];
    const off = b.source.onMessage('t1', 'devices/+/commands/+/reply', (m) => replies.push(m.payload.toString()));
    try {
      const dev = await c.connect(b.url, { protocolVersion: 4, username: d1 });
      await dev.publishAsync('devices/d1/commands/c9/reply', '{"ok":true}', { qos: 1 });
      await waitFor(() => replies.length === 1);
      assert.deepEqual(replies, ['{"ok":true}']);
    } finally {
      off();
      await c.closeAll();
    }
  });

  it('$share/group spreads messages over the group: each message to exactly one member', async () => {
    const c = new Clients();
    try {
      const members = await Promise.all([0, 1, 2].map((i) => c.connect(b.url, { protocolVersion: i === 2 ? 4 : 5, ...app(), clientId: `share-${i}` })));
      const got = members.map((m) => collect(m));
      for (const m of members) await m.subscribeAsync('$share/workers/devices/+/telemetry', { qos: 1 });
      const normal = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const all = collect(normal);
      await normal.subscribeAsync('devices/+/telemetry', { qos: 1 });
      const dev = await c.connect(b.url, { protocolVersion: 5, username: d1 });
      for (let i = 0; i < 30; i++) await dev.publishAsync('devices/d1/telemetry', JSON.stringify({ i }), { qos: 1 });
      await waitFor(() => got.reduce((n, g) => n + g.length, 0) >= 30 && all.length >= 30);
      const seen = got.flatMap((g) => g.map((m) => JSON.parse(m.payload.toString()).i as number)).sort((x, y) => x - y);
      assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => i));
      for (const g of got) assert.ok(g.length >= 5, `member got ${g.length} of 30`);
    } finally {
      await c.closeAll();
    }
  });

  it('retained messages: sent on subscribe with RETAIN, Retain Handling 1 and 2, cleared by an empty payload', async () => {
    const c = new Clients();
    try {
      const dev = await c.connect(b.url, { protocolVersion: 5, username: d1 });
      await dev.publishAsync('devices/d1/attributes', '{"fw":"1.2"}', { qos: 1, retain: true });
      const sub = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const got = collect(sub);
      await sub.subscribeAsync('devices/+/attributes', { qos: 1 });
      await waitFor(() => got.length === 1);
      assert.equal(got[0].packet.retain, true);
      assert.equal(got[0].payload.toString(), '{"fw":"1.2"}');
      await sub.subscribeAsync('devices/+/attributes', { qos: 1, rh: 1 });
      await sub.subscribeAsync('devices/d1/attributes', { qos: 1, rh: 2 });
      await sub.subscribeAsync('devices/d1/+', { qos: 0, rh: 1 });
      await waitFor(() => got.length === 2);
      assert.equal(got[1].packet.qos, 0);
      // Live forwarding clears RETAIN unless Retain As Published.
      await dev.publishAsync('devices/d1/attributes', '{"fw":"1.3"}', { qos: 1, retain: true });
      await waitFor(() => got.length === 3);
      assert.equal(got[2].packet.retain, false);
      const rap = await c.connect(b.url, { protocolVersion: 5, ...app() });
      const gotRap = collect(rap);
      await rap.subscribeAsync('devices/d1/attributes', { qos: 1, rap: true, rh: 2 });
      await dev.publishAsync('devices/d1/attributes', '{"fw":"1.4"}', { qos: 1, retain: true });
      await waitFor(() => gotRap.length === 1);
      assert.equal(gotRap[0].packet.retain, true);
      const op = await c.connect(b.url, { protocolVersion: 4, ...app() });
      await op.publishAsync('apps/state', 'x', { qos: 1, retain: true });
      await op.publishAsync('apps/state', '', { qos: 1, retain: true });
      const late = await c.connect(b.url, { protocolVersion: 4, ...app() });
      const gotLate = collect(late);
      await late.subscribeAsync(['apps/state', 'devices/d1/attributes'], { qos: 1 });
      await waitFor(() => gotLate.length >= 1);
      assert.deepEqual(gotLate.map((m) => m.payload.toString()), ['{"fw":"1.4"}']);
    } finally {
      await c.closeAll();
    }
  });

  it('v5: no local, subscription identifiers, user properties, response topic and correlation data pass through', async () => {
    const c = new Clients();
    try {
      const a = await c.connect(b.url, { protocolVersion: 5, ...app(), clientId: 'nl-a' });
      const got = collect(a);
      await a.subscribeAsync('rr/#', { qos: 1, nl: true, properties: { subscriptionIdentifier: 7 } });
      await a.subscribeAsync('rr/+', { qos: 0, properties: { subscriptionIdentifier: 9 } });
      await a.publishAsync('rr/own', 'mine', { qos: 1 });
      const other = await c.connect(b.url, { protocolVersion: 5, ...app() });
      await other.publishAsync('rr/req', 'q', { qos: 1, properties: { responseTopic: 'rr/resp', correlationData: Buffer.from('c-1'), userProperties: { k: 'v' }, contentType: 'application/json' } });
      await waitFor(() => got.some((m) => m.topic === 'rr/req'));
      const m = got.find((x) => x.topic === 'rr/req')!;
      assert.equal(m.packet.qos, 1);
      assert.deepEqual([...([] as number[]).concat(m.packet.properties?.subscriptionIdentifier as number | number[])].sort(), [7, 9]);
      assert.equal(m.packet.properties?.responseTopic, 'rr/resp');
      assert.equal(m.packet.properties?.correlationData?.toString(), 'c-1');
      assert.deepEqual({ ...m.packet.properties?.userProperties }, { k: 'v' });
      assert.equal(m.packet.properties?.contentType, 'application/json');
      // rr/own matched rr/+ (no No Local) once, never through the No Local subscription.
      const own = got.filter((x) => x.topic === 'rr/own');
      assert.equal(own.length, 1);
      assert.equal(own[0].packet.properties?.subscriptionIdentifier, 9);
    } finally {
      await c.closeAll();
    }
  });

  it('v5: topic aliases in both directions; message expiry counts down', async () => {
    const c = new Clients();
    try {
      const sub = await c.connect(b.url, { protocolVersion: 5, ...app(), properties: { topicAliasMaximum: 5 } });
      const got = collect(sub);
      await sub.subscribeAsync('alias/#', { qos: 1 });
      const raw = await RawClient.open(b.port, 5);
      try {
        await raw.connect({ clientId: 'alias-pub', username: 'app:t1', password: 'app-secret' });
        raw.send({ cmd: 'publish', topic: 'alias/long/topic/name', payload: Buffer.from('1'), qos: 1, messageId: 1, dup: false, retain: false, properties: { topicAlias: 3, messageExpiryInterval: 100 } });
        raw.send({ cmd: 'publish', topic: '', payload: Buffer.from('2'), qos: 1, messageId: 2, dup: false, retain: false, properties: { topicAlias: 3 } });
        await raw.next('puback');
        await raw.next('puback');
        // An alias beyond the maximum closes with 0x94.
        raw.send({ cmd: 'publish', topic: 'alias/x', payload: Buffer.from('3'), qos: 0, dup: false, retain: false, properties: { topicAlias: 1000 } });
        assert.equal(((await raw.next('disconnect')) as IDisconnectPacket).reasonCode, 0x94);
      } finally {
        raw.close();
      }
      await waitFor(() => got.length === 2);
      assert.deepEqual(got.map((m) => [m.topic, m.payload.toString()]), [['alias/long/topic/name', '1'], ['alias/long/topic/name', '2']]);
      const expiry = got[0].packet.properties?.messageExpiryInterval;
      assert.ok(expiry !== undefined && expiry <= 100 && expiry > 90);
      assert.equal(got[1].packet.properties?.topicAlias, 1);
    } finally {
      await c.closeAll();
    }
  });

  it('v5: receive maximum and maximum packet size of the subscriber are honoured', async () => {
    const c = new Clients();
    const raw = await RawClient.open(b.port, 5);
    try {
      await raw.connect({ clientId: 'rm', username: 'app:t1', password: 'app-secret', properties: { receiveMaximum: 2, maximumPacketSize: 200 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rm/#', qos: 1 }] });
      await raw.next('suback');
      const pub = await c.connect(b.url, { protocolVersion: 5, ...app() });
      await pub.publishAsync('rm/big', Buffer.alloc(500), { qos: 1 });
      for (let i = 0; i < 4; i++) await pub.publishAsync('rm/x', String(i), { qos: 1 });
      await waitFor(() => raw.packets.filter((p) => p.cmd === 'publish').length >= 2);
      await assert.rejects(waitFor(() => raw.packets.filter((p) => p.cmd === 'publish').length > 2, { timeoutMs: 200 }));
      const first = raw.packets.filter((p): p is IPublishPacket => p.cmd === 'publish');
      assert.deepEqual(first.map((p) => p.payload.toString()), ['0', '1']);
      raw.send({ cmd: 'puback', messageId: first[0].messageId });
      raw.send({ cmd: 'puback', messageId: first[1].messageId });
      await waitFor(() => raw.packets.filter((p) => p.cmd === 'publish').length >= 4);
    } finally {
      raw.close();
      await c.closeAll();
    }
  });

  it('a subscriber that falls behind past maxQueuedMessages is disconnected with 0x97 and counted; ingest goes on', async () => {
    const c = new Clients();
    const raw = await RawClient.open(b.port, 5);
    try {
      await raw.connect({ clientId: 'slow', username: 'app:t1', password: 'app-secret', properties: { receiveMaximum: 1 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/+/telemetry', qos: 1 }] });
      assert.deepEqual(((await raw.next('suback')) as ISubackPacket).granted, [1]);
      const dev = await c.connect(b.url, { protocolVersion: 5, username: d1 });
      for (let i = 0; i < 10; i++) await dev.publishAsync('devices/d1/telemetry', String(i), { qos: 1 });
      assert.equal(((await raw.next('disconnect')) as IDisconnectPacket).reasonCode, 0x97);
      const m = await b.metrics.registry.getSingleMetric('fluxgate_mqtt_slow_subscribers_total')!.get();
      assert.equal(m.values[0].value, 1);
    } finally {
      raw.close();
      await c.closeAll();
    }
  });
});
