import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FluxgateError, isFluxgateError } from '../core/errors.js';
import { Metrics } from '../observability/metrics.js';
import type { DeviceRecord, ProjectRecord, StoredObject } from '../stores/store.js';
import { TemplateRegistry, configTemplateProblems, type TemplateRegistryOptions } from './registry.js';

/** Just the store calls the registry makes, in memory, counting device reads. */
function fakeStore(tenants = ['acme', 'beta']) {
  const objects = new Map<string, StoredObject>();
  const devices = new Map<string, DeviceRecord>();
  const projects = new Map<string, ProjectRecord>();
  for (const t of tenants) projects.set(`${t}/default`, { tenant: t, name: 'default', createdAt: 0 });
  const k = (...p: string[]) => p.join('/');
  const s = {
    deviceReads: 0,
    devices,
    projects,
    async listObjects(kind: string, tenant?: string) {
      return [...objects.values()].filter((o) => o.kind === kind && (tenant === undefined || o.tenant === tenant)).sort((a, b) => (k(a.tenant, a.id) < k(b.tenant, b.id) ? -1 : 1));
    },
    async getObject(kind: string, tenant: string, id: string) { return objects.get(k(kind, tenant, id)); },
    async putObject(o: StoredObject) { objects.set(k(o.kind, o.tenant, o.id), structuredClone(o)); },
    async deleteObject(kind: string, tenant: string, id: string) { return objects.delete(k(kind, tenant, id)); },
    async getDevice(tenant: string, id: string) { s.deviceReads++; return devices.get(k(tenant, id)); },
    async createDevices(list: DeviceRecord[], opts: { maxDevices?: number } = {}) {
      for (const d of list) if (devices.has(k(d.tenant, d.id))) throw new FluxgateError('DEVICE_EXISTS', 'exists');
      const have = [...devices.values()].filter((d) => d.tenant === list[0]?.tenant).length;
      if (opts.maxDevices && have + list.length > opts.maxDevices) throw new FluxgateError('QUOTA_DEVICES', 'over quota');
      for (const d of list) devices.set(k(d.tenant, d.id), d);
    },
    async getProject(tenant: string, name: string) { return projects.get(k(tenant, name)); },
    async createProject(p: ProjectRecord) {
      if (!tenants.includes(p.tenant)) throw new FluxgateError('TENANT_NOT_FOUND', 'no tenant');
      projects.set(k(p.tenant, p.name), p);
    },
  };
  return s;
}

