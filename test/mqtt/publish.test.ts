/** @module MQTT PUBLISH from devices: envelopes in the log, acks only after durability, QoS 2 once, refusals, backpressure. */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { generate, type IPubackPacket, type IPublishPacket } from 'mqtt-packet';
import { waitFor } from '../helpers/wait.js';
import { Clients, startBroker, type TestBroker } from './helpers/broker.js';
import { MemoryLog } from './helpers/memory-log.js';
import { RawClient } from './helpers/raw.js';

describe('mqtt - device publishes', () => {
  let b: TestBroker;
  let log: MemoryLog;
  let token: string;
  before(async () => {
    log = new MemoryLog();
    b = await startBroker({ log });
    token = await b.addDevice('d1', { tenant: 't1', project: 'p9' });
  });
  after(() => b.stop());

  for (const protocolVersion of [4, 5] as const) {
    it(`v${protocolVersion}: QoS 0, 1 and 2 on each device topic become envelopes with tenant, project, device and kind`, async () => {
      const c = new Clients();
      try {
        const client = await c.connect(b.url, { protocolVersion, username: token });
        const before = log.records.length;
        const topics: Array<[string, string]> = [['devices/d1/telemetry', 'telemetry'], ['devices/d1/events', 'event'], ['devices/d1/snapshot', 'snapshot'], ['devices/d1/attributes', 'attributes'], ['v1/devices/me/telemetry', 'telemetry'], ['v1/devices/me/attributes', 'attributes']];
        for (const qos of [0, 1, 2] as const) {
          for (const [topic] of topics) await client.publishAsync(topic, JSON.stringify({ t: 21.5, qos }), { qos });
        }
        const got = await waitFor(() => (log.records.length - before >= 18 ? log.records.slice(before) : undefined));
        assert.equal(got.length, 18);
        for (let i = 0; i < got.length; i++) {
          const e = got[i];
          const [topic, kind] = topics[i % topics.length];
          assert.deepEqual([e.tenant, e.project, e.device, e.kind, e.topic, e.protocol], ['t1', 'p9', 'd1', kind, topic, 'mqtt']);
          assert.deepEqual(JSON.parse(Buffer.from(e.payload).toString()), { t: 21.5, qos: Math.floor(i / topics.length) });
          assert.ok(e.messageId.length > 0 && e.receiveTime > 0);
        }
        assert.equal(new Set(got.map((e) => e.messageId)).size, 18);
      } finally {
        await c.closeAll();
      }
    });
  }

  it('v5: the user property `id` becomes the message id', async () => {
    const c = new Clients();
    try {
      const client = await c.connect(b.url, { protocolVersion: 5, username: token });
      await client.publishAsync('devices/d1/telemetry', '{"a":1}', { qos: 1, properties: { userProperties: { id: 'msg-42' } } });
      assert.equal(log.records.at(-1)!.messageId, 'msg-42');
    } finally {
      await c.closeAll();
    }
  });

  it('metrics: connections, packets by type, publishes by QoS and outcome, PUBACK latency, accepted messages', async () => {
    const c = new Clients();
    try {
      const client = await c.connect(b.url, { protocolVersion: 5, username: token });
      await client.publishAsync('devices/d1/telemetry', '{"m":1}', { qos: 1 });
      const text = await b.metrics.registry.metrics();
      assert.match(text, /^fluxgate_mqtt_connections [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_connects_total\{outcome="accepted"\} [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_packets_received_total\{type="publish"\} [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_packets_sent_total\{type="puback"\} [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_publishes_total\{tenant="t1",qos="1",outcome="accepted"\} [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_puback_seconds_count [1-9]/m);
      assert.match(text, /^fluxgate_mqtt_backpressure_seconds_total \d/m);
      assert.match(text, /^fluxgate_messages_total\{tenant="t1",protocol="mqtt",outcome="accepted"\} [1-9]/m);
    } finally {
      await c.closeAll();
    }
  });

  it('PUBACK and PUBREC are sent only once the log holds the message', async () => {
    const raw = await RawClient.open(b.port, 5);
    try {
      await raw.connect({ clientId: 'hold', username: token });
      log.hold();
      const calls = log.appendCalls;
      raw.send({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.from('{"held":1}'), qos: 1, messageId: 1, dup: false, retain: false });
      raw.send({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.from('{"held":2}'), qos: 2, messageId: 2, dup: false, retain: false });
      await waitFor(() => log.appendCalls > calls, { what: 'append called' });
      assert.equal(raw.packets.filter((p) => p.cmd === 'puback' || p.cmd === 'pubrec').length, 0);
      const count = log.records.length;
      log.releaseHeld();
      await raw.next('puback');
      await raw.next('pubrec');
      assert.ok(log.records.length >= count + 2);
      assert.deepEqual(log.records.slice(-2).map((e) => Buffer.from(e.payload).toString()), ['{"held":1}', '{"held":2}']);
    } finally {
      log.releaseHeld();
      raw.close();
    }
  });

  it('QoS 2: a packet id retried before PUBREL is logged once [MQTT-4.3.3-9]', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      await raw.connect({ clientId: 'q2', username: token });
      const before = log.records.length;
      const pub: IPublishPacket = { cmd: 'publish', topic: 'devices/d1/events', payload: Buffer.from('{"door":"open"}'), qos: 2, messageId: 7, dup: false, retain: false };
      log.hold();
      const calls = log.appendCalls;
      // Both in one write, so the retry surely arrives while the first is being appended.
      raw.write(Buffer.concat([generate(pub), generate({ ...pub, dup: true })]));
      await waitFor(() => log.appendCalls > calls);
      log.releaseHeld();
      await raw.next('pubrec');
      // The retry that arrived while the first was being appended got no PUBREC of its own.
      await assert.rejects(raw.next('pubrec', 200));
      raw.send({ ...pub, dup: true });
      await raw.next('pubrec');
      raw.send({ cmd: 'pubrel', messageId: 7 });
      await raw.next('pubcomp');
      assert.equal(log.records.length - before, 1);
      // After PUBREL the id is free again: a new message with it is a new message.
      raw.send({ ...pub, payload: Buffer.from('{"door":"closed"}') });
      await raw.next('pubrec');
      assert.equal(log.records.length - before, 2);
    } finally {
      log.releaseHeld();
      raw.close();
    }
  });

  it('a publish outside the device\'s own topics is refused: v5 PUBACK 0x87, v3.1.1 acknowledged and dropped; both counted', async () => {
    const before = log.records.length;
    const v5 = await RawClient.open(b.port, 5);
    const v4 = await RawClient.open(b.port, 4);
    try {
      await v5.connect({ clientId: 'r5', username: token });
      await v4.connect({ clientId: 'r4', username: token });
      v5.send({ cmd: 'publish', topic: 'devices/d2/telemetry', payload: Buffer.from('{}'), qos: 1, messageId: 3, dup: false, retain: false });
      assert.equal(((await v5.next('puback')) as IPubackPacket).reasonCode, 0x87);
      v4.send({ cmd: 'publish', topic: 'devices/d1/other', payload: Buffer.from('{}'), qos: 1, messageId: 3, dup: false, retain: false });
      await v4.next('puback');
      assert.equal(log.records.length, before);
      const text = await b.metrics.registry.metrics();
      assert.match(text, /fluxgate_mqtt_publishes_total\{tenant="t1",qos="1",outcome="forbidden"\} 2/);
      assert.match(text, /fluxgate_messages_total\{tenant="t1",protocol="mqtt",outcome="forbidden"\} 2/);
    } finally {
      v5.close();
      v4.close();
    }
  });

  it('QoS 2: a retry on a new connection of a persistent session while the first copy is appended gets PUBREC, and is logged once', async () => {
    const first = await RawClient.open(b.port, 5);
    const second = await RawClient.open(b.port, 5);
    try {
      const login = { clientId: 'q2-resume', username: token, clean: false, properties: { sessionExpiryInterval: 60 } };
      await first.connect(login);
      const before = log.records.length;
      const pub: IPublishPacket = { cmd: 'publish', topic: 'devices/d1/events', payload: Buffer.from('{"resume":1}'), qos: 2, messageId: 9, dup: false, retain: false };
      log.hold();
      const calls = log.appendCalls;
      first.send(pub);
      await waitFor(() => log.appendCalls > calls);
      first.close();
      await second.connect(login);
      second.send({ ...pub, dup: true });
      // The retry is not appended again while the first copy is held.
      await assert.rejects(waitFor(() => log.appendCalls > calls + 1, { timeoutMs: 200 }));
      log.releaseHeld();
      await second.next('pubrec');
      second.send({ cmd: 'pubrel', messageId: 9 });
      await second.next('pubcomp');
      assert.equal(log.records.length - before, 1);
    } finally {
      log.releaseHeld();
      first.close();
      second.close();
    }
  });

  it('v5: more unacknowledged QoS 1 publishes than the Receive Maximum (100) closes with 0x93', async () => {
    const raw = await RawClient.open(b.port, 5);
    try {
      await raw.connect({ clientId: 'flood', username: token });
      log.hold();
      const frames = Array.from({ length: 101 }, (_, i) => generate({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.from('{}'), qos: 1, messageId: i + 1, dup: false, retain: false }, { protocolVersion: 5 }));
      raw.write(Buffer.concat(frames));
      assert.equal(((await raw.next('disconnect')) as { reasonCode?: number }).reasonCode, 0x93);
      await raw.waitClosed();
    } finally {
      log.releaseHeld();
      raw.close();
    }
  });

  it('publishes of many connections share log appends (group commit)', async () => {
    const c = new Clients();
    try {
      const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => c.connect(b.url, { protocolVersion: 4, username: token, clientId: `g${i}` })));
      const calls = log.appendCalls;
      const before = log.records.length;
      await Promise.all(clients.flatMap((cl) => Array.from({ length: 10 }, (_, j) => cl.publishAsync('devices/d1/telemetry', `{"j":${j}}`, { qos: 1 }))));
      assert.equal(log.records.length - before, 200);
      assert.ok(log.appendCalls - calls < 200, `${log.appendCalls - calls} appends for 200 messages`);
    } finally {
      await c.closeAll();
    }
  });

  it('while the log is over its limit the broker stops reading, then resumes; the time is counted', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      await raw.connect({ clientId: 'bp', username: token });
      log.overLimit = true;
      raw.send({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.from('{"n":1}'), qos: 1, messageId: 1, dup: false, retain: false });
      await raw.next('puback');
      await waitFor(() => b.source.status().detail?.includes('paused'), { what: 'paused' });
      raw.send({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.from('{"n":2}'), qos: 1, messageId: 2, dup: false, retain: false });
      await assert.rejects(raw.next('puback', 300));
      log.overLimit = false;
      await raw.next('puback');
      assert.equal(Buffer.from(log.records.at(-1)!.payload).toString(), '{"n":2}');
      const m = await b.metrics.registry.getSingleMetric('fluxgate_mqtt_backpressure_seconds_total')!.get();
      assert.ok(m.values[0].value > 0);
    } finally {
      log.overLimit = false;
      raw.close();
    }
  });
});
