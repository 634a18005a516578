/**
 * @module The PostgreSQL store against a real server: the Store conformance suite (with both
 * ingest paths), concurrent migrations, retention that drops whole partitions, late and future
 * points, a partition dropped under another node's feet, and a server that cannot be reached.
 * Every store lives in its own fresh schema (`fluxgate_test_<random>`) in database `test`,
 * dropped afterwards even when the test fails, so runs never collide.
 *
 * Server: FLUXGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test. Outside
 * CI the file skips, saying so, when that server does not answer; in CI it fails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { isFluxgateError } from '../../src/core/errors.js';
import { CONNECT_TIMEOUT_MS, createPostgresStore, PostgresStore, type PostgresStoreOptions } from '../../src/stores/postgres/index.js';
import { LOCK_SPACE, LockKind } from '../../src/stores/postgres/migrations.js';
import type { Store, TelemetryPoint } from '../../src/stores/store.js';
import { runStoreSuite } from '../conformance/store.suite.js';
import { waitFor } from '../helpers/wait.js';

const URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

async function probe(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Runs SQL as the test's own admin connection (catalog checks, schema cleanup). */
async function admin<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

const freshSchema = () => `fluxgate_test_${randomBytes(6).toString('hex')}`;
const dropSchema = (schema: string) => admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).then(() => undefined);

/** A fresh schema for the callback's stores, dropped afterwards whatever happens. */
async function withSchema(fn: (schema: string, make: (o?: Partial<PostgresStoreOptions>) => PostgresStore) => Promise<void>): Promise<void> {
  const schema = freshSchema();
  const made: PostgresStore[] = [];
  try {
    await fn(schema, (o) => {
      const s = new PostgresStore({ url: URL, schema, ...o });
      made.push(s);
      return s;
    });
  } finally {
    for (const s of made) await s.close();
    await dropSchema(schema);
  }
}

