/**
 * @module Store conformance, what writeBatch keeps besides content (run inside `runStoreSuite`):
 * the message ids of each batch for the de-duplication window (not those of dead letters),
 * pruned by receive time; a device's last seen; snapshot cuts that hide keys from latest state
 * unless they are at least as new; and the dead-letter queue's filters, kinds, replacement on a
 * new failure and `failedBefore` deletes.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { DeadLetter, RawMessage, Store, TelemetryPoint } from '../../src/stores/store.js';

const T0 = Date.UTC(2026, 0, 1);

const msg = (device: string, messageId: string, receiveTime: number, ts = receiveTime, tenant = 'acme'): RawMessage => ({
  tenant, project: 'plant', device, topic: `devices/${device}/telemetry`, kind: 'telemetry', ts, receiveTime, messageId, payload: Buffer.from('{}'),
});
const pt = (device: string, key: string, ts: number, value: number, tenant = 'acme'): TelemetryPoint => ({ tenant, project: 'plant', device, key, ts, value, messageId: `m-${key}-${ts}` });
const letter = (device: string, messageId: string, reason: string, over: Partial<DeadLetter> = {}): DeadLetter => ({
  tenant: 'acme', project: 'plant', device, topic: `devices/${device}/events`, messageId, receiveTime: T0, reason, payload: Buffer.from(`bytes of ${messageId}`), ...over,
});

export function seenCases(withStore: (fn: (store: Store) => Promise<void>) => Promise<void>): void {
  it('seen ids - each batch\'s message ids (not dead-lettered ones) by receive time, oldest first, pruned by receive time', () => withStore(async (store) => {
    await store.writeBatch({ points: [], messages: [msg('d1', 'a', T0 + 1), msg('d2', 'b', T0 + 2), msg('d1', 'bad', T0 + 3)], deadLetters: [letter('d1', 'bad', 'payload is not valid JSON')] });
    await store.writeBatch({ points: [], messages: [msg('d1', 'c', T0 + 4, T0 - 1_000_000, 'other')], deadLetters: [] });
    // A replay of the same batch records nothing twice.
    await store.writeBatch({ points: [], messages: [msg('d1', 'a', T0 + 1)], deadLetters: [] });
    const ids = await store.recentMessageIds(T0, 100);
    assert.deepEqual(ids.map((s) => [s.tenant, s.device, s.messageId, s.receiveTime]), [
      ['acme', 'd1', 'a', T0 + 1], ['acme', 'd2', 'b', T0 + 2], ['other', 'd1', 'c', T0 + 4],
    ]);
    assert.deepEqual((await store.recentMessageIds(T0 + 2, 1)).map((s) => s.messageId), ['b']);
    assert.equal(await store.forgetMessageIds(T0 + 3), 2);
    assert.deepEqual((await store.recentMessageIds(0, 100)).map((s) => s.messageId), ['c']);
  }));

  it('deviceSeen - greatest receive time and device time of a device\'s messages, whatever the order; per tenant', () => withStore(async (store) => {
    assert.equal(await store.deviceSeen('acme', 'd1'), undefined);
    await store.writeBatch({ points: [], messages: [msg('d1', 'x', T0 + 500, T0 + 9_000), msg('d1', 'y', T0 + 900, T0 + 1_000)], deadLetters: [] });
    await store.writeBatch({ points: [], messages: [msg('d1', 'z', T0 + 700, T0 + 2_000)], deadLetters: [] });
    assert.deepEqual(await store.deviceSeen('acme', 'd1'), { lastSeen: T0 + 900, lastTs: T0 + 9_000 });
    assert.equal(await store.deviceSeen('other', 'd1'), undefined, 'tenants are walls');
  }));

  it('snapshot cuts - latest hides keys the newest cut lacked unless at least as new; an older cut changes nothing', () => withStore(async (store) => {
    await store.writeBatch({ points: [pt('d1', 'a', T0, 1), pt('d1', 'b', T0, 2), pt('d1', 'c', T0 + 5_000, 3)], messages: [], deadLetters: [] });
    await store.writeBatch({ points: [pt('d1', 'a', T0 + 1_000, 4)], messages: [msg('d1', 's1', T0 + 1_000)], deadLetters: [], snapshots: [{ tenant: 'acme', device: 'd1', ts: T0 + 1_000, keys: ['a'] }] });
    const keys = async () => (await store.latest('acme', 'd1')).map((v) => `${v.key}=${v.value}`);
    assert.deepEqual(await keys(), ['a=4', 'c=3'], 'b was older than the cut and not in it; c is newer');
    await store.writeBatch({ points: [pt('d1', 'b', T0 + 500, 7)], messages: [], deadLetters: [], snapshots: [{ tenant: 'acme', device: 'd1', ts: T0 + 500, keys: ['b'] }] });
    assert.deepEqual(await keys(), ['a=4', 'c=3'], 'a late, older snapshot does not bring b back');
    await store.writeBatch({ points: [pt('d1', 'b', T0 + 6_000, 8)], messages: [], deadLetters: [] });
    assert.deepEqual(await keys(), ['a=4', 'b=8', 'c=3'], 'a newer value of b shows again');
    assert.deepEqual((await store.latest('acme', 'd2')), []);
  }));

  it('dead letters - filtered by reason, device and failure time; keep their kind; a new failure replaces the letter; failedBefore spares it', () => withStore(async (store) => {
    await store.writeBatch({ points: [], messages: [], deadLetters: [
      letter('d1', 'm1', 'payload is not valid JSON: x', { kind: 'event' }),
      letter('d2', 'm2', 'store write failed after 3 attempts: down', { kind: 'snapshot' }),
      letter('d2', 'm3', 'payload is not valid UTF-8 text'),
    ] });
    const all = (await store.deadLetters('acme', 100)).items;
    assert.deepEqual(all.map((d) => [d.messageId, d.kind]), [['m1', 'event'], ['m2', 'snapshot'], ['m3', 'telemetry']]);
    assert.deepEqual((await store.deadLetters('acme', 100, undefined, { reason: 'not valid' })).items.map((d) => d.messageId), ['m1', 'm3']);
    assert.deepEqual((await store.deadLetters('acme', 100, undefined, { device: 'd2' })).items.map((d) => d.messageId), ['m2', 'm3']);
    assert.deepEqual((await store.deadLetters('acme', 100, undefined, { device: 'd2', reason: 'store write' })).items.map((d) => d.messageId), ['m2']);
    assert.equal((await store.deadLetters('acme', 100, undefined, { from: Date.now() + 60_000 })).items.length, 0);
    assert.equal((await store.deadLetters('acme', 100, undefined, { to: all[0].failedAt })).items.length, 0);
    const page = await store.deadLetters('acme', 1, undefined, { device: 'd2' });
    assert.deepEqual((await store.deadLetters('acme', 10, page.next, { device: 'd2' })).items.map((d) => d.messageId), ['m3'], 'pages follow under a filter');
    assert.equal((await store.deadLetters('other', 100)).items.length, 0);

    // m1 fails again (a replay whose cause is not fixed): one letter, the new reason.
    const before = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await store.writeBatch({ points: [], messages: [], deadLetters: [letter('d1', 'm1', 'payload is not valid JSON: again', { kind: 'event' })] });
    const m1 = (await store.deadLetters('acme', 100, undefined, { device: 'd1' })).items;
    assert.equal(m1.length, 1);
    assert.equal(m1[0].reason, 'payload is not valid JSON: again');
    assert.ok(m1[0].failedAt >= before);
    // A replay started before that failure deletes what it replayed, not the new failure.
    const ids = (await store.deadLetters('acme', 100)).items.map((d) => d.id);
    assert.equal(await store.deleteDeadLetters('acme', ids, before), 2);
    assert.deepEqual((await store.deadLetters('acme', 100)).items.map((d) => d.messageId), ['m1']);
    assert.equal(await store.deleteDeadLetters('acme', [m1[0].id]), 1);
  }));
}
