/**
 * @module Store conformance, part three: configuration objects (the ObjectStore contract), run
 * inside `runStoreSuite` so every backend checks them with the same fresh store per test. Bodies
 * of every JSON shape come back equal; objects of one kind or tenant never show under another.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Store, StoredObject } from '../../src/stores/store.js';

const T0 = Date.UTC(2026, 0, 1);

function obj(over: Partial<StoredObject> & { id: string }): StoredObject {
  return { kind: 'template', tenant: 'acme', body: { pattern: `x/{device}/${over.id}` }, updatedAt: T0, ...over };
}
const ids = (list: StoredObject[]) => list.map((o) => `${o.tenant}/${o.id}`);

export function objectsCases(withStore: (fn: (store: Store) => Promise<void>) => Promise<void>): void {
  it('objects - put, get, upsert replaces body and time; bodies of every JSON shape round-trip', () => withStore(async (store) => {
    const a = obj({ id: 'a', body: { pattern: 'p/{device}', autoProvision: true, kinds: { rt: 'telemetry' }, n: 1.5, none: null } });
    await store.putObject(a);
    assert.deepEqual(await store.getObject('template', 'acme', 'a'), a);
    const replaced = obj({ id: 'a', body: { pattern: 'q/{device}' }, updatedAt: T0 + 9 });
    await store.putObject(replaced);
    assert.deepEqual(await store.getObject('template', 'acme', 'a'), replaced);
    for (const [id, body] of [['arr', [1, 'two', { three: 3 }]], ['str', 'text with "quotes" and ünïcode'], ['num', 42], ['nul', null], ['empty', {}]] as const) {
      await store.putObject(obj({ id, body }));
      assert.deepEqual((await store.getObject('template', 'acme', id))?.body, body, `body of ${id}`);
    }
    assert.equal(await store.getObject('template', 'acme', 'missing'), undefined);
  }));

  it('objects - list by kind, per tenant or all (ordered by tenant, id); kinds and tenants never mix', () => withStore(async (store) => {
    for (const o of [obj({ id: 'b' }), obj({ id: 'a' }), obj({ tenant: 'beta', id: 'a' }), obj({ tenant: 'Zed', id: 'z' }),
      obj({ kind: 'bridge', id: 'a', body: { url: 'mqtt://x' } })]) await store.putObject(o);
    assert.deepEqual(ids(await store.listObjects('template', 'acme')), ['acme/a', 'acme/b']);
    assert.deepEqual(ids(await store.listObjects('template', 'beta')), ['beta/a']);
    // Byte order: upper-case sorts before lower-case.
    assert.deepEqual(ids(await store.listObjects('template')), ['Zed/z', 'acme/a', 'acme/b', 'beta/a']);
    assert.deepEqual(await store.listObjects('bridge'), [obj({ kind: 'bridge', id: 'a', body: { url: 'mqtt://x' } })]);
    assert.deepEqual(await store.listObjects('template', 'nobody'), []);
    assert.deepEqual(await store.listObjects('nothing'), []);
    assert.equal(await store.getObject('bridge', 'beta', 'a'), undefined);
  }));

  it('objects - delete only the named (kind, tenant, id); false when absent', () => withStore(async (store) => {
    await store.putObject(obj({ id: 'a' }));
    await store.putObject(obj({ tenant: 'beta', id: 'a' }));
    await store.putObject(obj({ kind: 'bridge', id: 'a' }));
    assert.equal(await store.deleteObject('template', 'gamma', 'a'), false);
    assert.equal(await store.deleteObject('template', 'acme', 'a'), true);
    assert.equal(await store.deleteObject('template', 'acme', 'a'), false);
    assert.equal(await store.getObject('template', 'acme', 'a'), undefined);
    assert.deepEqual(ids(await store.listObjects('template')), ['beta/a']);
    assert.equal((await store.getObject('bridge', 'acme', 'a'))?.kind, 'bridge');
  }));
}
