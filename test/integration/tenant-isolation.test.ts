/**
 * @module Tenants are walls (DESIGN promise 4), shown from outside. Every route under /api/v1,
 * taken from the server's own route table (Fastify's onRoute hook, `node.routes`), is called
 * with tenant B's admin key against tenant A's resources (A's device, project, key and dead
 * letter ids) and naming tenant A (`?tenant=` and `X-Fluxgate-Tenant`): every call is refused
 * (401/403/404) and no answer carries any of A's data. A route this test does not know how to
 * fill fails it, so a new route must be added here, with its tenant check. Live updates (SSE,
 * WebSocket) with B's key never deliver A's values; over MQTT, B's API key subscribes to B's topics
 * only and A's device cannot publish as B's device; A's device token cannot ingest into B.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { ADMIN_KEY, startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const A = 'tenant-a';
const B = 'tenant-b';
/** Names and values that exist only in tenant A. */
const A_DEV = 'a-dev-x9q';
const A_PROJ = 'a-proj-x9q';
const A_VALUE = 's3cr3t-a-x9q';
const A_DL = 'a-deadletter-x9q';
const A_KEY_NAME = 'a-key-name-x9q';
const A_TMPL = 'a-tmpl-x9q';

interface Ctx { aKeyId: string; aDlId: string; aToken: string; bKey: string }
interface Fill {
  path: string;
  body?: unknown;
  /** A collection of the caller's own tenant (no A id to aim at): refused only when it names tenant A. */
  collection?: boolean;
}

