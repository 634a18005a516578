/** @module MQTT sessions across disconnects and node restarts: persistent sessions, retained, wills, expiry, takeover. */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { IDisconnectPacket, IPublishPacket } from 'mqtt-packet';
import { tempDir, waitFor } from '../helpers/wait.js';
import { Clients, collect, connackOf, startBroker } from './helpers/broker.js';
import { RawClient } from './helpers/raw.js';

const app = { username: 'app:t1', password: 'app-secret' };

describe('mqtt - sessions, retained and wills', () => {
  for (const protocolVersion of [4, 5] as const) {
    it(`v${protocolVersion}: a persistent session keeps its subscriptions and queued QoS 1/2 messages across a node restart`, async () => {
      const tmp = await tempDir();
      const c = new Clients();
      let b = await startBroker({ dataDir: tmp.dir });
      try {
        const token = await b.addDevice('d1', { tenant: 't1' });
        const persistent = { protocolVersion, ...app, clientId: `keeper-${protocolVersion}`, clean: false, ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}) };
        const sub = await c.connect(b.url, persistent);
        await sub.subscribeAsync('devices/+/telemetry', { qos: 1 });
        await sub.subscribeAsync('devices/+/events', { qos: 2 });
        await sub.endAsync();
        const dev = await c.connect(b.url, { protocolVersion, username: token });
        for (let i = 0; i < 5; i++) await dev.publishAsync('devices/d1/telemetry', JSON.stringify({ i }), { qos: 1 });
        await dev.publishAsync('devices/d1/events', '{"e":1}', { qos: 2 });
        await dev.publishAsync('devices/d1/telemetry', '{"qos0":true}', { qos: 0 });
        await dev.publishAsync('devices/d1/attributes', '{"fw":"9"}', { qos: 1, retain: true });
        await c.closeAll();
        await b.stop();

        b = await startBroker({ dataDir: tmp.dir });
        const back = await c.connect(b.url, persistent);
        assert.equal(connackOf(back).sessionPresent, true);
        const got = collect(back);
        await waitFor(() => got.length >= 6);
        assert.deepEqual(got.map((m) => m.payload.toString()), [0, 1, 2, 3, 4].map((i) => JSON.stringify({ i })).concat('{"e":1}'));
        assert.equal(got[5].packet.qos, 2);
        // Subscriptions came back too: new messages arrive without subscribing again.
        const dev2 = await c.connect(b.url, { protocolVersion, username: token });
        await dev2.publishAsync('devices/d1/telemetry', '{"after":1}', { qos: 1 });
        await waitFor(() => got.length >= 7);
        assert.equal(got[6].payload.toString(), '{"after":1}');
        // Retained survived the restart too.
        const late = await c.connect(b.url, { protocolVersion, ...app });
        const gotLate = collect(late);
        await late.subscribeAsync('devices/d1/attributes', { qos: 1 });
        await waitFor(() => gotLate.length === 1);
        assert.equal(gotLate[0].payload.toString(), '{"fw":"9"}');
        assert.equal(gotLate[0].packet.retain, true);
      } finally {
        await c.closeAll();
        await b.stop();
        await tmp.cleanup();
      }
    });
  }

  for (const protocolVersion of [4, 5] as const) {
    it(`v${protocolVersion}: the will is published (and logged) on an abrupt disconnect, not after DISCONNECT`, async () => {
      const b = await startBroker();
      const c = new Clients();
      try {
        const token = await b.addDevice('d1', { tenant: 't1' });
        const sub = await c.connect(b.url, { protocolVersion, ...app });
        const got = collect(sub);
        await sub.subscribeAsync('devices/+/events', { qos: 1 });
        const will = { topic: 'devices/d1/events', payload: Buffer.from('{"online":false}'), qos: 1 as const, retain: false };
        const polite = await c.connect(b.url, { protocolVersion, username: token, clientId: 'polite', will });
        await polite.endAsync();
        const dev = await c.connect(b.url, { protocolVersion, username: token, clientId: 'abrupt', will });
        dev.stream.destroy();
        await waitFor(() => got.length === 1);
        assert.equal(got[0].payload.toString(), '{"online":false}');
        const batch = await b.log.read('test', 100, 0);
        assert.deepEqual(batch.records.map((r) => [r.envelope.kind, Buffer.from(r.envelope.payload).toString()]), [['event', '{"online":false}']]);
      } finally {
        await c.closeAll();
        await b.stop();
      }
    });
  }

  it('v5: a will delay holds the will; resuming the session in time cancels it [MQTT-3.1.3-9]', async () => {
    const b = await startBroker();
    const c = new Clients();
    try {
      const token = await b.addDevice('d1', { tenant: 't1' });
      const sub = await c.connect(b.url, { protocolVersion: 5, ...app });
      const got = collect(sub);
      await sub.subscribeAsync('devices/+/events', { qos: 1 });
      const opts = (id: string, payload: string) => ({ protocolVersion: 5 as const, username: token, clientId: id, clean: false, properties: { sessionExpiryInterval: 60 }, will: { topic: 'devices/d1/events', payload: Buffer.from(payload), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } } });
      const delayed = await c.connect(b.url, opts('delayed', 'delayed'));
      const resumed = await c.connect(b.url, opts('resumed', 'resumed'));
      const t0 = Date.now();
      delayed.stream.destroy();
      resumed.stream.destroy();
      await c.connect(b.url, opts('resumed', 'resumed'));
      await waitFor(() => got.length >= 1);
      assert.ok(Date.now() - t0 >= 900, `will after ${Date.now() - t0} ms`);
      await waitFor(() => Date.now() - t0 > 1500);
      assert.deepEqual(got.map((m) => m.payload.toString()), ['delayed']);
    } finally {
      await c.closeAll();
      await b.stop();
    }
  });

  it('v5: a session expires after its Session Expiry Interval; a second connection takes a session over (0x8E)', async () => {
    const b = await startBroker();
    const c = new Clients();
    const raw = await RawClient.open(b.port, 5);
    try {
      const opts = { protocolVersion: 5 as const, ...app, clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } };
      const first = await c.connect(b.url, opts);
      await first.subscribeAsync('x/#', { qos: 1 });
      await first.endAsync();
      const again = await c.connect(b.url, opts);
      assert.equal(connackOf(again).sessionPresent, true);
      await again.endAsync();
      const t0 = Date.now();
      await waitFor(() => Date.now() - t0 > 1300);
      const later = await c.connect(b.url, opts);
      assert.equal(connackOf(later).sessionPresent, false);

      await raw.connect({ clientId: 'twin', username: 'app:t1', password: 'app-secret' });
      await c.connect(b.url, { protocolVersion: 5, ...app, clientId: 'twin' });
      assert.equal(((await raw.next('disconnect')) as IDisconnectPacket).reasonCode, 0x8e);
    } finally {
      raw.close();
      await c.closeAll();
      await b.stop();
    }
  });

  it('v5: a queued message whose expiry passed while the session was offline is not delivered [MQTT-3.3.2-5]', async () => {
    const b = await startBroker();
    const c = new Clients();
    try {
      const opts = { protocolVersion: 5 as const, ...app, clientId: 'expiring', clean: false, properties: { sessionExpiryInterval: 60 } };
      const sub = await c.connect(b.url, opts);
      await sub.subscribeAsync('jobs/#', { qos: 1 });
      await sub.endAsync();
      const pub = await c.connect(b.url, { protocolVersion: 5, ...app });
      await pub.publishAsync('jobs/short', 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
      await pub.publishAsync('jobs/long', 'long', { qos: 1, properties: { messageExpiryInterval: 600 } });
      const t0 = Date.now();
      await waitFor(() => Date.now() - t0 > 1200);
      const back = await c.connect(b.url, opts);
      const got = collect(back);
      await waitFor(() => got.length >= 1);
      assert.deepEqual(got.map((m) => m.payload.toString()), ['long']);
      const left = got[0].packet.properties?.messageExpiryInterval ?? 0;
      assert.ok(left > 590 && left <= 600, `expiry left ${left}`);
    } finally {
      await c.closeAll();
      await b.stop();
    }
  });

  it('unacknowledged deliveries are resent with DUP and the same packet id when the session resumes [MQTT-4.4.0-1]', async () => {
    const b = await startBroker();
    const c = new Clients();
    const first = await RawClient.open(b.port, 5);
    const second = await RawClient.open(b.port, 5);
    try {
      const login = { clientId: 'resend', username: 'app:t1', password: 'app-secret', clean: false, properties: { sessionExpiryInterval: 60 } };
      await first.connect(login);
      first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'resend/#', qos: 2 }] });
      await first.next('suback');
      const pub = await c.connect(b.url, { protocolVersion: 5, ...app });
      await pub.publishAsync('resend/q1', 'one', { qos: 1 });
      await pub.publishAsync('resend/q2', 'two', { qos: 2 });
      const p1 = (await first.next('publish')) as IPublishPacket;
      const p2 = (await first.next('publish')) as IPublishPacket;
      // QoS 2: PUBREC sent, PUBREL received, PUBCOMP not sent before the connection drops.
      first.send({ cmd: 'pubrec', messageId: p2.messageId });
      await first.next('pubrel');
      first.close();
      const connack = (await second.connect(login)) as { sessionPresent?: boolean };
      assert.equal(connack.sessionPresent, true);
      const again = (await second.next('publish')) as IPublishPacket;
      assert.deepEqual([again.messageId, again.dup, again.payload.toString()], [p1.messageId, true, 'one']);
      assert.equal(((await second.next('pubrel')) as { messageId?: number }).messageId, p2.messageId);
      second.send({ cmd: 'puback', messageId: again.messageId });
      second.send({ cmd: 'pubcomp', messageId: p2.messageId });
      await assert.rejects(second.next('publish', 200));
    } finally {
      first.close();
      second.close();
      await c.closeAll();
      await b.stop();
    }
  });

  it('stop() sends DISCONNECT 0x8B to v5 clients', async () => {
    const b = await startBroker();
    const raw = await RawClient.open(b.port, 5);
    try {
      await raw.connect({ clientId: 'bye', username: 'app:t1', password: 'app-secret' });
      await b.stop();
      assert.equal(((await raw.next('disconnect')) as IDisconnectPacket).reasonCode, 0x8b);
      await raw.waitClosed();
    } finally {
      raw.close();
      await b.stop();
    }
  });
});
