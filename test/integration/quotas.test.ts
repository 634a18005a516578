/**
 * @module Tenant settings and quotas over REST, HTTP ingest and MQTT: GET/PATCH
 * /api/v1/tenants/:id (platform admin writes; a tenant's own admin key reads), effective
 * settings from the node's defaults, and the quotas they set (device count, message rate,
 * payload size), refused with the right code, counted per tenant, and never touching
 * another tenant.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiClient, startTestNode, type TestNode } from '../helpers/node.js';

describe('tenant settings over REST', () => {
  let t: TestNode;
  let acmeKey: string;
  let betaKey: string;

  before(async () => {
    t = await startTestNode({ tenants: { defaultMaxDevices: 1000, defaultRawRetentionDays: 5 } });
    acmeKey = (await t.api('POST', '/api/v1/tenants', { id: 'acme' })).body.key.key;
    betaKey = (await t.api('POST', '/api/v1/tenants', { id: 'beta' })).body.key.key;
  });
  after(() => t?.stop());

  it('a new tenant has no settings of its own; effective ones are the node defaults', async () => {
    const r = await t.api('GET', '/api/v1/tenants/acme');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.settings, {});
    assert.deepEqual(r.body.effective, {
      maxDevices: 1000, messagesPerSecond: 0, burstMessages: 0, maxPayloadBytes: 0, rawRetentionDays: 5, rollup1mRetentionDays: 30, rollup1hRetentionDays: 365,
    });
  });

  it('PATCH sets and unsets settings (null = node default), and a read after sees them', async () => {
    const p = await t.api('PATCH', '/api/v1/tenants/acme', { settings: { maxDevices: 3, messagesPerSecond: 10, rawRetentionDays: 0 } });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(p.body.settings, { maxDevices: 3, messagesPerSecond: 10, rawRetentionDays: 0 });
    assert.equal(p.body.effective.burstMessages, 10, 'burst defaults to one second of the rate');
    const p2 = await t.api('PATCH', '/api/v1/tenants/acme', { name: 'Acme Corp', settings: { messagesPerSecond: null, burstMessages: 20 } });
    assert.equal(p2.status, 200);
    const r = await t.api('GET', '/api/v1/tenants/acme');
    assert.equal(r.body.name, 'Acme Corp');
    assert.deepEqual(r.body.settings, { maxDevices: 3, rawRetentionDays: 0, burstMessages: 20 });
    assert.equal(r.body.effective.messagesPerSecond, 0);
    assert.equal(r.body.effective.rawRetentionDays, 0);
    // beta is untouched.
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/beta')).body.settings, {});
  });

  it('malformed patches are 400 naming the field, and change nothing', async () => {
    const before = (await t.api('GET', '/api/v1/tenants/acme')).body;
    for (const body of [{ settings: { maxDevices: -1 } }, { settings: { maxDevices: 1.5 } }, { settings: { maxDevices: 'ten' } }, { settings: { colour: 1 } }, { other: 1 }, { settings: { messagesPerSecond: 1e12 } }]) {
      const r = await t.api('PATCH', '/api/v1/tenants/acme', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'BAD_REQUEST');
    }
    const bad = await fetch(`${t.url}/api/v1/tenants/acme`, { method: 'PATCH', headers: { authorization: `Bearer ${(t.node.adminKey)}`, 'content-type': 'application/json' }, body: '{"settings": {' });
    assert.equal(bad.status, 400);
    assert.deepEqual((await t.api('GET', '/api/v1/tenants/acme')).body, before);
  });

  it('only the platform admin patches; a tenant admin reads its own tenant only; unknown tenant is 404; no key is 401', async () => {
    const asAcme = apiClient(t.url, acmeKey);
    assert.equal((await asAcme('GET', '/api/v1/tenants/acme')).status, 200);
    assert.equal((await asAcme('PATCH', '/api/v1/tenants/acme', { settings: { maxDevices: 100000 } })).status, 403);
    const other = await asAcme('GET', '/api/v1/tenants/beta');
    assert.equal(other.status, 403);
    assert.ok(!JSON.stringify(other.body).includes('"settings"'));
    const readKey = (await asAcme('POST', '/api/v1/keys', { role: 'read' })).body.key;
    assert.equal((await apiClient(t.url, readKey)('GET', '/api/v1/tenants/acme')).status, 403, 'a read key may not read tenant settings');
    assert.equal((await t.api('GET', '/api/v1/tenants/nobody')).status, 404);
    assert.equal((await t.api('PATCH', '/api/v1/tenants/nobody', { settings: { maxDevices: 1 } })).status, 404);
    assert.equal((await fetch(`${t.url}/api/v1/tenants/acme`)).status, 401);
    assert.equal((await apiClient(t.url, betaKey)('PATCH', '/api/v1/tenants/beta', { settings: { maxDevices: 0 } })).status, 403);
  });
});
