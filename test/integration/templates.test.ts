/**
 * @module Topic templates and gateway credentials against a real node with real MQTT clients
 * (mqtt.js, v5 and 3.1.1): the seed-shaped topic `mtic/msg/client/realtime/<tenant>/<project>/
 * <device>/data` from a configuration template, published by a tenant's gateway key at QoS 1
 * and 2 (payloads including `{}`), read back under the right tenant, project and device (latest
 * state and the raw archive); auto-provisioning on (the device appears) and off (refused,
 * counted, nothing stored); another tenant's gateway and another device refused with nothing
 * stored; REST templates: create, list, get, delete, every problem of a bad one at once, 401.
 * A bad configuration template stops the node from starting, naming it; two nodes sharing a
 * PostgreSQL store: a REST template made on one is taken by the other within the refresh time.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { isFluxgateError } from '../../src/core/errors.js';
import { DEFAULT_REFRESH_MS } from '../../src/templates/index.js';
import { ADMIN_KEY, apiClient, startTestNode, type TestNode } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/core/logger.js';
import { startNode } from '../../src/node.js';

const MTIC = 'mtic/msg/client/realtime';

/** PUBLISH and resolve with the v5 reason code of its PUBACK/PUBREC (0 = accepted). */
async function publish(c: MqttClient, topic: string, payload: string, qos: 1 | 2): Promise<number> {
  try {
    const packet = await c.publishAsync(topic, payload, { qos });
    return (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

function metric(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const inside = line.slice(name.length + 1, line.indexOf('}'));
    if (want.every((w) => inside.split(',').includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('topic templates and gateway credentials', () => {
  let t: TestNode;
  let port: number;
  let acmeAdmin: string;
  let acmeGateway: string;
  let betaGateway: string;
  const clients: MqttClient[] = [];
  const acme = () => apiClient(t.url, acmeAdmin);
  const connect = async (username: string, password: string | undefined, protocolVersion: 4 | 5 = 5) => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username, password, protocolVersion, reconnectPeriod: 0, clean: true });
    clients.push(c);
    return c;
  };
  const metrics = async () => (await fetch(`${t.url}/metrics`)).text();
  const since = Date.now() - 60_000;
  const archive = async (tenantKey: string, query: string) => (await apiClient(t.url, tenantKey)('GET', `/api/v1/messages?from=${since}&limit=1000&${query}`)).body.items as Array<{ project: string; device: string; topic: string; payload: string; kind: string }>;

  before(async () => {
    t = await startTestNode({
      templates: [
        { id: 'mtic', pattern: `${MTIC}/{tenant}/{project}/{device}/#`, autoProvision: true },
        { id: 'strict', pattern: 'strict/{tenant}/{project}/{device}' },
      ],
    });
    port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
    const a = await t.api('POST', '/api/v1/tenants', { id: 'acme' });
    const b = await t.api('POST', '/api/v1/tenants', { id: 'beta' });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    acmeAdmin = a.body.key.key;
    acmeGateway = (await acme()('POST', '/api/v1/keys', { role: 'write', name: 'gateway' })).body.key;
    betaGateway = (await apiClient(t.url, b.body.key.key)('POST', '/api/v1/keys', { role: 'write', name: 'gateway' })).body.key;
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await t?.stop();
  });

  it('a gateway key publishes the seed-shaped topic at QoS 1 and 2 (payloads include {}): stored under its tenant, project and device, the device registered (autoProvision)', async () => {
    const gw = await connect('gateway', acmeGateway);
    const topic = `${MTIC}/acme/plant-1/pump-7/data`;
    assert.equal(await publish(gw, topic, JSON.stringify({ temp: 21.5, ts: Date.now() - 2000 }), 1), 0);
    assert.equal(await publish(gw, topic, '{}', 2), 0);
    assert.equal(await publish(gw, topic, JSON.stringify({ temp: 22.5, ts: Date.now() - 1000 }), 2), 0);
    assert.equal(await publish(gw, `${MTIC}/acme/plant-1/pump-8/data`, '{}', 1), 0);

    const latest = await waitFor(async () => {
      const r = await acme()('GET', '/api/v1/devices/pump-7/latest');
      return r.status === 200 && r.body.latest?.temp?.value === 22.5 ? r.body : undefined;
    }, { what: 'latest temp of pump-7 under acme' }).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify((await acme()('GET', '/api/v1/devices/pump-7/latest')).body)}`);
    });
    assert.ok(latest);
    const msgs = await waitFor(async () => {
      const items = await archive(acmeAdmin, 'project=plant-1');
      return items.length >= 4 ? items : undefined;
    }, { what: '4 archived messages in acme/plant-1' });
    assert.equal(msgs.length, 4);
    assert.deepEqual(msgs.filter((m) => m.device === 'pump-7').map((m) => m.payload).filter((p) => p === '{}'), ['{}']);
    assert.ok(msgs.every((m) => m.project === 'plant-1' && m.kind === 'telemetry' && m.topic.startsWith(`${MTIC}/acme/plant-1/`)));
    // The devices were registered in tenant acme, project plant-1 (created with them).
    const devices = (await acme()('GET', '/api/v1/devices')).body.items as Array<{ id: string; project: string }>;
    assert.deepEqual(devices.map((d) => [d.id, d.project]).sort(), [['pump-7', 'plant-1'], ['pump-8', 'plant-1']]);
    assert.ok(((await acme()('GET', '/api/v1/projects')).body.items as Array<{ name: string }>).some((p) => p.name === 'plant-1'));
    assert.ok(metric(await metrics(), 'fluxgate_template_provisioned_total', { tenant: 'acme' }) >= 2);
    // Nothing under the default tenant.
    assert.equal((await archive(ADMIN_KEY, 'device=pump-7')).length, 0);
  });

  it('autoProvision off: an unknown device is refused (0x87), counted, and nothing is stored; a registered one is taken', async () => {
    const gw = await connect('gateway', acmeGateway);
    const before = metric(await metrics(), 'fluxgate_template_refused_total', { tenant: 'acme', reason: 'unknown_device' });
    assert.equal(await publish(gw, 'strict/acme/default/ghost', '{"v":1}', 1), 0x87);
    assert.equal(await publish(gw, 'strict/acme/default/ghost', '{}', 2), 0x87);
    assert.equal(metric(await metrics(), 'fluxgate_template_refused_total', { tenant: 'acme', reason: 'unknown_device' }), before + 2);
    assert.equal((await acme()('GET', '/api/v1/devices/ghost')).status, 404);
    // A device registered over REST is taken under the same template.
    assert.equal((await acme()('POST', '/api/v1/devices', { id: 'known-1' })).status, 201);
    assert.equal(await publish(gw, 'strict/acme/default/known-1', '{"v":7}', 1), 0);
    await waitFor(async () => (await archive(acmeAdmin, 'device=known-1')).length === 1, { what: 'known-1 archived' });
    assert.equal((await archive(acmeAdmin, 'device=ghost')).length, 0);
  });

  it('tenant B\'s gateway publishing into tenant A\'s topic is refused and counted; nothing is stored in A (v5 and 3.1.1)', async () => {
    const before = (await archive(acmeAdmin, 'project=plant-1')).length;
    const beta5 = await connect('gateway', betaGateway);
    assert.equal(await publish(beta5, `${MTIC}/acme/plant-1/pump-7/data`, '{"temp":-99}', 1), 0x87);
    assert.equal(await publish(beta5, `${MTIC}/acme/plant-1/intruder/data`, '{}', 2), 0x87);
    // 3.1.1 has no refusal code: acknowledged and dropped.
    const beta4 = await connect('gateway', betaGateway, 4);
    assert.equal(await publish(beta4, `${MTIC}/acme/plant-1/pump-7/data`, '{"temp":-98}', 1), 0);
    assert.equal(metric(await metrics(), 'fluxgate_template_refused_total', { tenant: 'beta', reason: 'other_tenant' }), 3);
    // Its own tenant's topic still works (and lands in beta, not acme).
    assert.equal(await publish(beta5, `${MTIC}/beta/line/press-1/data`, '{"p":3}', 1), 0);
    await waitFor(async () => {
      const r = await apiClient(t.url, ADMIN_KEY)('GET', `/api/v1/messages?tenant=beta&from=${since}&device=press-1`);
      return r.body.items?.length === 1;
    }, { what: 'beta press-1 archived' });
    assert.equal((await acme()('GET', '/api/v1/devices/pump-7/latest')).body.latest.temp.value, 22.5);
    assert.equal((await archive(acmeAdmin, 'project=plant-1')).length, before);
    assert.equal((await acme()('GET', '/api/v1/devices/intruder')).status, 404);
  });

  it('a device connection publishes under a template only for itself', async () => {
    const made = await acme()('POST', '/api/v1/devices', { id: 'dev-a' });
    assert.equal(made.status, 201);
    const dev = await connect(made.body.token, undefined);
    assert.equal(await publish(dev, `${MTIC}/acme/plant-1/pump-7/data`, '{"temp":-1}', 1), 0x87);
    assert.equal(await publish(dev, `${MTIC}/beta/default/dev-a/data`, '{"temp":-2}', 1), 0x87);
    assert.equal(await publish(dev, `${MTIC}/acme/default/dev-a/data`, '{"temp":5}', 1), 0);
    const text = await metrics();
    assert.equal(metric(text, 'fluxgate_template_refused_total', { tenant: 'acme', reason: 'other_device' }), 1);
    assert.equal(metric(text, 'fluxgate_template_refused_total', { tenant: 'acme', reason: 'other_tenant' }), 1);
    await waitFor(async () => (await archive(acmeAdmin, 'device=dev-a')).length === 1, { what: 'dev-a archived' });
    assert.ok((await archive(acmeAdmin, 'device=pump-7')).every((m) => !m.payload.includes('-1')));
  });

  it('REST templates: a tenant\'s template maps into it; bad ones list every problem; duplicates 409; {tenant} refused; 401 without a key; delete stops it', async () => {
    const api = acme();
    assert.equal((await fetch(`${t.url}/api/v1/templates`)).status, 401);
    assert.equal((await fetch(`${t.url}/api/v1/templates`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401);
    const bad = await api('POST', '/api/v1/templates', { id: 'bad id', pattern: 'a/#/{nope}', kind: 'sideways', autoProvision: 'maybe' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'TEMPLATE_INVALID');
    for (const field of ['id:', 'pattern:', 'kind:', 'autoProvision:']) assert.ok(bad.body.message.includes(field), `${field} in ${bad.body.message}`);
    assert.ok(bad.body.message.includes('must capture {device}'));
    const withTenant = await api('POST', '/api/v1/templates', { id: 'x', pattern: 'x/{tenant}/{device}' });
    assert.equal(withTenant.status, 400);
    assert.match(withTenant.body.message, /\{tenant\}/);
    // The platform admin acting on acme may not capture {tenant} either.
    assert.equal((await t.api('POST', '/api/v1/templates?tenant=acme', { id: 'x', pattern: 'x/{tenant}/{device}' })).status, 400);
    const notArray = await api('POST', '/api/v1/templates', [1, 2]);
    assert.equal(notArray.status, 400);

    const created = await api('POST', '/api/v1/templates', { id: 'site', pattern: 'site/{project}/{device}/{kind}', kinds: { rt: 'telemetry' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual([created.body.id, created.body.tenant, created.body.source], ['site', 'acme', 'rest']);
    assert.equal((await api('POST', '/api/v1/templates', { id: 'site', pattern: 'other/{device}' })).status, 409);
    assert.equal((await api('POST', '/api/v1/templates', { id: 'mtic', pattern: 'other/{device}' })).body.code, 'TEMPLATE_EXISTS');
    const listed = (await api('GET', '/api/v1/templates')).body.items as Array<{ id: string; source: string }>;
    assert.deepEqual(listed.map((x) => [x.id, x.source]), [['site', 'rest'], ['mtic', 'config'], ['strict', 'config']]);
    assert.equal((await api('GET', '/api/v1/templates/site')).body.pattern, 'site/{project}/{device}/{kind}');
    // Beta sees neither acme's template nor may it name acme.
    const betaKey = betaGateway;
    assert.equal((await apiClient(t.url, betaKey)('GET', '/api/v1/templates/site')).status, 404);
    assert.ok(!JSON.stringify((await apiClient(t.url, betaKey)('GET', '/api/v1/templates')).body).includes('site/'));
    // A write key is not enough to change templates.
    assert.equal((await apiClient(t.url, acmeGateway)('POST', '/api/v1/templates', { id: 'w', pattern: 'w/{device}' })).status, 403);

    // The template works at once for acme's gateway; for beta's gateway the topic is no template's.
    const gw = await connect('gateway', acmeGateway);
    assert.equal(await publish(gw, 'site/default/known-1/rt', '{"rt":1}', 1), 0);
    await waitFor(async () => (await archive(acmeAdmin, 'device=known-1')).some((m) => m.topic === 'site/default/known-1/rt'), { what: 'site message archived' });
    const beta = await connect('gateway', betaGateway);
    assert.equal(await publish(beta, 'site/default/known-1/rt', '{"rt":2}', 1), 0);

    assert.equal((await api('DELETE', '/api/v1/templates/mtic')).status, 404);
    assert.equal((await api('DELETE', '/api/v1/templates/site')).status, 204);
    assert.equal((await api('GET', '/api/v1/templates/site')).status, 404);
    // Deleted: the same topic is only routed now (not logged).
    assert.equal(await publish(gw, 'site/default/known-1/rt', '{"rt":3}', 1), 0);
    const known = await archive(acmeAdmin, 'device=known-1');
    assert.deepEqual(known.filter((m) => m.topic.startsWith('site/')).map((m) => m.payload), ['{"rt":1}']);
  });
});

it('a bad template in the configuration stops the node from starting, naming templates[i].field', async () => {
  const tmp = await tempDir('fluxgate-templates-');
  try {
    const config = loadConfig({ env: {}, overrides: {
      dataDir: tmp.dir, adminKey: ADMIN_KEY, logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 },
      templates: [{ id: 'ok', pattern: 'a/{device}' }, { id: 'ok', pattern: 'devices/{nope}' }],
    } });
    await assert.rejects(startNode(config, { logger: createLogger('silent') }), (err: unknown) => {
      const m = (err as Error).message;
      return isFluxgateError(err, 'CONFIG_INVALID') && m.includes('templates[1].id') && m.includes('templates[1].pattern') && m.includes('{nope}') && m.includes('native layout');
    });
  } finally {
    await tmp.cleanup();
  }
});

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

it('two nodes sharing a PostgreSQL store: a REST template made on one is taken by the other\'s gateways within the refresh time', async (ctx) => {
  const probe = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try { await probe.connect(); } catch (err) {
    if (process.env.CI) throw err;
    return ctx.skip(`PostgreSQL at ${PG_URL} does not answer: ${(err as Error).message}`);
  }
  const schema = `fluxgate_tmpl_${randomBytes(4).toString('hex')}`;
  const nodes: TestNode[] = [];
  let client: MqttClient | undefined;
  try {
    const store = { backend: PG_URL, schema };
    nodes.push(await startTestNode({ store }));
    nodes.push(await startTestNode({ store }));
    const [one, two] = nodes;
    const acmeAdmin = (await one.api('POST', '/api/v1/tenants', { id: 'acme' })).body.key.key as string;
    const gateway = (await apiClient(one.url, acmeAdmin)('POST', '/api/v1/keys', { role: 'write' })).body.key as string;
    const port = two.node.addresses.find((a) => a.name === 'mqtt')!.port;
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: 'gw', password: gateway, protocolVersion: 5, reconnectPeriod: 0 });
    // Not a template's topic on node two yet: only routed, nothing stored.
    assert.equal(await publish(client, 'plant/default/m-1', '{"v":0}', 1), 0);
    const made = await apiClient(one.url, acmeAdmin)('POST', '/api/v1/templates', { id: 'plant', pattern: 'plant/{project}/{device}', autoProvision: true });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const start = Date.now();
    await waitFor(async () => (await publish(client!, 'plant/default/m-1', `{"v":${Date.now()}}`, 1)) === 0
      && (await apiClient(two.url, acmeAdmin)('GET', '/api/v1/devices/m-1')).status === 200, { timeoutMs: DEFAULT_REFRESH_MS * 3, intervalMs: 200, what: 'node two takes the template' });
    assert.ok(Date.now() - start <= DEFAULT_REFRESH_MS * 2 + 1000, `took ${Date.now() - start} ms`);
    const msgs = await waitFor(async () => {
      const items = (await apiClient(one.url, acmeAdmin)('GET', `/api/v1/messages?device=m-1&from=${start - 60_000}`)).body.items as Array<{ payload: string }>;
      return items.length > 0 ? items : undefined;
    }, { what: 'm-1 archived' });
    assert.ok(msgs.every((m) => m.payload !== '{"v":0}'), 'the message sent before the template existed was not stored');
  } finally {
    await client?.endAsync(true).catch(() => undefined);
    for (const n of nodes) await n.stop().catch(() => undefined);
    await probe.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await probe.end();
  }
});
