/** @module Bad input closes only the offending connection, with a v5 DISCONNECT reason first. */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { IDisconnectPacket, Packet } from 'mqtt-packet';
import { Clients, collect, startBroker, type TestBroker } from './helpers/broker.js';
import { RawClient } from './helpers/raw.js';
import { waitFor } from '../helpers/wait.js';

const appLogin = { username: 'app:t1', password: 'app-secret' };

describe('mqtt - bad input', () => {
  let b: TestBroker;
  let token: string;
  before(async () => {
    b = await startBroker({ mqtt: { maxPacketBytes: 2048 } });
    token = await b.addDevice('d1', { tenant: 't1' });
  });
  after(() => b.stop());

  /** Opens a v5 connection, sends `bad`, expects DISCONNECT with `reason` then close; a bystander keeps working. */
  async function expectClosed(bad: (raw: RawClient) => void, reason: number | undefined, version: 4 | 5 = 5): Promise<void> {
    const c = new Clients();
    const raw = await RawClient.open(b.port, version);
    try {
      const bystander = await c.connect(b.url, { protocolVersion: 5, ...appLogin });
      const got = collect(bystander);
      await bystander.subscribeAsync('devices/+/telemetry', { qos: 1 });
      await raw.connect({ clientId: `bad-${Math.random()}`, username: token });
      bad(raw);
      if (reason !== undefined) assert.equal(((await raw.next('disconnect')) as IDisconnectPacket).reasonCode, reason);
      await raw.waitClosed();
      const dev = await c.connect(b.url, { protocolVersion: 4, username: token });
      await dev.publishAsync('devices/d1/telemetry', '{"still":"fine"}', { qos: 1 });
      await waitFor(() => got.some((m) => m.payload.toString() === '{"still":"fine"}'));
    } finally {
      raw.close();
      await c.closeAll();
    }
  }

  it('a malformed packet closes that client with 0x81 (v5) and no other', async () => {
    // PUBLISH with both QoS bits set is malformed [MQTT-3.3.1-4].
    await expectClosed((raw) => raw.write(Buffer.from([0x36, 0x04, 0x00, 0x01, 0x61, 0x00])), 0x81);
  });

  it('v3.1.1: a malformed packet closes the connection', async () => {
    await expectClosed((raw) => raw.write(Buffer.from([0x36, 0x04, 0x00, 0x01, 0x61, 0x00])), undefined, 4);
  });

  it('a packet larger than mqtt.maxPacketBytes closes with 0x95, even before its body arrives', async () => {
    await expectClosed((raw) => raw.send({ cmd: 'publish', topic: 'devices/d1/telemetry', payload: Buffer.alloc(4000, 0x61), qos: 0, dup: false, retain: false }), 0x95);
    // Only the fixed header of a 10 MB packet.
    await expectClosed((raw) => raw.write(Buffer.from([0x30, 0x80, 0xad, 0xe2, 0x04])), 0x95);
  });

  it('protocol errors close with 0x82 / 0x90: a second CONNECT, a wildcard topic name, No Local on a shared subscription', async () => {
    await expectClosed((raw) => raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'again', clean: true, keepalive: 60 } as Packet), 0x82);
    await expectClosed((raw) => raw.send({ cmd: 'publish', topic: 'devices/+/telemetry', payload: Buffer.from('{}'), qos: 0, dup: false, retain: false }), 0x90);
    await expectClosed((raw) => raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/devices/d1/commands/#', qos: 1, nl: true }] }), 0x82);
  });

  it('a first packet other than CONNECT closes the connection', async () => {
    const raw = await RawClient.open(b.port, 4);
    try {
      raw.send({ cmd: 'pingreq' });
      await raw.waitClosed();
      assert.equal(raw.packets.length, 0);
    } finally {
      raw.close();
    }
  });

  it('garbage bytes never stop the broker', async () => {
    for (let i = 0; i < 20; i++) {
      const raw = await RawClient.open(b.port, 4);
      try {
        raw.write(Buffer.from(Array.from({ length: 64 }, (_, j) => (i * 31 + j * 17) & 0xff)));
        raw.socket.end();
        await raw.waitClosed();
      } finally {
        raw.close();
      }
    }
    const c = new Clients();
    try {
      await c.connect(b.url, { protocolVersion: 5, username: token });
    } finally {
      await c.closeAll();
    }
  });
});
