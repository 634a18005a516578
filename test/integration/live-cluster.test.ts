import { it } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startTestNode, ADMIN_KEY } from '../helpers/node.js';
import { startNatsServer, NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';

it('live - a subscriber on one node sees updates processed by another node (NATS relay)', { skip: !NATS_SERVER_BIN && !process.env.CI ? 'nats-server is not installed' : false }, async () => {
  const nats = await startNatsServer();
  const processor = await startTestNode({ log: { backend: nats.url } });
  const ingestOnly = await startTestNode({ log: { backend: nats.url }, process: { enabled: false } });
  try {
    const token = await ingestOnly.createDevice('relay-1');
    const ws = new WebSocket(`${ingestOnly.url.replace('http', 'ws')}/api/v1/live?key=${ADMIN_KEY}`);
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d))));
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    ws.send(JSON.stringify({ subscribe: ['relay-1'] }));
    await waitFor(() => messages.find((m) => m.type === 'subscribed'), { what: 'subscribed' });
    const r = await fetch(`${ingestOnly.url}/api/v1/devices/relay-1/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"pressure":990}' });
    assert.equal(r.status, 202);
    const update = await waitFor(() => messages.find((m) => m.type === 'telemetry'), { what: 'relayed update', timeoutMs: 20_000 });
    assert.equal(update.device, 'relay-1');
    assert.equal(update.values.pressure.value, 990);
    ws.close();
  } finally {
    await ingestOnly.stop();
    await processor.stop();
    await nats.cleanup();
  }
});
