/**
 * @module Retention over a real node, on the embedded store and on PostgreSQL (a random schema):
 * two tenants with different raw windows lose old rows only where their own window has passed,
 * the expiring rows are in Parquet files first (read back with DuckDB, an independent reader,
 * and compared row by row and byte by byte with what the store held), a second pass writes
 * nothing new, a late message of an exported day goes to the next part file, roll-ups expire by
 * their own tier, and a pass running while ingest goes on loses nothing.
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { DuckDBInstance } from '@duckdb/node-api';
import type { RawMessage, Store } from '../../src/stores/store.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';
import { STORE_BACKENDS, PG_URL, pgAvailable } from '../helpers/store-backends.js';

const DAY = 86_400_000;
/** Every raw message of a tenant, oldest first. */
async function allMessages(store: Store, tenant: string): Promise<RawMessage[]> {
  const out: RawMessage[] = [];
  let after: string | undefined;
  do {
    const page = await store.messages({ tenant, from: Number.MIN_SAFE_INTEGER, to: Number.MAX_SAFE_INTEGER, limit: 5000, after });
    out.push(...page.items);
    after = page.next;
  } while (after);
  return out;
}

async function send(t: TestNode, device: string, token: string, body: unknown): Promise<void> {
  const r = await fetch(`${t.url}/api/v1/devices/${device}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 202, await r.text());
}

async function tenantWithDevice(t: TestNode, tenant: string, device: string, settings?: Record<string, number>): Promise<string> {
  const c = await t.api('POST', '/api/v1/tenants', { id: tenant });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  if (settings) {
    const p = await t.api('PATCH', `/api/v1/tenants/${tenant}`, { settings });
    assert.equal(p.status, 200, JSON.stringify(p.body));
  }
  const d = await t.api('POST', `/api/v1/devices?tenant=${tenant}`, { id: device });
  assert.equal(d.status, 201, JSON.stringify(d.body));
  return d.body.token as string;
}

/** The rows of Parquet files as DuckDB reads them, in the store's order. */
async function readParquet(glob: string): Promise<Array<Omit<RawMessage, 'payload'> & { payload: Buffer }>> {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    const r = await c.runAndReadAll(`SELECT epoch_ms("time") AS ts, tenant, project, device, topic, kind, payload, epoch_ms(receive_time) AS rt, message_id
      FROM read_parquet('${glob}') ORDER BY "time", device, message_id`);
    return r.getRowObjects().map((row) => ({
      ts: Number(row.ts), tenant: String(row.tenant), project: String(row.project), device: String(row.device), topic: String(row.topic),
      kind: String(row.kind) as RawMessage['kind'], payload: Buffer.from((row.payload as { bytes: Uint8Array }).bytes), receiveTime: Number(row.rt), messageId: String(row.message_id),
    }));
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

const asRows = (ms: RawMessage[]) => ms.map((m) => ({ ...m, payload: Buffer.from(m.payload) }));
const dayName = (ts: number) => new Date(Math.floor(ts / DAY) * DAY).toISOString().slice(0, 10);

for (const backend of STORE_BACKENDS) {
  describe(`retention (${backend.name} store)`, async () => {
    const skip = backend.name === 'postgres' && !(await pgAvailable()) ? `PostgreSQL not reachable at ${PG_URL}` : false;

    it('deletes raw rows per tenant window, exporting them to Parquet first; a second pass writes nothing; a late message goes to the next part', { skip }, async () => {
      const { store: storeCfg, cleanup } = backend.setup();
      const exports = await tempDir('fluxgate-exports-');
      const t = await startTestNode({ store: { ...storeCfg, retentionIntervalMs: 3_600_000 }, retention: { exportDir: exports.dir } });
      try {
        const acmeToken = await tenantWithDevice(t, 'acme', 'a1');
        const betaToken = await tenantWithDevice(t, 'beta', 'b1', { rawRetentionDays: 30 });
        const now = Date.now();
        const old10 = now - 10 * DAY;
        const old5 = now - 5 * DAY;
        for (const [dev, token] of [['a1', acmeToken], ['b1', betaToken]] as const) {
          await send(t, dev, token, [
            { ts: old10, id: `${dev}-o10a`, v: 1, s: 'x' }, { ts: old10 + 1, id: `${dev}-o10b`, v: 2 }, { ts: old10 + 2, id: `${dev}-o10c` },
            { ts: old5, id: `${dev}-o5`, v: 3, note: 'ünïcødé' }, { ts: now, id: `${dev}-now`, v: 4 },
          ]);
        }
        const store = t.node.store;
        await waitFor(async () => (await allMessages(store, 'acme')).length === 5 && (await allMessages(store, 'beta')).length === 5, { what: 'messages stored' });
        const acmeBefore = await allMessages(store, 'acme');
        const betaBefore = await allMessages(store, 'beta');

        const run = await t.api('POST', '/api/v1/retention/run');
        assert.equal(run.status, 200, JSON.stringify(run.body));
        assert.deepEqual(run.body.errors, []);
        assert.equal(run.body.exportedFiles, 2);
        assert.equal(run.body.exportedRows, 4);
        assert.ok(run.body.deleted.raw >= 4, `raw rows deleted: ${run.body.deleted.raw}`);

        // acme (3 days) keeps only today's message; beta (30 days) keeps all five.
        assert.deepEqual((await allMessages(store, 'acme')).map((m) => m.messageId), ['a1-now']);
        assert.deepEqual((await allMessages(store, 'beta')).map((m) => m.messageId), betaBefore.map((m) => m.messageId));
        const points = (tenant: string, device: string) => store.range({ tenant, device, key: 'v', from: Number.MIN_SAFE_INTEGER, to: Number.MAX_SAFE_INTEGER, limit: 100 });
        assert.deepEqual((await points('acme', 'a1')).items.map((p) => p.value), [4]);
        assert.deepEqual((await points('beta', 'b1')).items.map((p) => p.value), [1, 2, 3, 4]);

        // The files hold exactly the expired rows, as the store had them.
        assert.deepEqual((await readdir(join(exports.dir, 'acme'))).sort(), [`${dayName(old10)}.parquet`, `${dayName(old5)}.parquet`].sort());
        await assert.rejects(readdir(join(exports.dir, 'beta')), { code: 'ENOENT' });
        const expired = acmeBefore.filter((m) => m.ts < now - 3 * DAY);
        assert.equal(expired.length, 4);
        assert.deepEqual(await readParquet(join(exports.dir, 'acme', '*.parquet')), asRows(expired));

        // Idempotent: nothing left to export, no file rewritten.
        const again = await t.api('POST', '/api/v1/retention/run');
        assert.equal(again.body.exportedFiles, 0);
        assert.equal(again.body.deleted.raw, 0);

        // A late message of an exported day: stored, then exported to part 1 and deleted.
        await send(t, 'a1', acmeToken, [{ ts: old10 + 500, id: 'a1-late', v: 9 }]);
        await waitFor(async () => (await allMessages(store, 'acme')).length === 2, { what: 'late message stored' });
        const late = (await allMessages(store, 'acme')).filter((m) => m.messageId === 'a1-late');
        const third = await t.api('POST', '/api/v1/retention/run');
        assert.equal(third.body.exportedFiles, 1);
        assert.deepEqual(await readParquet(join(exports.dir, 'acme', `${dayName(old10)}.1.parquet`)), asRows(late));
        assert.deepEqual((await allMessages(store, 'acme')).map((m) => m.messageId), ['a1-now']);

        // What each tenant sees, and what operators see.
        const view = await t.api('GET', '/api/v1/retention?tenant=beta');
        assert.equal(view.status, 200);
        assert.equal(view.body.days.raw, 30);
        assert.equal(view.body.exportsToParquet, true);
        assert.ok(view.body.lastPass.finishedAt >= view.body.lastPass.startedAt);
        const acmeView = await t.api('GET', '/api/v1/retention?tenant=acme');
        assert.equal(acmeView.body.days.raw, 3);
        assert.equal(acmeView.body.lastPass.exports.length, 1);
        const ready = await fetch(`${t.url}/readyz`).then((r) => r.json()) as { components: Record<string, { detail: string }> };
        assert.match(ready.components.retention.detail, /last pass .* deleted raw/);
        const metrics = await fetch(`${t.url}/metrics`).then((r) => r.text());
        assert.match(metrics, /fluxgate_retention_deleted_total\{tier="raw"\} [1-9]/);
        assert.match(metrics, /fluxgate_retention_exported_rows_total 5/);
        assert.match(metrics, /fluxgate_retention_last_run_timestamp_seconds \d/);
      } finally {
        await t.stop();
        await exports.cleanup();
        await cleanup();
      }
    });

    it('an export that cannot be written keeps the tenant\'s raw rows and says why', { skip }, async () => {
      const { store: storeCfg, cleanup } = backend.setup();
      const tmp = await tempDir('fluxgate-exports-');
      // A file where the export directory should be: mkdir of <exportDir>/acme fails.
      const blocked = join(tmp.dir, 'not-a-dir');
      await writeFile(blocked, 'x');
      const t = await startTestNode({ store: { ...storeCfg, retentionIntervalMs: 3_600_000 }, retention: { exportDir: blocked } });
      try {
        const token = await tenantWithDevice(t, 'acme', 'a1');
        await send(t, 'a1', token, [{ ts: Date.now() - 10 * DAY, id: 'old', v: 1 }, { id: 'new', v: 2 }]);
        await waitFor(async () => (await allMessages(t.node.store, 'acme')).length === 2, { what: 'messages stored' });
        const run = await t.api('POST', '/api/v1/retention/run');
        assert.equal(run.status, 200);
        assert.equal(run.body.errors.length, 1);
        assert.match(run.body.errors[0], /retention\.exportDir/);
        assert.deepEqual((await allMessages(t.node.store, 'acme')).map((m) => m.messageId).sort(), ['new', 'old']);
        const view = await t.api('GET', '/api/v1/retention?tenant=acme');
        assert.equal(view.body.lastPass.ok, false);
        const metrics = await fetch(`${t.url}/metrics`).then((r) => r.text());
        assert.match(metrics, /fluxgate_retention_last_run_success 0/);
      } finally {
        await t.stop();
        await tmp.cleanup();
        await cleanup();
      }
    });

    it('expires 1-minute roll-ups after their own window while hourly ones stay', { skip }, async (ctx) => {
      const { store: storeCfg, cleanup } = backend.setup();
      const t = await startTestNode({ store: { ...storeCfg, retentionIntervalMs: 3_600_000 } });
      try {
        const store = t.node.store as Store & { rollups?: (q: object) => Promise<unknown[]> };
        if (typeof store.rollups !== 'function') {
          ctx.skip('this store keeps no roll-ups yet');
          return;
        }
        const token = await tenantWithDevice(t, 'acme', 'r1', { rawRetentionDays: 0 });
        const old = Date.now() - 40 * DAY;
        await send(t, 'r1', token, [{ ts: old, id: 'r-old', v: 1 }, { ts: Date.now(), id: 'r-now', v: 2 }]);
        const q = (resolution: string) => store.rollups!({ tenant: 'acme', device: 'r1', key: 'v', from: old - DAY, to: Date.now() + DAY, resolution });
        await waitFor(async () => (await q('1m')).length === 2 && (await q('1h')).length === 2, { what: 'roll-ups stored' });
        const run = await t.api('POST', '/api/v1/retention/run');
        assert.equal(run.body.rollupsSkipped, false);
        assert.equal(run.body.deleted.rollup_1m, 1);
        assert.equal(run.body.deleted.rollup_1h, 0);
        assert.equal((await q('1m')).length, 1);
        assert.equal((await q('1h')).length, 2);
        // rawRetentionDays 0: the raw rows are kept for ever.
        assert.equal((await allMessages(t.node.store, 'acme')).length, 2);
      } finally {
        await t.stop();
        await cleanup();
      }
    });

    it('postgres - a daily partition is dropped only when every tenant with rows in it is past it', { skip: skip || (backend.name !== 'postgres' && 'partitions are PostgreSQL only') }, async () => {
      const { store: storeCfg, cleanup } = backend.setup();
      const t = await startTestNode({ store: { ...storeCfg, retentionIntervalMs: 3_600_000 } });
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        const aToken = await tenantWithDevice(t, 'acme', 'a1');
        const bToken = await tenantWithDevice(t, 'beta', 'b1', { rawRetentionDays: 30 });
        const day10 = Math.floor((Date.now() - 10 * DAY) / DAY) * DAY + 3_600_000;
        const day12 = day10 - 2 * DAY;
        // Day -10 holds only acme's rows; day -12 holds acme's and one of beta's.
        await send(t, 'a1', aToken, [{ ts: day10, id: 'a10', v: 1 }, { ts: day12, id: 'a12', v: 2 }]);
        await send(t, 'b1', bToken, [{ ts: day12 + 1, id: 'b12', v: 3 }]);
        await waitFor(async () => (await allMessages(t.node.store, 'acme')).length === 2 && (await allMessages(t.node.store, 'beta')).length === 1, { what: 'rows stored' });
        const schema = (storeCfg as { schema: string }).schema;
        const exists = async (table: string, ts: number) => (await c.query(`SELECT to_regclass($1) AS r`, [`"${schema}".${table}_${new Date(Math.floor(ts / DAY) * DAY).toISOString().slice(0, 10).replace(/-/g, '')}`])).rows[0].r !== null;
        assert.ok(await exists('messages', day10) && await exists('points', day10) && await exists('messages', day12));
        const run = await t.api('POST', '/api/v1/retention/run');
        assert.deepEqual(run.body.errors, []);
        assert.equal(run.body.deleted.raw, 4, 'acme\'s two messages and two points');
        // Day -10: dropped whole (beta, with its longer window, has no rows there).
        assert.equal(await exists('messages', day10), false);
        assert.equal(await exists('points', day10), false);
        // Day -12: beta's row keeps the partition; acme's rows in it are gone.
        assert.equal(await exists('messages', day12), true);
        assert.deepEqual((await allMessages(t.node.store, 'acme')).map((m) => m.messageId), []);
        assert.deepEqual((await allMessages(t.node.store, 'beta')).map((m) => m.messageId), ['b12']);
      } finally {
        await c.end();
        await t.stop();
        await cleanup();
      }
    });

    it('a pass that deletes many rows while ingest goes on loses no new message', { skip }, async () => {
      const { store: storeCfg, cleanup } = backend.setup();
      const t = await startTestNode({ store: { ...storeCfg, retentionIntervalMs: 3_600_000 } });
      try {
        const token = await tenantWithDevice(t, 'acme', 'bulk');
        const old = Date.now() - 10 * DAY;
        const OLD = 20_000;
        for (let b = 0; b < OLD / 1000; b++) {
          await send(t, 'bulk', token, Array.from({ length: 1000 }, (_, i) => ({ ts: old + b * 1000 + i, id: `old-${b}-${i}`, v: i })));
        }
        const store = t.node.store;
        await waitFor(async () => (await allMessages(store, 'acme')).length === OLD, { what: 'old messages stored', timeoutMs: 60_000 });
        let sent = 0;
        let passDone = false;
        const pass = t.api('POST', '/api/v1/retention/run').finally(() => { passDone = true; });
        // Keep sending current messages until the pass is over (and a few batches more).
        let extra = 0;
        while (!passDone || extra++ < 3) {
          await send(t, 'bulk', token, Array.from({ length: 50 }, (_, i) => ({ id: `new-${sent + i}`, v: i })));
          sent += 50;
        }
        const r = await pass;
        assert.equal(r.status, 200);
        assert.deepEqual(r.body.errors, []);
        assert.equal(r.body.deleted.raw, 2 * OLD, 'every old message and its point');
        const left = await waitFor(async () => { const m = await allMessages(store, 'acme'); return m.length === sent ? m : undefined; }, { what: `all ${sent} new messages stored`, timeoutMs: 30_000 });
        assert.ok(left.every((m) => m.messageId.startsWith('new-')));
        assert.equal(new Set(left.map((m) => m.messageId)).size, sent);
      } finally {
        await t.stop();
        await cleanup();
      }
    });
  });
}