/** How to aim each route at tenant A. Keys are `METHOD url` as the route table has them. */
const FILL: Record<string, (c: Ctx) => Fill> = {
  'POST /api/v1/devices/:id/:kind': () => ({ path: `/api/v1/devices/${A_DEV}/telemetry`, body: { v: 1 } }),
  'POST /api/v1/:token/:kind': (c) => ({ path: `/api/v1/${c.bKey}/telemetry`, body: { v: 1 } }),
  'POST /api/v1/devices': () => ({ path: '/api/v1/devices', body: { id: 'b-made-x9q', project: A_PROJ } }),
  // Bulk creation acts on the caller's own tenant (a collection); aimed at A's project it creates nothing (400, by row).
  'POST /api/v1/devices/bulk': () => ({ path: '/api/v1/devices/bulk', body: [{ id: 'b-bulk-x9q', project: A_PROJ }], collection: true }),
  'GET /api/v1/devices': () => ({ path: '/api/v1/devices', collection: true }),
  'GET /api/v1/devices/:id': () => ({ path: `/api/v1/devices/${A_DEV}` }),
  'PATCH /api/v1/devices/:id': () => ({ path: `/api/v1/devices/${A_DEV}`, body: { disabled: true } }),
  'POST /api/v1/devices/:id/token': () => ({ path: `/api/v1/devices/${A_DEV}/token` }),
  'DELETE /api/v1/devices/:id': () => ({ path: `/api/v1/devices/${A_DEV}` }),
  'GET /api/v1/devices/:id/latest': () => ({ path: `/api/v1/devices/${A_DEV}/latest` }),
  'GET /api/v1/devices/:id/telemetry': () => ({ path: `/api/v1/devices/${A_DEV}/telemetry?key=v&from=0` }),
  'GET /api/v1/messages': () => ({ path: `/api/v1/messages?project=${A_PROJ}&device=${A_DEV}&from=0`, collection: true }),
  'GET /api/v1/dead-letters': () => ({ path: '/api/v1/dead-letters', collection: true }),
  'POST /api/v1/dead-letters/replay': (c) => ({ path: '/api/v1/dead-letters/replay', body: { ids: [c.aDlId] }, collection: true }),
  'DELETE /api/v1/dead-letters': (c) => ({ path: '/api/v1/dead-letters', body: { ids: [c.aDlId] }, collection: true }),
  'GET /api/v1/devices/:id/live': () => ({ path: `/api/v1/devices/${A_DEV}/live` }),
  'POST /api/v1/devices/:id/commands': () => ({ path: `/api/v1/devices/${A_DEV}/commands`, body: { name: 'open', timeoutMs: 100 } }),
  'GET /api/v1/live': () => ({ path: '/api/v1/live', collection: true }),
  'POST /api/v1/tenants': () => ({ path: '/api/v1/tenants', body: { id: 'b-made-tenant' } }),
  'GET /api/v1/tenants': () => ({ path: '/api/v1/tenants' }),
  'GET /api/v1/tenants/:id': () => ({ path: `/api/v1/tenants/${A}` }),
  'PATCH /api/v1/tenants/:id': () => ({ path: `/api/v1/tenants/${A}`, body: { settings: { maxDevices: 1 } } }),
  'POST /api/v1/keys': () => ({ path: '/api/v1/keys', body: { role: 'admin', name: 'b-made' }, collection: true }),
  'GET /api/v1/keys': () => ({ path: '/api/v1/keys', collection: true }),
  'DELETE /api/v1/keys/:id': (c) => ({ path: `/api/v1/keys/${c.aKeyId}` }),
  'POST /api/v1/projects': () => ({ path: '/api/v1/projects', body: { name: 'b-only-proj' }, collection: true }),
  'GET /api/v1/projects': () => ({ path: '/api/v1/projects', collection: true }),
  'GET /api/v1/retention': () => ({ path: '/api/v1/retention', collection: true }),
  'POST /api/v1/retention/run': () => ({ path: '/api/v1/retention/run', collection: true }),
  'POST /api/v1/templates': () => ({ path: '/api/v1/templates', body: { id: 'b-made-tmpl', pattern: 'b-made/{device}' }, collection: true }),
  'GET /api/v1/templates': () => ({ path: '/api/v1/templates', collection: true }),
  'GET /api/v1/templates/:id': () => ({ path: `/api/v1/templates/${A_TMPL}` }),
  'DELETE /api/v1/templates/:id': () => ({ path: `/api/v1/templates/${A_TMPL}` }),
  'GET /api/v1/projects/:name/settings': () => ({ path: `/api/v1/projects/${A_PROJ}/settings` }),
  'PUT /api/v1/projects/:name/settings': () => ({ path: `/api/v1/projects/${A_PROJ}/settings`, body: { suppressSameValueSeconds: 60 } }),
  // Bridges are platform-wide (a {tenant} template routes into any tenant): platform admin only, so a tenant key gets 403 on each.
  'POST /api/v1/bridges': () => ({ path: '/api/v1/bridges', body: { name: 'b-made-bridge', url: 'mqtt://127.0.0.1:1', topics: ['x/#'], template: { pattern: `x/${A}/{device}`, tenant: A } }, collection: true }),
  'GET /api/v1/bridges': () => ({ path: '/api/v1/bridges', collection: true }),
  'GET /api/v1/bridges/:id': () => ({ path: '/api/v1/bridges/a-bridge-x9q' }),
  'DELETE /api/v1/bridges/:id': () => ({ path: '/api/v1/bridges/a-bridge-x9q' }),
};

const REFUSED = [401, 403, 404];

async function call(url: string, method: string, path: string, key: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, text: await res.text() };
}

const withTenant = (path: string, tenant: string) => `${path}${path.includes('?') ? '&' : '?'}tenant=${tenant}`;

