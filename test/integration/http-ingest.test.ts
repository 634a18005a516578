import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const post = (url: string, path: string, body: string, headers: Record<string, string> = {}) =>
  fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

describe('http ingest', () => {
  let t: TestNode;
  let token: string;
  let otherToken: string;
  before(async () => {
    t = await startTestNode({ http: { bodyLimitBytes: 4096 } });
    token = await t.createDevice('thermo-1');
    otherToken = await t.createDevice('thermo-2');
  });
  after(() => t?.stop());

  it('accepts an object with 202 and shows it in latest, history and metrics', async () => {
    const r = await post(t.url, '/api/v1/devices/thermo-1/telemetry', '{"temperature":21.5,"status":"ok","on":true,"nested":{"a":{"b":2}}}', { authorization: `Bearer ${token}` });
    assert.equal(r.status, 202);
    assert.deepEqual(await r.json(), { accepted: 1 });
    const latest = await waitFor(async () => {
      const l = await t.api('GET', '/api/v1/devices/thermo-1/latest');
      return l.body.latest?.temperature ? l.body.latest : undefined;
    }, { what: 'latest temperature' });
    assert.equal(latest.temperature.value, 21.5);
    assert.equal(latest.status.value, 'ok');
    assert.equal(latest.on.value, true);
    assert.equal(latest['nested.a.b'].value, 2);
    assert.ok(Math.abs(latest.temperature.ts - Date.now()) < 60_000);
    const hist = await t.api('GET', `/api/v1/devices/thermo-1/telemetry?key=temperature&from=${Date.now() - 3_600_000}`);
    assert.equal(hist.status, 200);
    assert.deepEqual(hist.body.items.map((p: any) => p.value), [21.5]);
    const metrics = await (await fetch(t.url + '/metrics')).text();
    assert.match(metrics, /fluxgate_messages_total\{tenant="default",protocol="http",outcome="accepted"\} [1-9]/);
  });

  it('accepts the shortest curl (form content type) and the ThingsBoard path', async () => {
    const form = await fetch(t.url + '/api/v1/devices/thermo-2/telemetry', { method: 'POST', headers: { authorization: `Bearer ${otherToken}`, 'content-type': 'application/x-www-form-urlencoded' }, body: '{"humidity":40}' });
    assert.equal(form.status, 202);
    const tb = await post(t.url, `/api/v1/${otherToken}/telemetry`, '{"pressure":1013}');
    assert.equal(tb.status, 202);
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/thermo-2/latest')).body.latest?.pressure?.value === 1013, { what: 'tb pressure' });
    assert.equal((await t.api('GET', '/api/v1/devices/thermo-2/latest')).body.latest.humidity.value, 40);
  });

  it('stores an array with device times and buckets it', async () => {
    const base = Date.UTC(2026, 0, 1, 12, 0, 0);
    const body = [0, 1, 2, 3].map((i) => ({ ts: base + i * 30_000, id: `arr-${i}`, load: i * 10 }));
    const r = await post(t.url, '/api/v1/devices/thermo-1/telemetry', JSON.stringify(body), { authorization: `Bearer ${token}` });
    assert.equal(r.status, 202);
    assert.deepEqual(await r.json(), { accepted: 4 });
    const buckets = await waitFor(async () => {
      const b = await t.api('GET', `/api/v1/devices/thermo-1/telemetry?key=load&from=${base}&to=${base + 120_000}&interval=1m&agg=avg`);
      return b.body.buckets?.length === 2 ? b.body.buckets : undefined;
    }, { what: 'two buckets' });
    assert.deepEqual(buckets.map((b: any) => [b.ts, b.value, b.count]), [[base, 5, 2], [base + 60_000, 25, 2]]);
    const max = await t.api('GET', `/api/v1/devices/thermo-1/telemetry?key=load&from=${new Date(base).toISOString()}&to=${base + 120_000}&interval=1h&agg=max`);
    assert.deepEqual(max.body.buckets.map((b: any) => b.value), [30]);
  });

  it('keeps the newest value when a late old message arrives, and stores a duplicate once', async () => {
    const now = Date.now();
    const send = (ts: number, v: number, id: string) => post(t.url, '/api/v1/devices/thermo-1/telemetry', JSON.stringify({ ts, id, late: v }), { authorization: `Bearer ${token}` });
    assert.equal((await send(now, 2, 'late-new')).status, 202);
    assert.equal((await send(now - 60_000, 1, 'late-old')).status, 202);
    assert.equal((await send(now - 60_000, 1, 'late-old')).status, 202);
    const hist = await waitFor(async () => {
      const h = await t.api('GET', `/api/v1/devices/thermo-1/telemetry?key=late&from=${now - 120_000}&to=${now + 1}`);
      return h.body.items?.length >= 2 ? h.body.items : undefined;
    }, { what: 'late history' });
    assert.deepEqual(hist.map((p: any) => p.value), [1, 2]);
    assert.equal((await t.api('GET', '/api/v1/devices/thermo-1/latest')).body.latest.late.value, 2);
  });

  it('stores a retry without ts once: the message id decides (Idempotency-Key and JSON id)', async () => {
    const path = '/api/v1/devices/thermo-1/telemetry';
    const auth = { authorization: `Bearer ${token}` };
    const dropped = async () => Number(/fluxgate_duplicates_dropped_total\{tenant="default"\} (\d+)/.exec(await fetch(t.url + '/metrics').then((r) => r.text()))?.[1] ?? 0);
    const before = await dropped();
    for (let i = 0; i < 3; i++) {
      assert.equal((await post(t.url, path, '{"retried":1,"id":"retry-a"}', auth)).status, 202);
      assert.equal((await post(t.url, path, '{"retried":2}', { ...auth, 'idempotency-key': 'retry-b' })).status, 202);
    }
    const from = Date.now() - 60_000;
    await waitFor(async () => (await dropped()) - before === 4, { what: '4 duplicates dropped' });
    const hist = await t.api('GET', `/api/v1/devices/thermo-1/telemetry?key=retried&from=${from}`);
    assert.deepEqual(hist.body.items.map((p: any) => p.value).sort(), [1, 2]);
  });

  it('refuses with a status and a code, and stores nothing of a refused request', async () => {
    const path = '/api/v1/devices/thermo-1/telemetry';
    const cases: Array<[string, Promise<Response>, number, string, RegExp?]> = [
      ['no token', post(t.url, path, '{"x":1}'), 401, 'UNAUTHENTICATED'],
      ['bad token', post(t.url, path, '{"x":1}', { authorization: 'Bearer nope' }), 401, 'UNAUTHENTICATED'],
      ['token of another device', post(t.url, path, '{"x":1}', { authorization: `Bearer ${otherToken}` }), 403, 'DEVICE_MISMATCH'],
      ['bad JSON', post(t.url, path, '{"x":1,,}', { authorization: `Bearer ${token}` }), 400, 'BAD_JSON', /position 7/],
      ['bad ts', post(t.url, path, '{"x":1,"ts":"yesterday"}', { authorization: `Bearer ${token}` }), 400, 'BAD_REQUEST', /"ts"/],
      ['array with a non-object', post(t.url, path, '[{"refused":1},5]', { authorization: `Bearer ${token}` }), 400, 'BAD_REQUEST', /element 1/],
      ['too large', post(t.url, path, JSON.stringify({ refused: 'x'.repeat(5000) }), { authorization: `Bearer ${token}` }), 413, 'PAYLOAD_TOO_LARGE', /http\.bodyLimitBytes/],
      ['wrong type', fetch(t.url + path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/xml' }, body: '<x/>' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['bad TB token', post(t.url, '/api/v1/not-a-token/telemetry', '{"x":1}'), 401, 'UNAUTHENTICATED'],
    ];
    for (const [what, pending, status, code, message] of cases) {
      const r = await pending;
      const body = await r.json();
      assert.equal(r.status, status, `${what}: ${JSON.stringify(body)}`);
      assert.equal(body.code, code, what);
      assert.equal(typeof body.message, 'string');
      if (message) assert.match(body.message, message, what);
    }
    // A marker sent after the refusals is processed; nothing refused got stored before it.
    assert.equal((await post(t.url, path, '{"marker":1}', { authorization: `Bearer ${token}` })).status, 202);
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/thermo-1/latest')).body.latest?.marker, { what: 'marker' });
    const latest = (await t.api('GET', '/api/v1/devices/thermo-1/latest')).body.latest;
    assert.equal(latest.refused, undefined);
    assert.equal(latest.x, undefined);
    const metrics = await (await fetch(t.url + '/metrics')).text();
    assert.match(metrics, /outcome="unauthenticated"\} [1-9]/);
  });

  it('refuses a disabled device with 403 at once and accepts it again when enabled', async () => {
    const tok = await t.createDevice('switch-1');
    const send = () => post(t.url, '/api/v1/devices/switch-1/telemetry', '{"on":true}', { authorization: `Bearer ${tok}` });
    assert.equal((await send()).status, 202);
    assert.equal((await t.api('PATCH', '/api/v1/devices/switch-1', { disabled: true })).status, 200);
    const r = await send();
    assert.equal(r.status, 403);
    assert.equal((await r.json()).code, 'DEVICE_DISABLED');
    await t.api('PATCH', '/api/v1/devices/switch-1', { disabled: false });
    assert.equal((await send()).status, 202);
  });
});

describe('http ingest - overload', () => {
  it('answers 503 with Retry-After when processing is behind past log.maxLagRecords', async () => {
    const t = await startTestNode({ process: { enabled: false }, log: { maxLagRecords: 3 } });
    try {
      const token = await t.createDevice('d1');
      const send = () => post(t.url, '/api/v1/devices/d1/telemetry', '{"v":1}', { authorization: `Bearer ${token}` });
      for (let i = 0; i < 3; i++) assert.equal((await send()).status, 202);
      const r = await send();
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal((await r.json()).code, 'LOG_OVERLOADED');
      // Behind is not unready: a load balancer keeps the node, the node itself slows sources.
      const ready = await fetch(t.url + '/readyz');
      assert.equal(ready.status, 200);
      assert.match((await ready.json()).components.log.detail, /over log\.maxLagRecords/);
    } finally {
      await t.stop();
    }
  });
});

describe('http ingest - shedding', () => {
  it('refuses snapshots first when processing lags, counts them, and still takes events', async () => {
    const t = await startTestNode({ process: { enabled: false }, log: { maxLagRecords: 100, shedSnapshotsAtRecords: 2 } });
    try {
      const token = await t.createDevice('fleet-1');
      const send = (kind: string, body: unknown) => post(t.url, `/api/v1/devices/fleet-1/${kind}`, JSON.stringify(body), { authorization: `Bearer ${token}` });
      assert.equal((await send('snapshot', { a: 1 })).status, 202, 'below the threshold snapshots are taken');
      assert.equal((await send('telemetry', { b: 1 })).status, 202);
      const shed = await send('snapshot', { a: 2 });
      assert.equal(shed.status, 503);
      assert.equal((await shed.json()).code, 'SNAPSHOT_SHED');
      assert.equal((await send('events', { door: 'open' })).status, 202, 'events are never shed');
      assert.equal((await send('telemetry', { b: 2 })).status, 202);
      const metrics = await (await fetch(t.url + '/metrics')).text();
      assert.match(metrics, /fluxgate_snapshots_shed_total\{tenant="default",protocol="http"\} 1/);
      assert.match(metrics, /fluxgate_messages_total\{tenant="default",protocol="http",outcome="shed"\} 1/);
      const ready = await (await fetch(t.url + '/readyz')).json();
      assert.match(ready.components.admission.detail, /shedding snapshots/);
    } finally {
      await t.stop();
    }
  });
});

describe('mqtt - shedding', () => {
  it('answers a v5 snapshot with PUBACK 0x97 when processing lags, counts it, and still takes events', async () => {
    const { default: mqtt } = await import('mqtt');
    const t = await startTestNode({ process: { enabled: false }, log: { maxLagRecords: 100, shedSnapshotsAtRecords: 1 } });
    const token = await t.createDevice('fleet-m');
    const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: token, protocolVersion: 5, reconnectPeriod: 0 });
    try {
      await client.publishAsync('devices/fleet-m/telemetry', '{"a":1}', { qos: 1 });
      await assert.rejects(client.publishAsync('devices/fleet-m/snapshot', '{"a":2}', { qos: 1 }), (err: { code?: number }) => err.code === 0x97);
      await client.publishAsync('devices/fleet-m/events', '{"door":"open"}', { qos: 1 });
      const metrics = await (await fetch(t.url + '/metrics')).text();
      assert.match(metrics, /fluxgate_snapshots_shed_total\{tenant="default",protocol="mqtt"\} 1/);
      assert.equal(t.node.log.pressure().lagRecords, 2, 'telemetry and the event were logged, the snapshot was not');
    } finally {
      await client.endAsync();
      await t.stop();
    }
  });
});