const MTIC = { id: 'mtic', pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#' };

async function registry(over: Partial<TemplateRegistryOptions> = {}, store = fakeStore()) {
  const metrics = new Metrics({ defaultMetrics: false });
  const r = new TemplateRegistry({ store, config: [MTIC], metrics, refreshMs: 60_000, ...over });
  await r.open();
  const refused = async () => (await metrics.registry.getSingleMetricAsString('fluxgate_template_refused_total'));
  return { r, store, metrics, refused };
}

test('configuration templates: every problem named templates[i].field; duplicate ids refused', () => {
  const p = configTemplateProblems([MTIC, { id: 'mtic', pattern: 'a/{x}' }]);
  assert.ok(p.some((s) => s.startsWith('templates[1].id:')));
  assert.ok(p.some((s) => s.startsWith('templates[1].pattern:') && s.includes('{x}')));
  assert.throws(() => new TemplateRegistry({ store: fakeStore(), config: [{ id: 'x', pattern: 'nothing' }] }), (e: unknown) => isFluxgateError(e, 'CONFIG_INVALID') && /templates\[0\]\.pattern/.test((e as Error).message));
});

test('resolve: the caller\'s tenant must be the topic\'s; a device only for itself; no caller → platform templates only', async () => {
  const { r } = await registry();
  const topic = 'mtic/msg/client/realtime/acme/plant/pump-1/data';
  assert.equal(r.resolve('other/topic', { tenant: 'acme' }), undefined);
  const ok = r.resolve(topic, { tenant: 'acme' })!;
  assert.deepEqual([ok.tenant, ok.project, ok.device, ok.kind, ok.refused], ['acme', 'plant', 'pump-1', 'telemetry', undefined]);
  assert.equal(r.resolve(topic, { tenant: 'beta' })?.refused, 'other_tenant');
  assert.equal(r.resolve(topic, { tenant: 'acme', device: 'pump-2' })?.refused, 'other_device');
  assert.equal(r.resolve(topic, { tenant: 'acme', device: 'pump-1', project: 'yard' })?.refused, 'project_mismatch');
  assert.equal(r.resolve(topic, { tenant: 'acme', device: 'pump-1', project: 'plant' })?.refused, undefined);
  assert.equal(r.resolve(topic)?.tenant, 'acme');
  assert.equal(r.platformTemplate('mtic')?.template.pattern, MTIC.pattern);
  assert.equal(r.platformTemplate('nope'), undefined);
  r.close();
});

test('REST templates: their tenant only, {tenant} refused with every problem listed, duplicate ids 409, changes apply at once', async () => {
  const { r } = await registry();
  const v0 = r.version;
  await r.create('acme', { id: 'gw', pattern: 'gw/{project}/{device}', autoProvision: true });
  assert.ok(r.version > v0);
  assert.equal(r.resolve('gw/p/d1', { tenant: 'acme' })?.tenant, 'acme');
  // Another tenant's gateway never uses acme's template.
  assert.equal(r.resolve('gw/p/d1', { tenant: 'beta' }), undefined);
  assert.equal(r.resolve('gw/p/d1'), undefined);
  await assert.rejects(r.create('acme', { id: 'gw', pattern: 'other/{device}' }), (e: unknown) => isFluxgateError(e, 'TEMPLATE_EXISTS'));
  await assert.rejects(r.create('acme', { id: 'mtic', pattern: 'other/{device}' }), (e: unknown) => isFluxgateError(e, 'TEMPLATE_EXISTS'));
  await assert.rejects(r.create('beta', { id: 'bad id', pattern: 'x/{tenant}/{nope}', tenant: 'acme' }), (e: unknown) => {
    const problems = (e as FluxgateError).details?.problems as string[];
    return isFluxgateError(e, 'TEMPLATE_INVALID') && problems.some((p) => p.startsWith('id:')) && problems.some((p) => p.includes('{nope}'))
      && problems.some((p) => p.includes('{tenant} may only')) && problems.some((p) => p.startsWith('tenant:')) && problems.some((p) => p.includes('must capture {device}'));
  });
  assert.deepEqual((await r.list('acme')).map((t) => [t.id, t.source]), [['gw', 'rest'], ['mtic', 'config']]);
  assert.deepEqual((await r.list('beta')).map((t) => t.id), ['mtic']);
  assert.equal(await r.get('beta', 'gw'), undefined);
  assert.equal(await r.delete('beta', 'gw'), false);
  assert.equal(await r.delete('acme', 'gw'), true);
  assert.equal(r.resolve('gw/p/d1', { tenant: 'acme' }), undefined);
  r.close();
});

test('another node\'s REST change is seen after refresh', async () => {
  const store = fakeStore();
  const a = await registry({}, store);
  const b = await registry({}, store);
  await a.r.create('acme', { id: 'gw', pattern: 'gw/{device}' });
  assert.equal(b.r.resolve('gw/d', { tenant: 'acme' }), undefined);
  const v = b.r.version;
  await b.r.refresh();
  assert.equal(b.r.resolve('gw/d', { tenant: 'acme' })?.device, 'd');
  assert.ok(b.r.version > v);
  await b.r.refresh();
  assert.equal(b.r.version, v + 1, 'an unchanged store does not bump the version');
  a.r.close();
  b.r.close();
});

test('admitDevice: known, disabled, project mismatch, unknown refused or provisioned (project created), counted; lookups cached', async () => {
  const { r, store, refused } = await registry();
  store.devices.set('acme/pump-1', { tenant: 'acme', id: 'pump-1', project: 'plant', tokenHash: 'h', disabled: false, createdAt: 0 });
  store.devices.set('acme/off', { tenant: 'acme', id: 'off', project: 'plant', tokenHash: 'h2', disabled: true, createdAt: 0 });
  const t = (topic: string) => r.resolve(topic, { tenant: 'acme' })!;
  assert.deepEqual(await r.admitDevice(t('mtic/msg/client/realtime/acme/plant/pump-1/x')), { outcome: 'known', project: 'plant' });
  assert.equal(store.deviceReads, 1);
  assert.deepEqual(r.admitCached(t('mtic/msg/client/realtime/acme/plant/pump-1/x')), { outcome: 'known', project: 'plant' });
  assert.equal(store.deviceReads, 1);
  assert.deepEqual(await r.admitDevice(t('mtic/msg/client/realtime/acme/yard/pump-1/x')), { outcome: 'refused', reason: 'project_mismatch' });
  assert.deepEqual(await r.admitDevice(t('mtic/msg/client/realtime/acme/plant/off/x')), { outcome: 'refused', reason: 'device_disabled' });
  // Unknown device, no autoProvision: refused; a flood costs one store read.
  const unknown = await Promise.all([1, 2, 3].map(() => r.admitDevice(t('mtic/msg/client/realtime/acme/plant/ghost/x'))));
  assert.deepEqual(unknown.map((a) => a.outcome), ['refused', 'refused', 'refused']);
  assert.equal(r.admitCached(t('mtic/msg/client/realtime/acme/plant/ghost/x'))?.outcome, 'refused');
  assert.equal(store.deviceReads, 3);
  assert.equal(store.devices.has('acme/ghost'), false);
  const text = await refused();
  assert.match(text, /fluxgate_template_refused_total\{tenant="acme",reason="unknown_device"\} 4/);
  assert.match(text, /reason="project_mismatch"\} 1/);
  assert.match(text, /reason="device_disabled"\} 1/);

  await r.create('acme', { id: 'auto', pattern: 'auto/{project}/{device}', autoProvision: true });
  const many = await Promise.all([1, 2, 3].map(() => r.admitDevice(t('auto/newproj/fresh'))));
  assert.deepEqual(many, [1, 2, 3].map(() => ({ outcome: 'provisioned', project: 'newproj' })));
  assert.deepEqual(await r.admitDevice(t('auto/newproj/fresh')), { outcome: 'known', project: 'newproj' });
  assert.equal(store.devices.get('acme/fresh')?.project, 'newproj');
  assert.ok(store.projects.has('acme/newproj'));
  assert.equal(await r.ensureDevice('acme', 'newproj', 'fresh', { id: 'auto', pattern: 'auto/{project}/{device}' }), 'known');
  assert.equal(await r.ensureDevice('acme', undefined, 'other', { id: 'auto', pattern: 'auto/{device}', autoProvision: true }), 'provisioned');
  assert.equal(store.devices.get('acme/other')?.project, 'default');
  // forgetDevice: a disable made on this node applies at once.
  store.devices.set('acme/fresh', { ...store.devices.get('acme/fresh')!, disabled: true });
  r.forgetDevice('acme', 'fresh');
  assert.deepEqual(await r.admitDevice(t('auto/newproj/fresh')), { outcome: 'refused', reason: 'device_disabled' });
  r.close();
});

