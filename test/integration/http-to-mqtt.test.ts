import { it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

it('mqtt - an application subscriber sees telemetry that devices sent over HTTP', async () => {
  const t = await startTestNode();
  const token = await t.createDevice('http-dev');
  const key = await t.api('POST', '/api/v1/keys', { role: 'write', name: 'dashboard' });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
  const app = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: 'dashboard', password: key.body.key, protocolVersion: 5, reconnectPeriod: 0 });
  try {
    const got: Array<{ topic: string; payload: string }> = [];
    app.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    await app.subscribeAsync('devices/+/telemetry', { qos: 1 });
    const r = await fetch(`${t.url}/api/v1/devices/http-dev/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"rpm":1200}' });
    assert.equal(r.status, 202);
    const m = await waitFor(() => got.find((g) => g.topic === 'devices/http-dev/telemetry'), { what: 'the HTTP telemetry over MQTT' });
    assert.deepEqual(JSON.parse(m.payload), { rpm: 1200 });
  } finally {
    await app.endAsync();
    await t.stop();
  }
});
