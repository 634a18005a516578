/**
 * @module Store conformance, part two: tenants, projects and API keys (the TenancyStore
 * contract), run inside `runStoreSuite` so every backend checks them with the same fresh
 * store per test. Tenant isolation: tenant B never lists nor revokes tenant A's keys or projects.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isFluxgateError, type ErrorCode } from '../../src/core/errors.js';
import type { ApiKeyRecord, RawMessage, Store } from '../../src/stores/store.js';

const T0 = Date.UTC(2026, 0, 1);
const code = (c: ErrorCode) => (err: unknown) => isFluxgateError(err, c);

function key(over: Partial<ApiKeyRecord> & { id: string }): ApiKeyRecord {
  return { tenant: 'acme', role: 'read', name: `key ${over.id}`, keyHash: `hash-${over.id}`, createdAt: T0, ...over };
}
const hidden = ({ keyHash: _h, ...info }: ApiKeyRecord) => info;

export function tenancyCases(withStore: (fn: (store: Store) => Promise<void>) => Promise<void>): void {
  it('tenants - `default` always exists; create, get, list; TENANT_EXISTS; a new tenant has the project `default`', () => withStore(async (store) => {
    assert.equal((await store.getTenant('default'))?.id, 'default');
    assert.deepEqual((await store.listProjects('default')).map((p) => p.name), ['default']);
    await store.createTenant({ id: 'acme', name: 'Acme Corp', createdAt: T0 });
    await store.createTenant({ id: 'beta', name: 'Beta', createdAt: T0 + 1 });
    await assert.rejects(store.createTenant({ id: 'acme', name: 'again', createdAt: T0 }), code('TENANT_EXISTS'));
    assert.deepEqual(await store.getTenant('acme'), { id: 'acme', name: 'Acme Corp', createdAt: T0, settings: {} });
    assert.equal(await store.getTenant('acm'), undefined);
    assert.deepEqual((await store.listTenants()).map((t) => t.id), ['acme', 'beta', 'default']);
    assert.deepEqual(await store.listProjects('acme'), [{ tenant: 'acme', name: 'default', createdAt: T0 }]);
  }));

  it('projects - create, get, list per tenant; PROJECT_EXISTS; TENANT_NOT_FOUND', () => withStore(async (store) => {
    await store.createTenant({ id: 'acme', name: 'Acme', createdAt: T0 });
    await store.createProject({ tenant: 'acme', name: 'plant', createdAt: T0 + 5 });
    await store.createProject({ tenant: 'acme', name: 'yard', createdAt: T0 + 6 });
    await assert.rejects(store.createProject({ tenant: 'acme', name: 'plant', createdAt: T0 }), code('PROJECT_EXISTS'));
    await assert.rejects(store.createProject({ tenant: 'acme', name: 'default', createdAt: T0 }), code('PROJECT_EXISTS'));
    await assert.rejects(store.createProject({ tenant: 'nobody', name: 'plant', createdAt: T0 }), code('TENANT_NOT_FOUND'));
    assert.deepEqual(await store.getProject('acme', 'plant'), { tenant: 'acme', name: 'plant', createdAt: T0 + 5 });
    assert.equal(await store.getProject('acme', 'nope'), undefined);
    assert.equal(await store.getProject('nobody', 'plant'), undefined);
    assert.deepEqual((await store.listProjects('acme')).map((p) => p.name), ['default', 'plant', 'yard']);
    assert.deepEqual(await store.listProjects('nobody'), []);
  }));

  it('api keys - create, list without hashes, find by hash, revoke; TENANT_NOT_FOUND; a reused secret is refused', () => withStore(async (store) => {
    await store.createTenant({ id: 'acme', name: 'Acme', createdAt: T0 });
    const admin = key({ id: 'k1', role: 'admin' });
    await store.createApiKey(admin);
    await store.createApiKey(key({ id: 'k2', role: 'write' }));
    await store.createApiKey(key({ id: 'k3', tenant: 'default' }));
    await assert.rejects(store.createApiKey(key({ id: 'k4', tenant: 'nobody' })), code('TENANT_NOT_FOUND'));
    await assert.rejects(store.createApiKey(key({ id: 'k5', keyHash: 'hash-k1' })), code('BAD_REQUEST'));
    await assert.rejects(store.createApiKey(key({ id: 'k1', keyHash: 'other' })), code('BAD_REQUEST'));
    const listed = await store.listApiKeys('acme');
    assert.deepEqual(listed, [hidden(admin), hidden(key({ id: 'k2', role: 'write' }))]);
    assert.ok(listed.every((k) => !('keyHash' in k)), 'hashes are never listed');
    assert.deepEqual(await store.findApiKeyByHash('hash-k1'), admin);
    assert.equal(await store.findApiKeyByHash('unknown'), undefined);
    assert.equal(await store.revokeApiKey('acme', 'k1'), true);
    assert.equal(await store.revokeApiKey('acme', 'k1'), false);
    assert.equal(await store.findApiKeyByHash('hash-k1'), undefined);
    assert.deepEqual((await store.listApiKeys('acme')).map((k) => k.id), ['k2']);
  }));

  it('tenants are walls - tenant B never lists nor revokes tenant A\'s keys or projects', () => withStore(async (store) => {
    await store.createTenant({ id: 'acme', name: 'A', createdAt: T0 });
    await store.createTenant({ id: 'beta', name: 'B', createdAt: T0 });
    await store.createProject({ tenant: 'acme', name: 'secret-plant', createdAt: T0 });
    await store.createApiKey(key({ id: 'a-admin', role: 'admin' }));
    await store.createApiKey(key({ id: 'b-admin', tenant: 'beta', role: 'admin' }));
    assert.deepEqual((await store.listApiKeys('beta')).map((k) => k.id), ['b-admin']);
    assert.deepEqual((await store.listProjects('beta')).map((p) => p.name), ['default']);
    assert.equal(await store.getProject('beta', 'secret-plant'), undefined);
    assert.equal(await store.revokeApiKey('beta', 'a-admin'), false);
    // A project of the same name in B is B's own.
    await store.createProject({ tenant: 'beta', name: 'secret-plant', createdAt: T0 + 1 });
    assert.equal((await store.getProject('acme', 'secret-plant'))?.createdAt, T0);
    assert.equal((await store.findApiKeyByHash('hash-a-admin'))?.tenant, 'acme');
    assert.deepEqual((await store.listApiKeys('acme')).map((k) => k.id), ['a-admin']);
    assert.deepEqual((await store.listApiKeys('acm')), []);
  }));

  it('tenant settings - created empty or given; a patch merges fields, null unsets one, name kept unless given; unknown tenant is undefined', () => withStore(async (store) => {
    assert.deepEqual((await store.getTenant('default'))?.settings, {});
    await store.createTenant({ id: 'acme', name: 'Acme', createdAt: T0 });
    await store.createTenant({ id: 'beta', name: 'Beta', createdAt: T0, settings: { maxDevices: 7 } });
    assert.deepEqual((await store.getTenant('beta'))?.settings, { maxDevices: 7 });
    const a1 = await store.updateTenant('acme', { settings: { maxDevices: 10, messagesPerSecond: 2.5, rawRetentionDays: 0 } });
    assert.deepEqual(a1, { id: 'acme', name: 'Acme', createdAt: T0, settings: { maxDevices: 10, messagesPerSecond: 2.5, rawRetentionDays: 0 } });
    const a2 = await store.updateTenant('acme', { name: 'Acme Corp', settings: { messagesPerSecond: null, burstMessages: 50 } });
    assert.deepEqual(a2, { id: 'acme', name: 'Acme Corp', createdAt: T0, settings: { maxDevices: 10, rawRetentionDays: 0, burstMessages: 50 } });
    assert.deepEqual(await store.getTenant('acme'), a2, 'the patch is what a later read sees');
    assert.deepEqual((await store.listTenants()).find((t) => t.id === 'acme'), a2);
    // An empty patch changes nothing; another tenant is untouched.
    assert.deepEqual(await store.updateTenant('acme', {}), a2);
    assert.deepEqual((await store.getTenant('beta'))?.settings, { maxDevices: 7 });
    assert.equal(await store.updateTenant('nobody', { settings: { maxDevices: 1 } }), undefined);
    assert.equal(await store.getTenant('nobody'), undefined, 'a patch never creates a tenant');
  }));

  it('createDevices - all or none: an existing id (listed), a repeated id or mixed tenants create nothing; the device quota is counted in the transaction', () => withStore(async (store) => {
    const dev = (id: string, tenant = 'acme') => ({ tenant, id, project: 'default', tokenHash: `h-${tenant}-${id}`, disabled: false, createdAt: T0 });
    await store.createTenant({ id: 'acme', name: 'A', createdAt: T0 });
    await store.createTenant({ id: 'beta', name: 'B', createdAt: T0 });
    await store.createDevices([]);
    await store.createDevices(Array.from({ length: 500 }, (_, i) => dev(`d${i}`)));
    assert.equal((await store.listDevices('acme', 1000)).items.length, 500);
    assert.deepEqual(await store.findDeviceByTokenHash('h-acme-d499'), dev('d499'));
    const exists = await store.createDevices([dev('n1'), dev('d3'), dev('n2'), dev('d7')]).then(() => undefined, (e) => e);
    assert.ok(isFluxgateError(exists, 'DEVICE_EXISTS'));
    assert.deepEqual([...(exists.details?.ids as string[])].sort(), ['d3', 'd7']);
    assert.equal(await store.getDevice('acme', 'n1'), undefined, 'nothing of a refused batch is created');
    await assert.rejects(store.createDevices([dev('n1'), dev('n1')]), code('BAD_REQUEST'));
    await assert.rejects(store.createDevices([dev('n1'), dev('n2', 'beta')]), code('BAD_REQUEST'));
    await assert.rejects(store.createDevices([dev('n3'), { ...dev('n4'), tokenHash: 'h-acme-d0' }]), code('BAD_REQUEST'));
    assert.equal(await store.getDevice('acme', 'n3'), undefined);
    // The same ids in another tenant are that tenant's own.
    await store.createDevices([dev('d3', 'beta')]);
    // Quota: 500 + 3 > 502 refused whole; 2 fit; then nothing more.
    await assert.rejects(store.createDevices([dev('q1'), dev('q2'), dev('q3')], { maxDevices: 502 }), code('QUOTA_DEVICES'));
    assert.equal(await store.getDevice('acme', 'q1'), undefined);
    await store.createDevices([dev('q1'), dev('q2')], { maxDevices: 502 });
    await assert.rejects(store.createDevices([dev('q3')], { maxDevices: 502 }), code('QUOTA_DEVICES'));
    await store.createDevices([dev('q3')], { maxDevices: 0 });
    assert.equal((await store.listDevices('acme', 1000)).items.length, 503);
    assert.equal((await store.listDevices('beta', 1000)).items.length, 1);
  }));

  it('raw archive by MQTT topic filter - + and # as MQTT means them, literal % _ * ? [ \\ in topics, per tenant, project and time, paged', () => withStore(async (store) => {
    const topics = [
      'mtic/msg/client/realtime/acme/plant/d1/temp', 'mtic/msg/client/realtime/acme/plant/d2/temp', 'mtic/msg/client/realtime/acme/yard/d1/hum',
      'mtic/msg/client/realtime/acme/plant', 'mtic/msgX/client', 'devices/d1/telemetry', 'odd/100%_done', 'odd/1000_done', 'odd/a*b?[c]\\d', 'odd/aXb', '$SYS/x',
    ];
    const msg = (i: number, over: Partial<RawMessage> = {}): RawMessage => ({
      tenant: 'acme', project: topics[i].includes('/yard/') ? 'yard' : 'plant', device: 'd1', topic: topics[i], kind: 'telemetry',
      ts: T0 + i * 1000, receiveTime: T0 + i * 1000, messageId: `m${i}`, payload: Buffer.from(`{}`), ...over,
    });
    await store.writeBatch({ points: [], deadLetters: [], messages: [...topics.map((_, i) => msg(i)), msg(0, { tenant: 'beta', messageId: 'b0' })] });
    const q = async (topic: string, extra: Record<string, unknown> = {}) => (await store.messages({ tenant: 'acme', topic, from: T0, to: T0 + 100_000, limit: 100, ...extra })).items.map((m) => m.topic);
    assert.deepEqual(await q('mtic/msg/client/realtime/acme/+/+/temp'), topics.slice(0, 2));
    assert.deepEqual(await q('mtic/msg/client/realtime/acme/plant/#'), [topics[0], topics[1], topics[3]], '# also matches its parent level');
    assert.deepEqual(await q('mtic/msg/#'), topics.slice(0, 4), 'msg/# is not msgX');
    assert.deepEqual(await q('mtic/msg/client/realtime/acme/plant/d1/temp'), [topics[0]]);
    assert.deepEqual(await q('+/+/telemetry'), ['devices/d1/telemetry']);
    assert.deepEqual(await q('odd/100%_done'), ['odd/100%_done'], '% and _ are literal');
    assert.deepEqual(await q('odd/a*b?[c]\\d'), ['odd/a*b?[c]\\d'], '* ? [ \\ are literal');
    assert.deepEqual(await q('odd/+'), topics.slice(6, 10));
    assert.deepEqual((await q('#')).length, topics.length - 1, '# does not match a $ topic');
    assert.deepEqual(await q('$SYS/#'), ['$SYS/x']);
    assert.deepEqual(await q('mtic/msg/+/realtime/acme/+/+/temp', { project: 'yard' }), []);
    assert.deepEqual(await q('mtic/msg/client/realtime/acme/+/+/+', { project: 'yard' }), [topics[2]]);
    assert.deepEqual(await q('mtic/#', { from: T0 + 1000, to: T0 + 3000 }), topics.slice(1, 3));
    assert.deepEqual(await q('nothing/+'), []);
    // Tenant beta sees only its own message under the same filter.
    assert.deepEqual((await store.messages({ tenant: 'beta', topic: 'mtic/#', from: T0, to: T0 + 100_000, limit: 100 })).items.map((m) => m.messageId), ['b0']);
    // Paging with a filter: pages of 1 walk exactly the matching messages.
    const seen: string[] = [];
    let after: string | undefined;
    do {
      const page = await store.messages({ tenant: 'acme', topic: 'mtic/msg/client/realtime/acme/#', from: T0, to: T0 + 100_000, limit: 1, after });
      seen.push(...page.items.map((m) => m.messageId));
      after = page.next;
    } while (after);
    assert.deepEqual(seen, ['m0', 'm1', 'm2', 'm3']);
  }));
}