test('a platform template with {tenant} used without caller cannot provision into a tenant that does not exist', async () => {
  const { r, store } = await registry({ config: [{ ...MTIC, autoProvision: true }] });
  const t = r.resolve('mtic/msg/client/realtime/nobody/p/d/x')!;
  assert.deepEqual(await r.admitDevice(t), { outcome: 'refused', reason: 'unknown_tenant' });
  assert.equal(store.devices.size, 0);
  r.close();
});

test('auto-provisioning holds to the tenant\'s device quota: past maxDevices it is refused (quota_devices) and reported', async () => {
  const quotaRefusals: string[] = [];
  const { r, store, refused } = await registry({ config: [{ ...MTIC, autoProvision: true }], maxDevices: (t) => (t === 'acme' ? 2 : 0), onDeviceQuota: (t) => quotaRefusals.push(t) });
  const admit = (d: string) => r.admitDevice(r.resolve(`mtic/msg/client/realtime/acme/p/${d}/x`)!);
  assert.equal((await admit('d1')).outcome, 'provisioned');
  assert.equal((await admit('d2')).outcome, 'provisioned');
  assert.deepEqual(await admit('d3'), { outcome: 'refused', reason: 'quota_devices' });
  assert.equal(store.devices.has('acme/d3'), false);
  assert.deepEqual(quotaRefusals, ['acme']);
  assert.match(await refused(), /reason="quota_devices"\} 1/);
  // Another tenant without a quota is not held back.
  assert.equal((await r.admitDevice(r.resolve('mtic/msg/client/realtime/beta/p/b1/x')!)).outcome, 'provisioned');
  r.close();
});
