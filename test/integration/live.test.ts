import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startTestNode, ADMIN_KEY, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

describe('live updates', () => {
  let t: TestNode;
  let token: string;
  const send = (body: unknown) => fetch(`${t.url}/api/v1/devices/live-1/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  before(async () => { t = await startTestNode(); token = await t.createDevice('live-1'); });
  after(() => t?.stop());

  it('streams a device\'s stored values as Server-Sent Events', async () => {
    const ac = new AbortController();
    const res = await fetch(`${t.url}/api/v1/devices/live-1/live?key=${ADMIN_KEY}`, { signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const first = await reader.read();
    text += Buffer.from(first.value!).toString();
    assert.match(text, /subscribed/);
    assert.equal((await send({ temperature: 23.25 })).status, 202);
    while (!/event: telemetry\ndata: .*23\.25/.test(text)) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += Buffer.from(chunk.value!).toString();
    }
    const data = JSON.parse(/event: telemetry\ndata: (.*)\n/.exec(text)![1]);
    assert.equal(data.device, 'live-1');
    assert.equal(data.values.temperature.value, 23.25);
    ac.abort();
  });

  it('refuses SSE without a key and for an unknown device', async () => {
    assert.equal((await fetch(`${t.url}/api/v1/devices/live-1/live`)).status, 401);
    const r = await fetch(`${t.url}/api/v1/devices/nobody/live?key=${ADMIN_KEY}`);
    assert.equal(r.status, 404);
    assert.equal((await r.json()).code, 'DEVICE_NOT_FOUND');
  });

  it('delivers over WebSocket to a subscriber of the device and of *', async () => {
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/api/v1/live`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d))));
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    ws.send(JSON.stringify({ subscribe: ['live-1', '*'] }));
    await waitFor(() => messages.find((m) => m.type === 'subscribed'), { what: 'subscribed' });
    assert.equal((await send({ humidity: 41 })).status, 202);
    const updates = await waitFor(() => { const u = messages.filter((m) => m.type === 'telemetry' && m.values.humidity?.value === 41); return u.length === 2 ? u : undefined; }, { what: 'two deliveries (device and *)' });
    assert.equal(updates[0].device, 'live-1');
    ws.send('not json');
    await waitFor(() => messages.find((m) => m.type === 'error' && m.code === 'BAD_JSON'), { what: 'error answer' });
    ws.close();
  });

  it('refuses a WebSocket without a valid key', async () => {
    const ws = new WebSocket(`${t.url.replace('http', 'ws')}/api/v1/live?key=wrong`);
    const status = await new Promise<number>((r) => { ws.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0)); ws.once('error', () => r(-1)); });
    assert.equal(status, 401);
  });
});

it('live - a node with open live subscribers stops promptly', async () => {
  const t = await startTestNode();
  await t.createDevice('s1');
  const res = await fetch(`${t.url}/api/v1/devices/s1/live?key=${ADMIN_KEY}`);
  const ws = new WebSocket(`${t.url.replace('http', 'ws')}/api/v1/live?key=${ADMIN_KEY}`);
  await new Promise((r) => ws.once('open', r));
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  await t.stop();
  assert.equal(await closed, 1001);
  const rest = await res.body!.getReader().read().then(() => 'read', () => 'ended');
  assert.ok(rest);
});