describe('tenant isolation - tenant B\'s credentials never reach tenant A', () => {
  let t: TestNode;
  let c: Ctx;
  let aKey: string;
  let bToken: string;
  const secrets: string[] = [A_DEV, A_PROJ, A_VALUE, A_DL, A_KEY_NAME, A_TMPL];

  before(async () => {
    t = await startTestNode();
    const admin = (tenant: string) => t.api('POST', '/api/v1/tenants', { id: tenant }).then((r) => { assert.equal(r.status, 201); return r.body.key.key as string; });
    aKey = await admin(A);
    const bKey = await admin(B);
    const asA = (m: string, p: string, body?: unknown) => call(t.url, m, p, aKey, { body }).then((r) => ({ status: r.status, body: r.text ? JSON.parse(r.text) : undefined }));
    assert.equal((await asA('POST', '/api/v1/projects', { name: A_PROJ })).status, 201);
    const dev = await asA('POST', '/api/v1/devices', { id: A_DEV, project: A_PROJ });
    assert.equal(dev.status, 201);
    const aKeyMade = await asA('POST', '/api/v1/keys', { role: 'read', name: A_KEY_NAME });
    assert.equal(aKeyMade.status, 201);
    assert.equal((await asA('POST', '/api/v1/templates', { id: A_TMPL, pattern: `${A_TMPL}/{device}` })).status, 201);
    bToken = (await call(t.url, 'POST', '/api/v1/devices', bKey, { body: { id: 'b-dev' } }).then((r) => JSON.parse(r.text))).token;
    const ingest = await fetch(`${t.url}/api/v1/devices/${A_DEV}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${dev.body.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ v: A_VALUE }) });
    assert.equal(ingest.status, 202);
    await t.node.log.append([{ tenant: A, project: A_PROJ, device: A_DEV, kind: 'telemetry', topic: `devices/${A_DEV}/telemetry`, protocol: 'mqtt', receiveTime: Date.now(), messageId: A_DL, payload: Buffer.from(`not json ${A_VALUE}`) }]);
    await waitFor(async () => (await asA('GET', `/api/v1/devices/${A_DEV}/latest`)).body?.latest?.v?.value === A_VALUE, { what: 'A\'s value stored' });
    const dls = await waitFor(async () => (await asA('GET', '/api/v1/dead-letters')).body?.items?.find((d: any) => d.messageId === A_DL), { what: 'A\'s dead letter' });
    c = { aKeyId: aKeyMade.body.id, aDlId: dls.id, aToken: dev.body.token, bKey };
    secrets.push(c.aKeyId, c.aToken, aKey, aKeyMade.body.key);
  });
  after(() => t?.stop());

  /** Fails when `text` holds any of A's data the request did not itself carry. */
  function noAData(what: string, request: string, text: string): void {
    for (const s of secrets) if (!request.includes(s)) assert.ok(!text.includes(s), `${what} answered with A's data (${s}): ${text.slice(0, 300)}`);
  }

  it('every /api/v1 route of the route table refuses tenant B aimed at tenant A, and no answer holds A\'s data', async () => {
    const routes = t.node.routes.filter((r) => r.url.startsWith('/api/v1/') || r.url === '/api/v1');
    assert.ok(routes.length >= 20, `route table too small: ${routes.length}`);
    const unknown = routes.filter((r) => !FILL[`${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`]).map((r) => `${r.method} ${r.url}`);
    assert.deepEqual(unknown, [], 'routes this test does not know how to aim at another tenant: add them to FILL, with a tenant check in the route');
    for (const r of routes) {
      const fill = FILL[`${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`](c);
      const what = `${r.method} ${r.url}`;
      // 1. Aimed at A by id, or (collections) naming tenant A by query and by header.
      const attempts = fill.collection
        ? [{ path: withTenant(fill.path, A) }, { path: fill.path, headers: { 'x-fluxgate-tenant': A } }]
        : [{ path: fill.path }, { path: withTenant(fill.path, A) }, { path: fill.path, headers: { 'x-fluxgate-tenant': A } }];
      for (const a of attempts) {
        const res = await call(t.url, r.method, a.path, c.bKey, { body: fill.body, headers: a.headers });
        assert.ok(REFUSED.includes(res.status), `${what} (${a.path}${a.headers ? ' + header' : ''}) with B's key answered ${res.status}: ${res.text.slice(0, 300)}`);
        noAData(what, a.path + JSON.stringify(fill.body ?? ''), res.text);
      }
      // 2. A collection of B's own: whatever it answers, nothing of A's.
      if (fill.collection && r.url !== '/api/v1/live') {
        const res = await call(t.url, r.method, fill.path, c.bKey, { body: fill.body });
        assert.ok(res.status < 500, `${what} failed: ${res.status} ${res.text.slice(0, 300)}`);
        noAData(what, fill.path + JSON.stringify(fill.body ?? ''), res.text);
      }
    }
    // A is untouched by everything B tried.
    const asA = (p: string) => call(t.url, 'GET', p, aKey).then((r) => JSON.parse(r.text));
    assert.equal((await asA(`/api/v1/devices/${A_DEV}`)).disabled, false);
    assert.deepEqual((await asA(`/api/v1/tenants/${A}`)).settings, {}, 'A\'s settings unchanged');
    assert.equal((await asA(`/api/v1/devices/${A_DEV}/latest`)).latest.v.value, A_VALUE);
    assert.ok((await asA('/api/v1/keys')).items.some((k: any) => k.id === c.aKeyId));
    assert.ok((await asA('/api/v1/dead-letters')).items.some((d: any) => d.id === c.aDlId));
    assert.deepEqual((await asA('/api/v1/projects')).items.map((p: any) => p.name), [A_PROJ, 'default']);
    assert.equal((await asA(`/api/v1/templates/${A_TMPL}`)).pattern, `${A_TMPL}/{device}`, 'A\'s template untouched');
    const still = await fetch(`${t.url}/api/v1/devices/${A_DEV}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${c.aToken}`, 'content-type': 'application/json' }, body: '{"w":1}' });
    assert.equal(still.status, 202, 'A\'s device token still works');
  });

  it('A\'s device token cannot ingest into B\'s device, over either HTTP ingest route', async () => {
    const r = await fetch(`${t.url}/api/v1/devices/b-dev/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${c.aToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ v: A_VALUE }) });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).code, 'DEVICE_MISMATCH');
    const b = await call(t.url, 'GET', '/api/v1/devices/b-dev/latest', c.bKey);
    assert.deepEqual(JSON.parse(b.text).latest, {});
    // The ThingsBoard route takes the device from the token: it lands in A's own device, never in B.
    const tb = await fetch(`${t.url}/api/v1/${c.aToken}/telemetry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"tb":1}' });
    assert.equal(tb.status, 202);
    assert.equal((await call(t.url, 'GET', '/api/v1/devices/b-dev/latest', c.bKey)).text.includes('tb'), false);
  });

  it('live - B\'s SSE and WebSocket subscriptions never receive A\'s updates; naming A is refused', async () => {
    const ws = `${t.url.replace('http', 'ws')}/api/v1/live`;
    const refusedWith = (url: string, key: string) => new Promise<number>((resolve) => {
      const s = new WebSocket(url, { headers: { authorization: `Bearer ${key}` } });
      s.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); s.terminate(); });
      s.once('open', () => { resolve(101); s.close(); });
      s.once('error', () => resolve(-1));
    });
    assert.equal(await refusedWith(`${ws}?tenant=${A}`, c.bKey), 403);
    assert.equal((await fetch(`${t.url}/api/v1/devices/${A_DEV}/live?key=${c.bKey}`)).status, 404);

    const open = async (key: string) => {
      const s = new WebSocket(ws, { headers: { authorization: `Bearer ${key}` } });
      const got: string[] = [];
      s.on('message', (d) => got.push(String(d)));
      await new Promise((r, j) => { s.once('open', r); s.once('error', j); });
      s.send(JSON.stringify({ subscribe: ['*', A_DEV, 'b-dev'] }));
      await waitFor(() => got.some((m) => m.includes('"subscribed"')), { what: 'subscribed' });
      return { s, got };
    };
    const a = await open(aKey);
    const b = await open(c.bKey);
    try {
      const send = (token: string, device: string, body: unknown) => fetch(`${t.url}/api/v1/devices/${device}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal((await send(c.aToken, A_DEV, { live: `${A_VALUE}-live` })).status, 202);
      await waitFor(() => a.got.filter((m) => m.includes(`${A_VALUE}-live`)).length === 2, { what: 'A\'s own subscriber got A\'s update (device and *)' });
      assert.equal((await send(bToken, 'b-dev', { live: 'b-marker' })).status, 202);
      await waitFor(() => b.got.filter((m) => m.includes('b-marker')).length === 2, { what: 'B\'s own update' });
      for (const m of b.got) assert.ok(!m.includes(A_VALUE) && !m.includes(`"device":"${A_DEV}"`), `B received A's update: ${m}`);
      assert.ok(!a.got.some((m) => m.includes('b-marker')), 'A received B\'s update');
    } finally {
      a.s.close();
      b.s.close();
    }
  });

  it('mqtt - an API key subscribes across its own tenant only; A\'s device cannot publish as B\'s; a read key cannot connect', async () => {
    const url = t.node.addresses.find((x) => x.name === 'mqtt')!.url;
    const bWrite = JSON.parse((await call(t.url, 'POST', '/api/v1/keys', c.bKey, { body: { role: 'write' } })).text).key as string;
    const bRead = JSON.parse((await call(t.url, 'POST', '/api/v1/keys', c.bKey, { body: { role: 'read' } })).text).key as string;
    const clients: mqtt.MqttClient[] = [];
    const connect = async (o: mqtt.IClientOptions) => {
      const cl = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o });
      clients.push(cl);
      return cl;
    };
    try {
      await assert.rejects(connect({ username: 'dashboard', password: bRead }), 'a read key may not connect (application clients may publish commands)');
      const sub = await connect({ username: 'b-app', password: bWrite });
      const got: string[] = [];
      sub.on('message', (topic, payload) => got.push(`${topic} ${payload}`));
      await sub.subscribeAsync(['devices/#', '#'], { qos: 1 });
      const aDevice = await connect({ username: c.aToken });
      await aDevice.publishAsync(`devices/${A_DEV}/telemetry`, JSON.stringify({ mq: `${A_VALUE}-mqtt` }), { qos: 1 });
      // A's device may publish only under its own id: B's device topic is refused (the connection may be closed for it).
      await aDevice.publishAsync('devices/b-dev/telemetry', JSON.stringify({ mq: `${A_VALUE}-forged` }), { qos: 1 }).catch(() => undefined);
      const bDevice = await connect({ username: bToken });
      await bDevice.publishAsync('devices/b-dev/telemetry', JSON.stringify({ mq: 'b-mqtt-marker' }), { qos: 1 });
      await waitFor(() => got.some((m) => m.includes('b-mqtt-marker')), { what: 'B\'s own device message' });
      for (const m of got) assert.ok(!m.includes(A_VALUE) && !m.includes(A_DEV), `B's application received A's message: ${m}`);
      await waitFor(async () => JSON.parse((await call(t.url, 'GET', '/api/v1/devices/b-dev/latest', c.bKey)).text).latest.mq?.value === 'b-mqtt-marker', { what: 'B\'s MQTT value stored' });
    } finally {
      await Promise.all(clients.map((cl) => cl.endAsync(true).catch(() => undefined)));
    }
  });

  it('the platform admin names the tenant; B cannot reuse it by naming a tenant', async () => {
    const asAdmin = await call(t.url, 'GET', `/api/v1/devices/${A_DEV}?tenant=${A}`, ADMIN_KEY);
    assert.equal(asAdmin.status, 200);
    assert.equal(JSON.parse(asAdmin.text).tenant, A);
    assert.equal((await call(t.url, 'GET', `/api/v1/devices/${A_DEV}`, c.bKey, { headers: { 'x-fluxgate-tenant': A } })).status, 403);
  });
});
