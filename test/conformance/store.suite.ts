/**
 * @module The Store conformance suite: what every backend (embedded, PostgreSQL) must do,
 * checked only through the Store contract with data read back. A backend runs it in a few
 * lines: `runStoreSuite({ name, create })`, where `create` returns an unopened store and a
 * `cleanup` that removes what it made; the suite opens and closes the store itself, one fresh
 * store per test, and cleans up even when a test fails.
 *
 * Conventions the suite fixes for every backend: time ranges are half-open (from ≤ ts < to);
 * aggregate buckets start at multiples of intervalMs since the epoch and empty buckets are
 * absent; `count` counts every point, min/max/avg/sum only numbers; deleteBefore counts
 * points plus raw messages removed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isFluxgateError } from '../../src/core/errors.js';
import type { DeadLetter, DeviceRecord, Page, RawMessage, Store, TelemetryPoint, Value } from '../../src/stores/store.js';
import { objectsCases } from './objects.cases.js';
import { rollupCases } from './rollup.cases.js';
import { seenCases } from './seen.cases.js';
import { tenancyCases } from './tenancy.cases.js';

export interface StoreSuiteOptions {
  name: string;
  create: () => Promise<{ store: Store; cleanup: () => Promise<void> }>;
}

/** Midnight UTC, so minute buckets of the suite start at T0. */
const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;

export function point(over: Partial<TelemetryPoint> & { ts: number; value: Value }): TelemetryPoint {
  return { tenant: 'acme', project: 'plant', device: 'd1', key: 'temp', messageId: `m-${over.ts}`, ...over };
}

export function message(over: Partial<RawMessage> & { ts: number }): RawMessage {
  return {
    tenant: 'acme', project: 'plant', device: 'd1', topic: 'devices/d1/telemetry', kind: 'telemetry',
    receiveTime: over.ts + 5, messageId: `m-${over.ts}`, payload: new TextEncoder().encode(`{"ts":${over.ts}}`), ...over,
  };
}

export function deadLetter(over: Partial<DeadLetter> & { messageId: string }): DeadLetter {
  return {
    tenant: 'acme', project: 'plant', device: 'd1', topic: 'devices/d1/telemetry', receiveTime: T0,
    reason: 'bad json', payload: new TextEncoder().encode('{oops'), ...over,
  };
}

function device(over: Partial<DeviceRecord> & { id: string }): DeviceRecord {
  return { tenant: 'acme', project: 'plant', tokenHash: `hash-${over.tenant ?? 'acme'}-${over.id}`, disabled: false, createdAt: T0, ...over };
}

/** Follows `next` cursors to the end; fails if paging does not terminate. */
async function all<T>(page: (after?: string) => Promise<Page<T>>, maxPages = 1_000): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let after: string | undefined;
  for (let pages = 1; pages <= maxPages; pages++) {
    const p = await page(after);
    items.push(...p.items);
    if (p.next === undefined) return { items, pages };
    assert.equal(typeof p.next, 'string');
    after = p.next;
  }
  throw new Error('paging did not end');
}

const pointId = (p: TelemetryPoint) => `${p.tenant}/${p.device}/${p.key}/${p.ts}/${p.messageId}`;

