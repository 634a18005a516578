import { it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

it('commands - a command reaches the device over MQTT and its reply comes back over REST; silence is a 504', async () => {
  const t = await startTestNode();
  const token = await t.createDevice('cmd-1');
  const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
  const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: token, protocolVersion: 5, reconnectPeriod: 0 });
  try {
    const received: any[] = [];
    device.on('message', (topic, payload) => {
      if (topic.endsWith('/reply')) return; // its own reply, seen through commands/#
      const cmd = JSON.parse(payload.toString());
      received.push({ topic, cmd });
      if (cmd.name === 'reboot') void device.publishAsync(`${topic}/reply`, JSON.stringify({ ok: true, took: cmd.params.delay }), { qos: 1 });
    });
    await device.subscribeAsync('devices/cmd-1/commands/#', { qos: 1 });
    const r = await t.api('POST', '/api/v1/devices/cmd-1/commands', { name: 'reboot', params: { delay: 5 }, timeoutMs: 5000 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(JSON.parse(r.body.reply), { ok: true, took: 5 });
    assert.equal(received[0].topic, `devices/cmd-1/commands/${r.body.commandId}`);
    const silent = await t.api('POST', '/api/v1/devices/cmd-1/commands', { name: 'ignore-me', timeoutMs: 200 });
    assert.equal(silent.status, 504);
    assert.equal(silent.body.code, 'COMMAND_TIMEOUT');
    await waitFor(() => received.length === 2, { what: 'second command delivered' });
    assert.equal((await t.api('POST', '/api/v1/devices/nobody/commands', {})).status, 404);
  } finally {
    await device.endAsync();
    await t.stop();
  }
});
