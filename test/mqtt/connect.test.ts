/** @module MQTT CONNECT: device authentication and refusals with each version's codes, client ids, keepalive, limits. */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '../helpers/wait.js';
import { RawClient } from './helpers/raw.js';
import { Clients, connackOf, startBroker, type TestBroker } from './helpers/broker.js';

describe('mqtt - connect and device authentication', () => {
  let b: TestBroker;
  let token: string;
  before(async () => {
    b = await startBroker({ mqtt: { maxKeepAliveSeconds: 60, connectTimeoutMs: 300 } });
    token = await b.addDevice('d1');
    await b.addDevice('off', { disabled: true });
  });
  after(() => b.stop());

  for (const protocolVersion of [4, 5] as const) {
    it(`v${protocolVersion}: username = token, and username = device id + password = token, are accepted`, async () => {
      const c = new Clients();
      try {
        await c.connect(b.url, { protocolVersion, username: token });
        await c.connect(b.url, { protocolVersion, username: 'd1', password: token });
      } finally {
        await c.closeAll();
      }
    });
  }

  it('v5: wrong token → CONNACK 0x86, disabled device → 0x87, token of another device → 0x87', async () => {
    const c = new Clients();
    try {
      await assert.rejects(c.connect(b.url, { protocolVersion: 5, username: 'nope' }), (e: { code?: number }) => e.code === 0x86);
      const offToken = await b.addDevice('off2', { disabled: true });
      await assert.rejects(c.connect(b.url, { protocolVersion: 5, username: offToken }), (e: { code?: number }) => e.code === 0x87);
      await assert.rejects(c.connect(b.url, { protocolVersion: 5, username: 'other', password: token }), (e: { code?: number }) => e.code === 0x87);
    } finally {
      await c.closeAll();
    }
  });

  it('v3.1.1: wrong token → CONNACK 4, disabled device → 5', async () => {
    const c = new Clients();
    try {
      await assert.rejects(c.connect(b.url, { protocolVersion: 4, username: 'nope' }), (e: { code?: number }) => e.code === 4);
      const offToken = await b.addDevice('off3', { disabled: true });
      await assert.rejects(c.connect(b.url, { protocolVersion: 4, username: offToken }), (e: { code?: number }) => e.code === 5);
    } finally {
      await c.closeAll();
    }
  });

  it('v5: an empty client id gets an assigned one; keepalive 0 gets Server Keep Alive; limits are announced', async () => {
    const c = new Clients();
    try {
      const client = await c.connect(b.url, { protocolVersion: 5, username: token, clientId: '', keepalive: 0 });
      const props = connackOf(client).properties ?? {};
      assert.match(String(props.assignedClientIdentifier), /^fg-/);
      assert.equal(props.serverKeepAlive, 60);
      assert.equal(props.receiveMaximum, 100);
      assert.equal(props.maximumPacketSize, 1024 * 1024);
      assert.equal(props.topicAliasMaximum, 100);
      assert.equal(props.sharedSubscriptionAvailable, true);
      const rr = await c.connect(b.url, { protocolVersion: 5, username: token, properties: { requestResponseInformation: true } });
      assert.equal(connackOf(rr).properties?.responseInformation, 'devices/d1/commands/');
    } finally {
      await c.closeAll();
    }
  });

  it('v3.1.1: an empty client id with clean session 0 is refused with 2', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      // mqtt-packet refuses to encode this, so the bytes are spelled out: CONNECT v4, flags = username only.
      const str = (v: string) => { const b = Buffer.from(v); return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]); };
      const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0x80, 0, 60]), str(''), str(token)]);
      raw.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
      const connack = await raw.next('connack');
      assert.equal((connack as { returnCode?: number }).returnCode, 2);
      await raw.waitClosed();
    } finally {
      raw.close();
    }
  });

  it('a connection silent past 1.5 × keepalive is closed [MQTT-3.1.2-24]', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      await raw.connect({ clientId: 'ka', keepalive: 1, username: token });
      const started = Date.now();
      await raw.waitClosed();
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1400 && elapsed < 4000, `closed after ${elapsed} ms`);
    } finally {
      raw.close();
    }
  });

  it('a connection that sends no CONNECT within connectTimeoutMs is closed', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      await raw.waitClosed();
      const text = await b.metrics.registry.metrics();
      assert.match(text, /fluxgate_mqtt_disconnects_total\{reason="connect_timeout"\} [1-9]/);
    } finally {
      raw.close();
    }
  });

  it('mqtt.maxConnections is enforced: one more gets CONNACK 0x97 (v5) / 3 (v3.1.1)', async () => {
    const small = await startBroker({ mqtt: { maxConnections: 2 } });
    const c = new Clients();
    try {
      const t = await small.addDevice('d1');
      await c.connect(small.url, { protocolVersion: 5, username: t, clientId: 'a' });
      await c.connect(small.url, { protocolVersion: 5, username: t, clientId: 'b' });
      await assert.rejects(c.connect(small.url, { protocolVersion: 5, username: t, clientId: 'c' }), (e: { code?: number }) => e.code === 0x97);
      await assert.rejects(c.connect(small.url, { protocolVersion: 4, username: t, clientId: 'd' }), (e: { code?: number }) => e.code === 3);
    } finally {
      await c.closeAll();
      await small.stop();
    }
  });

  it('a device revoked in the registry (disabled, deleted, token rotated) is disconnected at once', async () => {
    const raw = await RawClient.open(b.port, 5);
    try {
      const t = await b.addDevice('revoked', { tenant: 'tr' });
      await raw.connect({ clientId: 'rv', username: t });
      b.auth.forget('tr', 'revoked');
      assert.equal(((await raw.next('disconnect')) as { reasonCode?: number }).reasonCode, 0x87);
      await raw.waitClosed();
    } finally {
      raw.close();
    }
  });

  it('a failing registry answers CONNACK 0x80 (v5) / 3 (v3.1.1), never crashes', async () => {
    const broken = await startBroker({ registry: { findDeviceByTokenHash: async () => { throw new Error('disk gone'); } } as never });
    const c = new Clients();
    try {
      await assert.rejects(c.connect(broken.url, { protocolVersion: 5, username: 'any' }), (e: { code?: number }) => e.code === 0x80);
      await assert.rejects(c.connect(broken.url, { protocolVersion: 4, username: 'any' }), (e: { code?: number }) => e.code === 3);
    } finally {
      await c.closeAll();
      await broken.stop();
    }
  });

  it('a port in use rejects with PORT_IN_USE naming mqtt.port', async () => {
    await assert.rejects(startBroker({ mqtt: { port: b.port } }), (e: { code?: string; message: string }) => e.code === 'PORT_IN_USE' && e.message.includes('mqtt.port (--mqtt-port, FLUXGATE_MQTT_PORT)'));
  });
});