export function runStoreSuite(opts: StoreSuiteOptions): void {
  /** A fresh, open store for one test; closed and cleaned up whatever happens. */
  async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
    const { store, cleanup } = await opts.create();
    try {
      await store.open();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    } finally {
      await cleanup();
    }
  }

  describe(`store conformance: ${opts.name}`, () => {
    it('writeBatch - the same batch twice stores each point, message and dead letter once', () => withStore(async (store) => {
      const batch = {
        points: [point({ ts: T0, value: 1 }), point({ ts: T0, key: 'hum', value: 40 }), point({ ts: T0 + 1000, value: 2 })],
        messages: [message({ ts: T0 }), message({ ts: T0 + 1000 })],
        deadLetters: [deadLetter({ messageId: 'bad-1' })],
      };
      await store.writeBatch(batch);
      await store.writeBatch(batch);
      // A retry that overlaps: one old point, one new one.
      await store.writeBatch({ points: [point({ ts: T0 + 1000, value: 2 }), point({ ts: T0 + 2000, value: 3 })], messages: [message({ ts: T0 })], deadLetters: [] });
      const pts = await store.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 100 });
      assert.deepEqual(pts.items.map(pointId).sort(), [
        'acme/d1/hum/' + T0 + '/m-' + T0, 'acme/d1/temp/' + T0 + '/m-' + T0,
        `acme/d1/temp/${T0 + 1000}/m-${T0 + 1000}`, `acme/d1/temp/${T0 + 2000}/m-${T0 + 2000}`,
      ].sort());
      const msgs = await store.messages({ tenant: 'acme', from: T0, to: T0 + 10_000, limit: 100 });
      assert.deepEqual(msgs.items.map((m) => m.messageId), [`m-${T0}`, `m-${T0 + 1000}`]);
      const dls = await store.deadLetters('acme', 100);
      assert.equal(dls.items.length, 1);
    }));

    it('latest - last write wins by device time, whatever the arrival order; values keep their type', () => withStore(async (store) => {
      await store.writeBatch({ points: [point({ ts: T0 + 3000, value: 3 }), point({ ts: T0 + 3000, key: 'on', value: true }), point({ ts: T0 + 3000, key: 'mode', value: 'auto' })], messages: [], deadLetters: [] });
      // A late, older message never overwrites a newer value.
      await store.writeBatch({ points: [point({ ts: T0 + 1000, value: 1 }), point({ ts: T0 + 1000, key: 'on', value: false })], messages: [], deadLetters: [] });
      // Within one batch, out of order: the newest wins.
      await store.writeBatch({ points: [point({ ts: T0 + 9000, key: 'mode', value: 'manual' }), point({ ts: T0 + 5000, key: 'mode', value: 'off' })], messages: [], deadLetters: [] });
      const latest = await store.latest('acme', 'd1');
      assert.deepEqual([...latest].sort((a, b) => a.key.localeCompare(b.key)), [
        { key: 'mode', value: 'manual', ts: T0 + 9000 },
        { key: 'on', value: true, ts: T0 + 3000 },
        { key: 'temp', value: 3, ts: T0 + 3000 },
      ]);
      assert.deepEqual(await store.latest('acme', 'nobody'), []);
      // History keeps every value with its type.
      const r = await store.range({ tenant: 'acme', device: 'd1', key: 'on', from: T0, to: T0 + 10_000, limit: 10 });
      assert.deepEqual(r.items.map((p) => p.value), [false, true]);
    }));

    it('range - pages follow each other without gaps or repeats, ascending by time', () => withStore(async (store) => {
      const written: TelemetryPoint[] = [];
      for (let i = 0; i < 40; i++) {
        for (const key of ['a', 'b', 'c']) written.push(point({ ts: T0 + i * 1000, key, value: i, messageId: `m${i}` }));
      }
      // Two messages at the same device time: both points are kept, and the cursor must split ties.
      for (const key of ['a', 'b']) written.push(point({ ts: T0 + 5000, key, value: -1, messageId: 'm5-bis' }));
      await store.writeBatch({ points: written.slice(0, 60), messages: [], deadLetters: [] });
      await store.writeBatch({ points: written.slice(60), messages: [], deadLetters: [] });

      const everything = await all((after) => store.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 40_000, limit: 7, after }));
      assert.equal(everything.items.length, written.length);
      assert.ok(everything.pages > 10);
      assert.deepEqual(everything.items.map(pointId).sort(), written.map(pointId).sort());
      assert.equal(new Set(everything.items.map(pointId)).size, written.length, 'no point repeats across pages');
      for (let i = 1; i < everything.items.length; i++) assert.ok(everything.items[i - 1].ts <= everything.items[i].ts, 'ascending by time');
      for (const p of everything.items) assert.equal(p.project, 'plant');

      const onlyA = await all((after) => store.range({ tenant: 'acme', device: 'd1', key: 'a', from: T0 + 3000, to: T0 + 13_000, limit: 4, after }));
      const expectA = written.filter((p) => p.key === 'a' && p.ts >= T0 + 3000 && p.ts < T0 + 13_000);
      assert.deepEqual(onlyA.items.map(pointId).sort(), expectA.map(pointId).sort());
      assert.equal(onlyA.items.length, 11);
      assert.deepEqual(onlyA.items.map((p) => p.ts), expectA.map((p) => p.ts).sort((x, y) => x - y));

      const exact = await store.range({ tenant: 'acme', device: 'd1', key: 'a', from: T0, to: T0 + 40_000, limit: written.length });
      assert.equal(exact.next, undefined, 'no cursor when the page holds the rest');
      assert.deepEqual((await store.range({ tenant: 'acme', device: 'd1', key: 'zz', from: T0, to: T0 + 40_000, limit: 5 })).items, []);
    }));

    it('aggregate - min, max, avg, sum, count and last per epoch-aligned bucket', () => withStore(async (store) => {
      const pts = [
        point({ ts: T0 + 1000, value: 1 }), point({ ts: T0 + 2000, value: 2 }), point({ ts: T0 + 3000, value: 3 }), point({ ts: T0 + 45_000, value: 6 }),
        point({ ts: T0 + MIN + 1000, value: 10 }), point({ ts: T0 + MIN + 2000, value: 'text' }), point({ ts: T0 + MIN + 3000, value: true }),
        point({ ts: T0 + 2 * MIN + 5000, value: 'only-text' }),
        point({ ts: T0 + 4 * MIN + 5000, value: 4 }), point({ ts: T0 + 4 * MIN + 10_000, value: -4 }),
        point({ ts: T0 + 5 * MIN, value: 99 }), // at `to`: outside the half-open range
        point({ ts: T0 + MIN, key: 'other', value: 1000 }), point({ ts: T0 + MIN, device: 'd2', value: 1000 }),
      ];
      await store.writeBatch({ points: pts.slice(0, 5), messages: [], deadLetters: [] });
      await store.writeBatch({ points: pts.slice(5), messages: [], deadLetters: [] });
      const q = { tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + 5 * MIN, intervalMs: MIN };
      const b = (m: number) => T0 + m * MIN;
      const expected: Record<string, Array<[number, Value | null, number]>> = {
        min: [[b(0), 1, 4], [b(1), 10, 3], [b(2), null, 1], [b(4), -4, 2]],
        max: [[b(0), 6, 4], [b(1), 10, 3], [b(2), null, 1], [b(4), 4, 2]],
        avg: [[b(0), 3, 4], [b(1), 10, 3], [b(2), null, 1], [b(4), 0, 2]],
        sum: [[b(0), 12, 4], [b(1), 10, 3], [b(2), null, 1], [b(4), 0, 2]],
        count: [[b(0), 4, 4], [b(1), 3, 3], [b(2), 1, 1], [b(4), 2, 2]],
        last: [[b(0), 6, 4], [b(1), true, 3], [b(2), 'only-text', 1], [b(4), -4, 2]],
      };
      for (const [agg, rows] of Object.entries(expected)) {
        const got = await store.aggregate({ ...q, agg: agg as 'min' });
        assert.deepEqual(got, rows.map(([ts, value, count]) => ({ ts, value, count })), `agg ${agg}`);
      }
      // A window starting mid-bucket still buckets on epoch boundaries, over the points inside it.
      const mid = await store.aggregate({ ...q, from: T0 + 30_000, to: T0 + MIN + 1500, agg: 'sum' });
      assert.deepEqual(mid, [{ ts: b(0), value: 6, count: 1 }, { ts: b(1), value: 10, count: 1 }]);
      const hourly = await store.aggregate({ ...q, intervalMs: 60 * MIN, agg: 'count' });
      assert.deepEqual(hourly, [{ ts: T0, value: 10, count: 10 }]);
      assert.deepEqual(await store.aggregate({ ...q, key: 'missing', agg: 'avg' }), []);
    }));

    it('messages - filtered by project, device and time, paged without gaps; payloads byte-exact', () => withStore(async (store) => {
      const msgs: RawMessage[] = [];
      for (let i = 0; i < 30; i++) {
        const dev = `d${i % 3}`;
        msgs.push(message({ ts: T0 + Math.floor(i / 2) * 1000, device: dev, project: i % 3 === 2 ? 'yard' : 'plant', messageId: `msg-${i}`, topic: `devices/${dev}/telemetry`, kind: i % 5 === 0 ? 'event' : 'telemetry' }));
      }
      msgs.push(message({ ts: T0 + 100, device: 'd0', messageId: 'empty', payload: new Uint8Array(0) }));
      msgs.push(message({ ts: T0 + 200, device: 'd0', messageId: 'braces', payload: new TextEncoder().encode('{}') }));
      await store.writeBatch({ points: [], messages: msgs.slice(0, 17), deadLetters: [] });
      await store.writeBatch({ points: [], messages: msgs.slice(17), deadLetters: [] });
      const key = (m: RawMessage) => `${m.device}/${m.messageId}`;
      const check = async (q: { project?: string; device?: string; from: number; to: number }, keep: (m: RawMessage) => boolean) => {
        const got = await all((after) => store.messages({ tenant: 'acme', ...q, limit: 4, after }));
        const want = msgs.filter((m) => keep(m) && m.ts >= q.from && m.ts < q.to);
        assert.ok(want.length > 0);
        assert.deepEqual(got.items.map(key).sort(), want.map(key).sort(), JSON.stringify(q));
        assert.equal(new Set(got.items.map(key)).size, got.items.length, 'no repeats');
        for (let i = 1; i < got.items.length; i++) assert.ok(got.items[i - 1].ts <= got.items[i].ts, 'ascending by time');
        return got.items;
      };
      const every = await check({ from: T0, to: T0 + 60_000 }, () => true);
      const byId = new Map(msgs.map((m) => [key(m), m]));
      for (const m of every) assert.deepEqual({ ...m, payload: Buffer.from(m.payload).toString('hex') }, { ...byId.get(key(m))!, payload: Buffer.from(byId.get(key(m))!.payload).toString('hex') });
      await check({ project: 'yard', from: T0, to: T0 + 60_000 }, (m) => m.project === 'yard');
      await check({ device: 'd1', from: T0, to: T0 + 60_000 }, (m) => m.device === 'd1');
      await check({ device: 'd0', project: 'plant', from: T0 + 3000, to: T0 + 9000 }, (m) => m.device === 'd0' && m.project === 'plant');
      await check({ from: T0 + 5000, to: T0 + 7000 }, () => true);
      assert.deepEqual((await store.messages({ tenant: 'acme', device: 'ghost', from: T0, to: T0 + 60_000, limit: 10 })).items, []);
      assert.deepEqual((await store.messages({ tenant: 'acme', project: 'ghost', from: T0, to: T0 + 60_000, limit: 10 })).items, []);
    }));

    it('dead letters - listed in pages with reason and bytes, deleted by id', () => withStore(async (store) => {
      const dls = Array.from({ length: 5 }, (_, i) => deadLetter({ messageId: `bad-${i}`, reason: `reason ${i}`, payload: new Uint8Array([i, 255, 0]) }));
      await store.writeBatch({ points: [], messages: [], deadLetters: dls });
      const listed = await all((after) => store.deadLetters('acme', 2, after));
      assert.equal(listed.pages, 3);
      assert.deepEqual(listed.items.map((d) => d.messageId).sort(), dls.map((d) => d.messageId));
      assert.equal(new Set(listed.items.map((d) => d.id)).size, 5);
      for (const d of listed.items) {
        const i = Number(d.messageId.slice(4));
        assert.equal(d.reason, `reason ${i}`);
        assert.deepEqual([...d.payload], [i, 255, 0]);
        assert.equal(d.tenant, 'acme');
        assert.equal(d.device, 'd1');
        assert.equal(typeof d.failedAt, 'number');
      }
      const gone = listed.items.filter((d) => d.messageId === 'bad-1' || d.messageId === 'bad-3').map((d) => d.id);
      assert.equal(await store.deleteDeadLetters('acme', [...gone, 'no-such-id']), 2);
      const left = await store.deadLetters('acme', 10);
      assert.deepEqual(left.items.map((d) => d.messageId).sort(), ['bad-0', 'bad-2', 'bad-4']);
      assert.equal(await store.deleteDeadLetters('acme', gone), 0);
    }));

    it('registry - create, get, list, update, delete; DEVICE_EXISTS; lookup by token hash', () => withStore(async (store) => {
      for (let i = 0; i < 5; i++) await store.createDevice(device({ id: `dev-${i}` }));
      await assert.rejects(store.createDevice(device({ id: 'dev-2', tokenHash: 'another' })), (err: unknown) => isFluxgateError(err, 'DEVICE_EXISTS'));
      assert.deepEqual(await store.getDevice('acme', 'dev-3'), device({ id: 'dev-3' }));
      assert.equal(await store.getDevice('acme', 'nope'), undefined);
      const listed = await all((after) => store.listDevices('acme', 2, after));
      assert.deepEqual(listed.items.map((d) => d.id).sort(), ['dev-0', 'dev-1', 'dev-2', 'dev-3', 'dev-4']);
      assert.equal(listed.pages, 3);

      assert.deepEqual(await store.findDeviceByTokenHash('hash-acme-dev-1'), device({ id: 'dev-1' }));
      assert.equal(await store.findDeviceByTokenHash('unknown'), undefined);
      const disabled = await store.updateDevice('acme', 'dev-1', { disabled: true });
      assert.deepEqual(disabled, device({ id: 'dev-1', disabled: true }));
      assert.equal((await store.findDeviceByTokenHash('hash-acme-dev-1'))?.disabled, true);
      assert.equal((await store.getDevice('acme', 'dev-1'))?.disabled, true);
      // Token rotation: the old hash finds nothing, the new one finds the device.
      await store.updateDevice('acme', 'dev-1', { tokenHash: 'rotated', project: 'yard' });
      assert.equal(await store.findDeviceByTokenHash('hash-acme-dev-1'), undefined);
      assert.deepEqual(await store.findDeviceByTokenHash('rotated'), device({ id: 'dev-1', tokenHash: 'rotated', project: 'yard', disabled: true }));
      assert.equal(await store.updateDevice('acme', 'nope', { disabled: true }), undefined);

      assert.equal(await store.deleteDevice('acme', 'dev-1'), true);
      assert.equal(await store.deleteDevice('acme', 'dev-1'), false);
      assert.equal(await store.getDevice('acme', 'dev-1'), undefined);
      assert.equal(await store.findDeviceByTokenHash('rotated'), undefined);
      // The id is free again after delete.
      await store.createDevice(device({ id: 'dev-1', tokenHash: 'fresh' }));
      assert.equal((await store.getDevice('acme', 'dev-1'))?.tokenHash, 'fresh');
    }));

    it('tenants are walls - tenant B reads nothing of tenant A through any read', () => withStore(async (store) => {
      await store.writeBatch({
        points: [point({ ts: T0, value: 1 }), point({ ts: T0 + MIN, value: 2 })],
        messages: [message({ ts: T0 })],
        deadLetters: [deadLetter({ messageId: 'bad-a' })],
      });
      await store.createDevice(device({ id: 'd1' }));
      // Tenant B has its own device d1 in a project of the same name.
      await store.writeBatch({ points: [point({ tenant: 'beta', ts: T0 + 500, value: 77 })], messages: [], deadLetters: [] });
      await store.createDevice(device({ tenant: 'beta', id: 'other' }));
      const B = 'beta';
      assert.deepEqual(await store.latest(B, 'd1'), [{ key: 'temp', value: 77, ts: T0 + 500 }]);
      assert.deepEqual((await store.range({ tenant: B, device: 'd1', from: 0, to: T0 + 10 * MIN, limit: 100 })).items.map((p) => p.value), [77]);
      assert.deepEqual((await store.aggregate({ tenant: B, device: 'd1', key: 'temp', from: 0, to: T0 + 10 * MIN, intervalMs: 10 * MIN, agg: 'count' })).map((b) => b.count), [1]);
      assert.deepEqual((await store.messages({ tenant: B, from: 0, to: T0 + 10 * MIN, limit: 100 })).items, []);
      assert.deepEqual((await store.messages({ tenant: B, device: 'd1', project: 'plant', from: 0, to: T0 + 10 * MIN, limit: 100 })).items, []);
      assert.deepEqual((await store.deadLetters(B, 100)).items, []);
      assert.equal(await store.getDevice(B, 'd1'), undefined);
      assert.deepEqual((await store.listDevices(B, 100)).items.map((d) => d.id), ['other']);
      assert.equal(await store.updateDevice(B, 'd1', { disabled: true }), undefined);
      assert.equal(await store.deleteDevice(B, 'd1'), false);
      const aDead = (await store.deadLetters('acme', 10)).items.map((d) => d.id);
      assert.equal(await store.deleteDeadLetters(B, aDead), 0);
      assert.equal(await store.deleteBefore(T0 + 10 * MIN, B), 1);
      // A is untouched by everything B did.
      assert.equal((await store.range({ tenant: 'acme', device: 'd1', from: 0, to: T0 + 10 * MIN, limit: 100 })).items.length, 2);
      assert.deepEqual(await store.latest('acme', 'd1'), [{ key: 'temp', value: 2, ts: T0 + MIN }]);
      assert.equal((await store.messages({ tenant: 'acme', from: 0, to: T0 + 10 * MIN, limit: 100 })).items.length, 1);
      assert.equal((await store.deadLetters('acme', 10)).items.length, 1);
      assert.equal((await store.getDevice('acme', 'd1'))?.disabled, false);
      // A tenant name is not a prefix match.
      assert.deepEqual(await store.latest('acm', 'd1'), []);
      assert.deepEqual((await store.listDevices('acm', 10)).items, []);
    }));

    it('deleteBefore - removes points and messages older than the cutoff, per tenant or for all', () => withStore(async (store) => {
      const pts: TelemetryPoint[] = [];
      const msgs: RawMessage[] = [];
      for (const tenant of ['acme', 'beta']) {
        for (let i = 0; i < 10; i++) {
          pts.push(point({ tenant, ts: T0 + i * 1000, value: i }), point({ tenant, ts: T0 + i * 1000, key: 'hum', value: i }));
          msgs.push(message({ tenant, ts: T0 + i * 1000 }));
        }
      }
      await store.writeBatch({ points: pts, messages: msgs, deadLetters: [deadLetter({ messageId: 'kept' })] });
      // acme: 5 timestamps × 2 keys + 5 messages before T0 + 5000.
      assert.equal(await store.deleteBefore(T0 + 5000, 'acme'), 15);
      const acme = await store.range({ tenant: 'acme', device: 'd1', from: 0, to: T0 + MIN, limit: 100 });
      assert.deepEqual([...new Set(acme.items.map((p) => p.ts))], [5, 6, 7, 8, 9].map((i) => T0 + i * 1000));
      assert.equal(acme.items.length, 10);
      assert.equal((await store.range({ tenant: 'beta', device: 'd1', from: 0, to: T0 + MIN, limit: 100 })).items.length, 20);
      const acmeMsgs = await store.messages({ tenant: 'acme', from: 0, to: T0 + MIN, limit: 100 });
      assert.deepEqual(acmeMsgs.items.map((m) => m.ts), [5, 6, 7, 8, 9].map((i) => T0 + i * 1000));
      // Latest state and dead letters are not history: they stay.
      assert.equal((await store.latest('acme', 'd1')).length, 2);
      assert.equal((await store.deadLetters('acme', 10)).items.length, 1);
      // All tenants: acme's 3 remaining timestamps below the cutoff (6 points, 3 messages), beta's 8 (16 + 8).
      assert.equal(await store.deleteBefore(T0 + 8000), 33);
      assert.equal((await store.range({ tenant: 'beta', device: 'd1', from: 0, to: T0 + MIN, limit: 100 })).items.length, 4);
      assert.equal((await store.messages({ tenant: 'beta', from: 0, to: T0 + MIN, limit: 100 })).items.length, 2);
      assert.equal(await store.deleteBefore(T0 + 8000), 0);
    }));

    it('writeBatch - a batch of 5,000 points over many devices reads back whole', () => withStore(async (store) => {
      const pts: TelemetryPoint[] = [];
      for (let i = 0; i < 5000; i++) pts.push(point({ device: `dev-${i % 250}`, key: `k${i % 4}`, ts: T0 + i * 10, value: i, messageId: `m-${Math.floor(i / 4)}` }));
      await store.writeBatch({ points: pts, messages: [], deadLetters: [] });
      const d = await all((after) => store.range({ tenant: 'acme', device: 'dev-7', from: T0, to: T0 + MIN, limit: 6, after }));
      const want = pts.filter((p) => p.device === 'dev-7');
      assert.deepEqual(d.items.map(pointId).sort(), want.map(pointId).sort());
      assert.deepEqual(d.items.map((p) => p.value).sort((a, b) => Number(a) - Number(b)), want.map((p) => p.value));
      const newest = new Map<string, TelemetryPoint>();
      for (const p of pts) if (p.device === 'dev-249' && (newest.get(p.key)?.ts ?? -1) < p.ts) newest.set(p.key, p);
      const latest = await store.latest('acme', 'dev-249');
      assert.deepEqual([...latest].sort((a, b) => a.key.localeCompare(b.key)),
        [...newest.values()].sort((a, b) => a.key.localeCompare(b.key)).map((p) => ({ key: p.key, value: p.value, ts: p.ts })));
    }));

    tenancyCases(withStore);
    objectsCases(withStore);
    rollupCases(withStore);
    seenCases(withStore);
  });
}