async function partitionsOf(schema: string, table: string): Promise<string[]> {
  const rows = await admin<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = $1::regclass ORDER BY 1`, [`"${schema}".${table}`]);
  return rows.map((r) => r.name);
}

const pt = (ts: number, value: number, over: Partial<TelemetryPoint> = {}): TelemetryPoint =>
  ({ tenant: 'acme', project: 'plant', device: 'd1', key: 'temp', ts, value, messageId: `m-${ts}`, ...over });
const msg = (ts: number) => ({ tenant: 'acme', project: 'plant', device: 'd1', topic: 't', kind: 'telemetry' as const, ts, receiveTime: ts, messageId: `m-${ts}`, payload: new Uint8Array([1, 2]) });

const unreachable = await probe();
if (unreachable !== undefined && process.env.CI) throw new Error(`PostgreSQL at ${URL} is unreachable in CI: ${unreachable}`);

if (unreachable !== undefined) {
  it(`postgres store - skipped: PostgreSQL at ${URL} is unreachable (${unreachable}); set FLUXGATE_TEST_POSTGRES_URL or start it`, { skip: true }, () => undefined);
} else {
  for (const ingest of ['insert', 'copy'] as const) {
    runStoreSuite({
      name: `postgres (${ingest})`,
      create: async () => {
        const schema = freshSchema();
        const store: Store = ingest === 'insert' ? createPostgresStore({ url: URL, schema }) : new PostgresStore({ url: URL, schema, ingest });
        return { store, cleanup: () => dropSchema(schema) };
      },
    });
  }

  describe('postgres store', () => {
    it('migrations - four nodes opening the same new schema at once all succeed, and migrate it once', () => withSchema(async (schema, make) => {
      const stores = Array.from({ length: 4 }, () => make());
      await Promise.all(stores.map((s) => s.open()));
      const versions = await admin<{ version: number }>(`SELECT version FROM "${schema}".schema_migrations ORDER BY version`);
      // Each version applied once, none skipped.
      assert.deepEqual(versions.map((v) => v.version), versions.map((_, i) => i + 1));
      assert.ok(versions.length >= 1);
      await stores[0].writeBatch({ points: [pt(T0, 1)], messages: [], deadLetters: [] });
      await stores[3].writeBatch({ points: [pt(T0 + 1000, 2)], messages: [], deadLetters: [] });
      for (const s of stores) assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 2, ts: T0 + 1000 }]);
      // A node started later finds nothing to do; open() called twice at once opens once.
      const late = make();
      await Promise.all([late.open(), late.open()]);
      await late.open();
      assert.equal((await late.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + DAY, limit: 10 })).items.length, 2);
    }));

    it('pool - a call waits past the connect timeout for a connection the pool\'s other calls hold, and succeeds', () => withSchema(async (schema, make) => {
      // One connection: the first call holds it while a lock of the test's own blocks it; the
      // second waits for it longer than connecting may take (pg.Pool used one bound for both).
      const store = make({ poolSize: 1 });
      await store.open();
      const holder = new pg.Client({ connectionString: URL });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`LOCK TABLE "${schema}".devices IN ACCESS EXCLUSIVE MODE`);
        const dev = (id: string) => ({ tenant: 'acme', id, project: 'plant', tokenHash: `h-${id}`, disabled: false, createdAt: T0 });
        const first = store.createDevices([dev('a')]);
        const second = store.getDevice('acme', 'a');
        // The first call holds the pool's connection, blocked on the lock.
        await waitFor(async () => (await admin<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = $1::regclass`, [`"${schema}".devices`]))[0]!.n > 0, { timeoutMs: 10_000, what: 'the first call waiting on the lock' });
        await new Promise((r) => setTimeout(r, CONNECT_TIMEOUT_MS + 1_000)); // the condition under test: waiting longer than a connect may
        await holder.query('COMMIT');
        await first;
        assert.equal((await second)?.id, 'a');
      } finally {
        await holder.query('ROLLBACK').catch(() => undefined);
        await holder.end();
      }
    }));

    it('partitions - open() creates daily partitions from yesterday to days ahead', () => withSchema(async (schema, make) => {
      await make().open();
      const today = new Date(Math.floor(Date.now() / DAY) * DAY).toISOString().slice(0, 10).replace(/-/g, '');
      const names = await partitionsOf(schema, 'points');
      assert.ok(names.includes(`points_${today}`), names.join(','));
      assert.ok(names.length >= 5, names.join(','));
      assert.ok((await partitionsOf(schema, 'messages')).includes(`messages_${today}`));
    }));

    it('retention - deleteBefore drops whole partitions before the cutoff and trims the one holding it', () => withSchema(async (schema, make) => {
      const s = make();
      await s.open();
      const days = [0, 1, 2, 3].map((d) => T0 + d * DAY);
      await s.writeBatch({ points: days.flatMap((d) => [pt(d + 10, 1), pt(d + 20, 2)]), messages: days.map((d) => msg(d + 10)), deadLetters: [] });
      const before = await partitionsOf(schema, 'points');
      for (const n of ['points_20260101', 'points_20260102', 'points_20260103', 'points_20260104']) assert.ok(before.includes(n), n);
      // Cutoff inside day 2: days 0 and 1 go whole (2 × 3 rows), day 2 loses its first point and its message.
      assert.equal(await s.deleteBefore(days[2] + 15), 2 * 3 + 2);
      const after = await partitionsOf(schema, 'points');
      assert.ok(!after.includes('points_20260101') && !after.includes('points_20260102'), after.join(','));
      assert.ok(after.includes('points_20260103') && after.includes('points_20260104'));
      const msgParts = await partitionsOf(schema, 'messages');
      assert.ok(!msgParts.includes('messages_20260101') && msgParts.includes('messages_20260103'));
      const left = await s.range({ tenant: 'acme', device: 'd1', from: 0, to: T0 + 10 * DAY, limit: 100 });
      assert.deepEqual(left.items.map((p) => p.ts), [days[2] + 20, days[3] + 10, days[3] + 20]);
      assert.deepEqual((await s.messages({ tenant: 'acme', from: 0, to: T0 + 10 * DAY, limit: 100 })).items.map((m) => m.ts), [days[3] + 10]);
      // Data for a dropped day can still arrive late: its partition is created again.
      await s.writeBatch({ points: [pt(days[0] + 99, 7)], messages: [], deadLetters: [] });
      assert.deepEqual((await s.range({ tenant: 'acme', device: 'd1', from: days[0], to: days[1], limit: 10 })).items.map((p) => p.value), [7]);
    }));

    it('late and future points - a point from 1999 and one from 2100 are stored in partitions of their own', () => withSchema(async (schema, make) => {
      const s = make();
      await s.open();
      const old = Date.UTC(1999, 5, 15, 12);
      const future = Date.UTC(2100, 0, 1, 3);
      await s.writeBatch({ points: [pt(old, 1), pt(future, 3)], messages: [msg(old)], deadLetters: [] });
      const r = await s.range({ tenant: 'acme', device: 'd1', from: 0, to: future + 1, limit: 10 });
      assert.deepEqual(r.items.map((p) => [p.ts, p.value]), [[old, 1], [future, 3]]);
      assert.equal((await s.messages({ tenant: 'acme', from: old, to: old + 1, limit: 10 })).items.length, 1);
      const names = await partitionsOf(schema, 'points');
      assert.ok(names.includes('points_19990615') && names.includes('points_21000101'), names.join(','));
      assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 3, ts: future }]);
    }));

    it('partitions - weekly partitions align to the epoch and fill the gaps around a daily one; year 11476 gets one too (named by day number)', () => withSchema(async (schema, make) => {
      const daily = make();
      const weekly = make({ partitionDays: 7 });
      await daily.open();
      await weekly.open();
      await daily.writeBatch({ points: [pt(T0 + 3 * DAY + 5, 1)], messages: [], deadLetters: [] });
      // The week holding T0 (weeks start at multiples of 7 days since 1970-01-01, a Thursday) around the daily partition.
      const weekStart = Math.floor(T0 / (7 * DAY)) * 7 * DAY;
      const far = 300_000_000_000_000;
      await weekly.writeBatch({ points: [pt(weekStart, 2), pt(weekStart + 7 * DAY - 1, 3), pt(T0 + 3 * DAY + 6, 4), pt(far, 5)], messages: [], deadLetters: [] });
      const all = await daily.range({ tenant: 'acme', device: 'd1', from: 0, to: far + 1, limit: 10 });
      assert.deepEqual(all.items.map((p) => p.value), [2, 1, 4, 3, 5]);
      const bounds = await admin<{ name: string; bound: string }>(`SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`, [`"${schema}".points`]);
      const names = bounds.map((b) => b.name);
      const stamp = (t: number) => new Date(t).toISOString().slice(0, 10).replace(/-/g, '');
      // Jan 1 is a Thursday: the week is Jan 1-7, cut around the daily partition of Jan 4.
      assert.equal(weekStart, T0);
      for (const day of [0, 3, 4]) assert.ok(names.includes(`points_${stamp(T0 + day * DAY)}`), names.join(','));
      assert.deepEqual(bounds.filter((b) => ['points_20260101', 'points_20260104', 'points_20260105'].includes(b.name)).map((b) => b.bound).sort(), [
        `FOR VALUES FROM ('${T0}') TO ('${T0 + 3 * DAY}')`, `FOR VALUES FROM ('${T0 + 3 * DAY}') TO ('${T0 + 4 * DAY}')`, `FOR VALUES FROM ('${T0 + 4 * DAY}') TO ('${T0 + 7 * DAY}')`,
      ].sort());
      assert.ok(names.includes(`points_d${Math.floor(far / (7 * DAY)) * 7}`), names.join(','));
    }));

    it('a partition dropped by another node is created again when this node writes into it', () => withSchema(async (_schema, make) => {
      const a = make();
      const b = make();
      await a.open();
      await b.open();
      await a.writeBatch({ points: [pt(T0, 1)], messages: [msg(T0)], deadLetters: [] });
      // b drops the partition that a has cached.
      assert.equal(await b.deleteBefore(T0 + DAY), 2);
      await a.writeBatch({ points: [pt(T0 + 5, 2)], messages: [msg(T0 + 5)], deadLetters: [] });
      assert.deepEqual((await b.range({ tenant: 'acme', device: 'd1', from: T0, to: T0 + DAY, limit: 10 })).items.map((p) => p.value), [2]);
    }));

    it('two nodes writing the same series at once: each point stored once, latest state is the newest, no deadlock', () => withSchema(async (_schema, make) => {
      const a = make();
      const b = make();
      await Promise.all([a.open(), b.open()]);
      // Both nodes get the same 2,000 points (a redelivered batch), in opposite orders and batches.
      const all: TelemetryPoint[] = [];
      for (let i = 0; i < 2000; i++) all.push(pt(T0 + ((i * 7919) % 2000) * 10, i, { device: `dev-${i % 20}`, key: `k${i % 5}`, messageId: `m${i}` }));
      const reversed = [...all].reverse();
      const batches = (pts: TelemetryPoint[]) => Array.from({ length: 10 }, (_, j) => ({ points: pts.slice(j * 200, (j + 1) * 200), messages: [], deadLetters: [] }));
      await Promise.all([
        (async () => { for (const batch of batches(all)) await a.writeBatch(batch); })(),
        (async () => { for (const batch of batches(reversed)) await b.writeBatch(batch); })(),
      ]);
      for (let d = 0; d < 20; d++) {
        const mine = all.filter((p) => p.device === `dev-${d}`);
        const got = await a.range({ tenant: 'acme', device: `dev-${d}`, from: T0, to: T0 + DAY, limit: 1000 });
        assert.equal(got.items.length, mine.length);
        const newest = new Map<string, TelemetryPoint>();
        for (const p of mine) if ((newest.get(p.key)?.ts ?? -1) < p.ts) newest.set(p.key, p);
        assert.deepEqual(await b.latest('acme', `dev-${d}`), [...newest.values()].sort((x, y) => (x.key < y.key ? -1 : 1)).map((p) => ({ key: p.key, value: p.value, ts: p.ts })));
      }
    }));

    it('latest - at equal device time the larger message id wins, in any arrival order', () => withSchema(async (_schema, make) => {
      const s = make();
      await s.open();
      await s.writeBatch({ points: [pt(T0, 2, { messageId: 'b' })], messages: [], deadLetters: [] });
      await s.writeBatch({ points: [pt(T0, 1, { messageId: 'a' })], messages: [], deadLetters: [] });
      await s.writeBatch({ points: [pt(T0 + 5, 9, { messageId: 'a' }), pt(T0 + 5, 8, { messageId: 'z' }), pt(T0 + 5, 7, { messageId: 'c' })], messages: [], deadLetters: [] });
      assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 8, ts: T0 + 5 }]);
    }));

    for (const ingest of ['insert', 'copy'] as const) {
      it(`names and values with quotes, braces, tabs, backslashes and \\N survive the ${ingest} path byte for byte, in points, messages and dead letters`, () => withSchema(async (_schema, make) => {
        const s = make({ ingest });
        await s.open();
        const odd = ['a"b', '{x,y}', 'tab\there', 'new\nline', 'back\\slash', '\\N', 'NULL', '', 'ünï 😀', "it's"];
        const points = odd.map((v, i) => pt(T0 + i, 0, { device: `dev ${v}`, key: `k${v}`, messageId: `m${v}`, value: v }));
        const messages = odd.map((v, i) => ({ ...msg(T0 + i), device: `dev ${v}`, topic: `t/${v}`, messageId: `m${v}`, payload: new TextEncoder().encode(v) }));
        const deadLetters = odd.map((v) => ({ tenant: 'acme', project: v, device: `dev ${v}`, topic: v, messageId: `m${v}`, receiveTime: T0, reason: `bad ${v}`, kind: 'telemetry' as const, payload: new TextEncoder().encode(v) }));
        await s.writeBatch({ points, messages, deadLetters });
        for (const [i, p] of points.entries()) {
          const r = await s.range({ tenant: 'acme', device: p.device, from: T0, to: T0 + 100, limit: 5 });
          assert.deepEqual(r.items, [p]);
          const m = await s.messages({ tenant: 'acme', device: p.device, from: T0, to: T0 + 100, limit: 5 });
          assert.deepEqual(m.items.map((x) => ({ ...x, payload: [...x.payload] })), [{ ...messages[i], payload: [...messages[i].payload] }]);
        }
        const dl = await s.deadLetters('acme', 100);
        assert.deepEqual(dl.items.map(({ id: _id, failedAt: _f, ...d }) => ({ ...d, payload: [...d.payload] })).sort((a, b) => (a.messageId < b.messageId ? -1 : 1)),
          deadLetters.map((d) => ({ ...d, payload: [...d.payload] })).sort((a, b) => (a.messageId < b.messageId ? -1 : 1)));
      }));
    }

    it('a bad point refuses the whole batch: one transaction, nothing written', () => withSchema(async (_schema, make) => {
      const s = make();
      await s.open();
      await assert.rejects(s.writeBatch({ points: [pt(T0, 1), { ...pt(T0 + 1, 1), value: Number.NaN }], messages: [msg(T0)], deadLetters: [] }), { code: 'BAD_REQUEST' });
      // Failures inside the transaction roll back the points too, and are BAD_REQUEST (the data, not
      // the server): a missing topic, a NUL character PostgreSQL text cannot hold, a key too long to index.
      const bad = { ...msg(T0 + 2), topic: null as unknown as string };
      await assert.rejects(s.writeBatch({ points: [pt(T0 + 2, 5)], messages: [msg(T0 + 3), bad], deadLetters: [] }), { code: 'BAD_REQUEST' });
      await assert.rejects(s.writeBatch({ points: [pt(T0 + 2, 5), pt(T0 + 3, 0, { value: 'a\u0000b' })], messages: [], deadLetters: [] }), { code: 'BAD_REQUEST' });
      await assert.rejects(s.writeBatch({ points: [pt(T0 + 2, 5), pt(T0 + 3, 0, { key: randomBytes(6000).toString('base64') })], messages: [], deadLetters: [] }), { code: 'BAD_REQUEST' });
      assert.deepEqual(await s.latest('acme', 'd1'), []);
      assert.deepEqual((await s.messages({ tenant: 'acme', from: 0, to: T0 + DAY, limit: 10 })).items, []);
      assert.equal(s.status().ok, true);
    }));

    it('a connection killed mid-call: the call fails as STORE_UNAVAILABLE with its cause, status() recovers without traffic', () => withSchema(async (schema, make) => {
      const s = make();
      await s.open();
      await s.writeBatch({ points: [pt(T0, 1)], messages: [], deadLetters: [] });
      // Hold the retention lock elsewhere so the store's deleteBefore waits on the server, then kill its session.
      const holder = new pg.Client({ connectionString: URL });
      await holder.connect();
      try {
        await holder.query(`SELECT pg_advisory_lock(${LOCK_SPACE}, hashtext($1) # ${LockKind.retention})`, [schema]);
        const call = s.deleteBefore(T0).then(() => undefined, (e: unknown) => e);
        const app = `fluxgate ${schema}`;
        await waitFor(async () => (await admin(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [app])).length > 0,
          { what: 'deleteBefore to wait for the lock' });
        await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [app]);
        const err = await call;
        assert.ok(isFluxgateError(err, 'STORE_UNAVAILABLE'), String(err));
        assert.ok(err.cause instanceof Error);
        assert.equal(s.status().ok, false);
        assert.match(s.status().detail ?? '', /terminat/);
      } finally {
        await holder.end();
      }
      // Nothing else calls the store: status() probes the server itself.
      await waitFor(() => s.status().ok, { what: 'status() to recover' });
      await s.writeBatch({ points: [pt(T0 + 1, 2)], messages: [], deadLetters: [] });
      assert.deepEqual(await s.latest('acme', 'd1'), [{ key: 'temp', value: 2, ts: T0 + 1 }]);
    }));

    it('an unreachable server is STORE_UNAVAILABLE with the cause, and status() says so', async () => {
      const s = new PostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema: freshSchema() });
      try {
        const err = await s.open().catch((e: unknown) => e);
        assert.ok(isFluxgateError(err, 'STORE_UNAVAILABLE'), String(err));
        assert.ok(err.cause instanceof Error);
        assert.equal(s.status().ok, false);
        await assert.rejects(s.latest('acme', 'd1'), { code: 'STORE_UNAVAILABLE' });
      } finally {
        await s.close();
      }
    });
  });
}
