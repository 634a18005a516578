/**
 * @module Batched auto-provisioning over the real embedded store: a burst of single-device
 * creations becomes a few createDevices calls, and every caller still gets its own device's
 * outcome when the batch meets existing devices or the tenant's device quota.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isFluxgateError } from '../core/errors.js';
import { EmbeddedStore } from '../stores/embedded/index.js';
import type { DeviceRecord } from '../stores/store.js';
import { tempDir } from '../../test/helpers/wait.js';
import { DeviceCreationBatcher } from './provision-batch.js';

let store: EmbeddedStore;
let cleanup: () => Promise<void>;
before(async () => {
  const t = await tempDir('fluxgate-provision-batch-');
  cleanup = t.cleanup;
  store = new EmbeddedStore({ dir: t.dir });
  await store.open();
});
after(async () => {
  await store.close();
  await cleanup();
});

const device = (tenant: string, id: string): DeviceRecord => ({ tenant, id, project: 'default', tokenHash: `${tenant}-${id}`, disabled: false, createdAt: 1 });

/** The store, counting createDevices calls and their sizes. */
function counted() {
  const calls: number[] = [];
  return {
    calls,
    createDevices: (list: DeviceRecord[], opts?: { maxDevices?: number }) => { calls.push(list.length); return store.createDevices(list, opts); },
  };
}

async function countDevices(tenant: string): Promise<number> {
  let n = 0;
  let after: string | undefined;
  do {
    const page = await store.listDevices(tenant, 1000, after);
    n += page.items.length;
    after = page.next;
  } while (after);
  return n;
}

test('a burst of 1,200 creations is written in batches of at most 500, every device stored', async () => {
  const s = counted();
  const batcher = new DeviceCreationBatcher(s, () => 0, 500);
  await Promise.all(Array.from({ length: 1200 }, (_, i) => batcher.create(device('burst', `d${i}`))));
  assert.equal(await countDevices('burst'), 1200);
  assert.ok(s.calls.length <= 4, `createDevices calls: ${s.calls.join(', ')}`);
  assert.ok(Math.max(...s.calls) <= 500);
  assert.equal(s.calls.reduce((a, b) => a + b, 0), 1200);
});

test('devices that exist already get DEVICE_EXISTS; the rest of their batch is created', async () => {
  await store.createDevices([device('exists', 'd3'), device('exists', 'd7')]);
  const batcher = new DeviceCreationBatcher(counted(), () => 0);
  const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => batcher.create(device('exists', `d${i}`))));
  const refused = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [i] : []));
  assert.deepEqual(refused, [3, 7]);
  for (const i of refused) assert.ok(isFluxgateError((outcomes[i] as PromiseRejectedResult).reason, 'DEVICE_EXISTS'));
  assert.equal(await countDevices('exists'), 10);
});

test('past the device quota exactly as many as fit are created, in arrival order; the others get QUOTA_DEVICES', async () => {
  await store.createDevices([device('quota', 'old')]);
  const batcher = new DeviceCreationBatcher(counted(), (tenant) => (tenant === 'quota' ? 10 : 0));
  const outcomes = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => batcher.create(device('quota', `d${i}`))));
  const created = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
  assert.deepEqual(created, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  for (const o of outcomes.slice(9)) assert.ok(o.status === 'rejected' && isFluxgateError(o.reason, 'QUOTA_DEVICES'));
  assert.equal(await countDevices('quota'), 10);
});

test('tenants are batched apart: one tenant over its quota does not refuse another\'s devices', async () => {
  const s = counted();
  const batcher = new DeviceCreationBatcher(s, (tenant) => (tenant === 'small' ? 2 : 0));
  const outcomes = await Promise.allSettled([
    ...Array.from({ length: 5 }, (_, i) => batcher.create(device('small', `s${i}`))),
    ...Array.from({ length: 5 }, (_, i) => batcher.create(device('large', `l${i}`))),
  ]);
  assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 7);
  assert.equal(await countDevices('small'), 2);
  assert.equal(await countDevices('large'), 5);
});
