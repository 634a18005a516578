/** @module Protocol code never owns sockets: `handle()` serves any Duplex, here an in-memory pair. */
import { strict as assert } from 'node:assert';
import { duplexPair } from 'node:stream';
import { it } from 'node:test';
import { generate, parser as createParser, type IConnackPacket, type Packet } from 'mqtt-packet';
import { waitFor } from '../helpers/wait.js';
import { startBroker } from './helpers/broker.js';

it('mqtt - an in-memory duplex pair is served like a socket: CONNECT, QoS 1 PUBLISH logged, PUBACK', async () => {
  const b = await startBroker();
  const [client, server] = duplexPair();
  try {
    const token = await b.addDevice('mem', { tenant: 't1' });
    const got: Packet[] = [];
    const parser = createParser({ protocolVersion: 5 });
    parser.on('packet', (p: Packet) => got.push(p));
    client.on('data', (d: Buffer) => parser.parse(d));
    b.source.handle(server);
    client.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'mem', clean: true, keepalive: 30, username: token }));
    await waitFor(() => got.find((p) => p.cmd === 'connack'));
    assert.equal((got[0] as IConnackPacket).reasonCode, 0);
    client.write(generate({ cmd: 'publish', topic: 'devices/mem/telemetry', payload: Buffer.from('{"in":"memory"}'), qos: 1, messageId: 5, dup: false, retain: false }, { protocolVersion: 5 }));
    await waitFor(() => got.find((p) => p.cmd === 'puback'));
    const recs = (await b.log.read('mem', 10, 0)).records;
    assert.deepEqual(recs.map((r) => [r.envelope.device, Buffer.from(r.envelope.payload).toString()]), [['mem', '{"in":"memory"}']]);
  } finally {
    client.destroy();
    await b.stop();
  }
});
