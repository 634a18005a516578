/**
 * @module The embedded store passes the Store conformance suite, keeps its data across a close
 * and reopen and across a crash, reads the same before and after compaction, and starts its
 * worker both under `node --import tsx` (this runner) and under tsx's run-time register().
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isFluxgateError } from '../../src/core/errors.js';
import { Engine } from '../../src/stores/embedded/engine.js';
import { createEmbeddedStore, EmbeddedStore } from '../../src/stores/embedded/index.js';
import { encodeBatch } from '../../src/stores/embedded/wire.js';
import type { TelemetryPoint } from '../../src/stores/store.js';
import { runStoreSuite } from '../conformance/store.suite.js';
import { tempDir } from '../helpers/wait.js';

runStoreSuite({
  name: 'embedded',
  create: async () => {
    const { dir, cleanup } = await tempDir('fluxgate-store-');
    return { store: createEmbeddedStore({ dir }), cleanup };
  },
});

// The same contract once every write has been moved out of the staging tables.
runStoreSuite({
  name: 'embedded, compacted after every write',
  create: async () => {
    const { dir, cleanup } = await tempDir('fluxgate-store-');
    const store = new EmbeddedStore({ dir });
    const write = store.writeBatch.bind(store);
    store.writeBatch = async (batch) => {
      await write(batch);
      await store.compact();
    };
    return { store, cleanup };
  },
});

const T0 = Date.UTC(2026, 0, 1);
const pt = (ts: number, value: number, messageId = `m-${ts}`): TelemetryPoint =>
  ({ tenant: 'acme', project: 'plant', device: 'd1', key: 'temp', ts, value, messageId });

/** Opens a store in a fresh directory; the callback may reopen it. Everything is removed afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('fluxgate-store-');
  try {
    await fn(dir);
  } finally {
    await cleanup();
  }
}

async function withStore<T>(dir: string, fn: (s: EmbeddedStore) => Promise<T>): Promise<T> {
  const store = new EmbeddedStore({ dir });
  await store.open();
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe('embedded store', () => {
  it('data survives close and reopen, staged or compacted', () => withDir(async (dir) => {
    await withStore(dir, async (s) => {
      await s.writeBatch({ points: [pt(T0, 1), pt(T0 + 1000, 2)], messages: [], deadLetters: [] });
      await s.compact();
      await s.writeBatch({
        points: [pt(T0 + 2000, 3)],
        messages: [{ tenant: 'acme', project: 'plant', device: 'd1', topic: 't', kind: 'event', ts: T0, receiveTime: T0, messageId: 'x', payload: new Uint8Array([7, 8]) }],
        deadLetters: [],
      });
      await s.createDevice({ tenant: 'acme', id: 'd1', project: 'plant', tokenHash: 'h', disabled: false, createdAt: T0 });
    });
    await withStore(dir, async (s) => {
      const r = await s.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 10 });
      assert.deepEqual(r.items.map((p) => p.value), [1, 2, 3]);
      assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 3, ts: T0 + 2000 }]);
      const m = await s.messages({ tenant: 'acme', from: T0, to: T0 + 1, limit: 10 });
      assert.deepEqual([...m.items[0].payload], [7, 8]);
      assert.equal((await s.findDeviceByTokenHash('h'))?.id, 'd1');
      // A replay after reopen still stores each point once.
      await s.writeBatch({ points: [pt(T0, 1), pt(T0 + 2000, 3)], messages: [], deadLetters: [] });
      assert.equal((await s.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 10 })).items.length, 3);
    });
  }));

  it('a replay that arrives after compaction is read and aggregated once', () => withDir(async (dir) => {
    await withStore(dir, async (s) => {
      const batch = { points: [pt(T0, 1), pt(T0 + 1000, 2)], messages: [], deadLetters: [] };
      await s.writeBatch(batch);
      assert.equal(await s.compact(), 2);
      await s.writeBatch(batch);
      assert.equal((await s.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 10 })).items.length, 2);
      assert.deepEqual(await s.aggregate({ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + 60_000, intervalMs: 60_000, agg: 'sum' }), [{ ts: T0, value: 3, count: 2 }]);
      assert.deepEqual(await s.aggregate({ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + 60_000, intervalMs: 60_000, agg: 'last' }), [{ ts: T0, value: 2, count: 2 }]);
      await s.compact();
      assert.equal((await s.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 10 })).items.length, 2);
    });
  }));

  it('latest - at equal device time the larger message id wins, in any arrival order', () => withDir(async (dir) => {
    await withStore(dir, async (s) => {
      await s.writeBatch({ points: [pt(T0, 2, 'b')], messages: [], deadLetters: [] });
      await s.writeBatch({ points: [pt(T0, 1, 'a')], messages: [], deadLetters: [] });
      await s.writeBatch({ points: [pt(T0 + 5, 9, 'a'), pt(T0 + 5, 8, 'z'), pt(T0 + 5, 7, 'c')], messages: [], deadLetters: [] });
      assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 8, ts: T0 + 5 }]);
    });
  }));

  it('errors cross the worker boundary with their code; calls after close are refused', () => withDir(async (dir) => {
    const s = new EmbeddedStore({ dir });
    await assert.rejects(s.latest('acme', 'd1'), { code: 'STORE_UNAVAILABLE' });
    await s.open();
    try {
      assert.deepEqual(s.status(), { ok: true });
      await assert.rejects(s.range({ tenant: 'acme', device: 'd1', from: 0, to: 1, limit: 5, after: 'garbage' }), { name: 'FluxgateError', code: 'BAD_REQUEST' });
      await s.createDevice({ tenant: 'acme', id: 'd1', project: 'p', tokenHash: 'h', disabled: false, createdAt: 0 });
      const err = await s.createDevice({ tenant: 'acme', id: 'd1', project: 'p', tokenHash: 'h2', disabled: false, createdAt: 0 }).catch((e: unknown) => e);
      assert.ok(isFluxgateError(err, 'DEVICE_EXISTS'));
      assert.equal(err.message, 'device d1 already exists in tenant acme');
      assert.equal(err.status, 409);
      // A value SQLite cannot keep faithfully is refused before anything is written.
      const bad = { ...pt(T0, 1), value: Number.NaN };
      await assert.rejects(s.writeBatch({ points: [pt(T0 + 1, 1), bad], messages: [], deadLetters: [] }), { code: 'BAD_REQUEST' });
      assert.deepEqual(await s.latest('acme', 'd1'), []);
    } finally {
      // Two closes at once: both resolve once the workers are gone.
      await Promise.all([s.close(), s.close()]);
    }
    assert.equal(s.status().detail, 'embedded store is closed');
    await s.close();
    assert.equal(s.status().ok, false);
    await assert.rejects(s.latest('acme', 'd1'), { code: 'STORE_UNAVAILABLE' });
  }));

  it('a crash before compaction loses neither points nor latest state', () => withDir(async (dir) => {
    const file = join(dir, 'store.db');
    // The engine in this thread stands in for a worker killed before it compacted or closed.
    const crashed = new Engine(file);
    try {
      crashed.call('writeBatch', [encodeBatch({ points: [pt(T0, 1), pt(T0 + 1000, 2), { ...pt(T0 + 500, 0), key: 'on', value: true }], messages: [], deadLetters: [] }).wire]);
      await withStore(dir, async (s) => {
        assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'on', value: true, ts: T0 + 500 }, { key: 'temp', value: 2, ts: T0 + 1000 }]);
        assert.equal((await s.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10_000, limit: 10 })).items.length, 3);
        // An older value arriving after recovery does not win.
        await s.writeBatch({ points: [pt(T0 + 10, 9)], messages: [], deadLetters: [] });
        await s.compact();
        assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'on', value: true, ts: T0 + 500 }, { key: 'temp', value: 2, ts: T0 + 1000 }]);
      });
    } finally {
      crashed.db.close();
    }
  }));

  it('a large purge runs in chunks, and a write sent during it is not held until it ends', () => withDir(async (dir) => {
    await withStore(dir, async (s) => {
      const points = (from: number, n: number) => Array.from({ length: n }, (_, i) => pt(T0 + from + i, i));
      for (let b = 0; b < 3; b++) await s.writeBatch({ points: points(b * 5000, 5000), messages: [], deadLetters: [] });
      await s.compact();
      const msgs = Array.from({ length: 7000 }, (_, i) => ({ tenant: 'acme', project: 'plant', device: `d${i % 7}`, topic: 't', kind: 'telemetry' as const, ts: T0 + i * 3, receiveTime: T0, messageId: `m${i}`, payload: new Uint8Array([i % 256]) }));
      await s.writeBatch({ points: points(15_000, 5000), messages: msgs, deadLetters: [] });
      const order: string[] = [];
      const purge = s.deleteBefore(T0 + 17_000).then((n) => { order.push('purge'); return n; });
      const write = s.writeBatch({ points: points(100_000, 10), messages: [], deadLetters: [] }).then(() => { order.push('write'); });
      const [removed] = await Promise.all([purge, write]);
      assert.deepEqual(order, ['write', 'purge']);
      // 17,000 points and the 5,667 messages with ts < T0 + 17,000 (i * 3 < 17,000).
      assert.equal(removed, 17_000 + 5667);
      const left = await s.range({ tenant: 'acme', device: 'd1', key: 'temp', from: T0, to: T0 + 200_000, limit: 10_000 });
      assert.equal(left.items.length, 3000 + 10);
      assert.equal(left.items[0].ts, T0 + 17_000);
      let msgCount = 0;
      for (let after: string | undefined, first = true; first || after; first = false) {
        const page = await s.messages({ tenant: 'acme', from: T0, to: T0 + 200_000, limit: 1000, after });
        msgCount += page.items.length;
        after = page.next;
      }
      assert.equal(msgCount, 7000 - 5667);
    });
  }));

  it('a worker that dies fails the calls after it with STORE_UNAVAILABLE, and /readyz says so', () => withDir(async (dir) => {
    const s = new EmbeddedStore({ dir });
    await s.open();
    try {
      await s.writeBatch({ points: [pt(T0, 1)], messages: [], deadLetters: [] });
      // Reach inside to kill the writer, as a native crash would.
      const workers = (s as unknown as { workers: Map<string, import('node:worker_threads').Worker> }).workers;
      const inFlight = s.writeBatch({ points: [pt(T0 + 1, 2)], messages: [], deadLetters: [] });
      await workers.get('writer')!.terminate();
      // The call in flight either made it before the kill or fails; it never hangs.
      await inFlight.catch((err: unknown) => assert.ok(isFluxgateError(err, 'STORE_UNAVAILABLE')));
      await assert.rejects(s.latest('acme', 'd1'), { code: 'STORE_UNAVAILABLE' });
      assert.equal(s.status().ok, false);
      assert.match(s.status().detail ?? '', /worker exited/);
    } finally {
      await s.close();
    }
    // What was committed before the crash is there for the next store.
    await withStore(dir, async (again) => {
      assert.equal((await again.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + 10, limit: 10 })).items[0]?.value, 1);
    });
  }));

  it('a store file that cannot be opened is DATA_DIR_UNUSABLE, naming the file', () => withDir(async (dir) => {
    // A directory where the database file should be: SQLite cannot open it.
    await mkdir(join(dir, 'store.db'));
    const s = new EmbeddedStore({ dir });
    await assert.rejects(s.open(), (err: unknown) => isFluxgateError(err, 'DATA_DIR_UNUSABLE') && err.message.includes(join(dir, 'store.db')));
    assert.equal(s.status().ok, false);
    await s.close();
  }));

  it('the worker starts when tsx is registered at run time, as bin/fluxgate.js does', () => withDir(async (dir) => {
    const script = fileURLToPath(new URL('./fixtures/register-store.mjs', import.meta.url));
    // execArgv is empty: no --import tsx for the child or its worker to inherit.
    const { stdout } = await promisify(execFile)(process.execPath, [script, dir], { timeout: 60_000 });
    assert.deepEqual(JSON.parse(stdout.trim()), { latest: [{ key: 'on', value: true, ts: 1000 }], code: 'DEVICE_EXISTS' });
  }));
});
