/**
 * @module Engine choice for the embedded store, by measurement: SQLite (better-sqlite3) vs
 * DuckDB (@duckdb/node-api). Each engine ingests the same synthetic fleet (1,000 devices ×
 * 3 keys, one message per device every 30 s) with idempotent writes keyed on
 * (tenant, device, key, ts, message id) plus the latest-state upsert, then replays a slice
 * to prove a replay stores nothing twice, and times a 1-minute bucketed avg over one
 * device-key for a day and a latest-state read. Bounded: each engine stops ingesting after
 * --seconds (default 50) even if it has not reached the target row count. DuckDB is not a
 * project dependency; `npm install --no-save @duckdb/node-api` brings it in, and without it
 * its run is skipped with a note.
 *
 *   node --import tsx bench/store-choice.ts [--rows 3000000] [--seconds 50] [--engine sqlite|sqlite-staged|sqlite-direct|duckdb|all]
 */
import Database from 'better-sqlite3';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '3000000' },
    engine: { type: 'string', default: 'all' },
    seconds: { type: 'string', default: process.env.BENCH_SECONDS ?? '50' },
    batch: { type: 'string', default: '5000' },
  },
});
const TARGET_ROWS = Number(args.rows);
const MAX_MS = Number(args.seconds) * 1000;
const BATCH = Number(args.batch);
const DEVICES = 1000;
const KEYS = ['temperature', 'humidity', 'voltage'];
const STEP_MS = 30_000;
const T0 = Date.UTC(2026, 10, 1);
const TENANT = 'acme';
const PROJECT = 'plant-7';

interface Point { device: number; key: number; ts: number; value: number; messageId: string }

/** Points in arrival order: time-major, every device reports all keys in one message. */
function* points(limit: number): Generator<Point[]> {
  let batch: Point[] = [];
  let n = 0;
  for (let step = 0; ; step++) {
    const ts = T0 + step * STEP_MS;
    for (let d = 0; d < DEVICES; d++) {
      const messageId = `${d.toString(36)}-${step.toString(36).padStart(6, '0')}-a1b2c3d4`;
      for (let k = 0; k < KEYS.length; k++) {
        batch.push({ device: d, key: k, ts, value: 20 + ((d * 7 + step * 13 + k) % 1000) / 10, messageId });
        if (++n >= limit) { yield batch; return; }
        if (batch.length === BATCH) { yield batch; batch = []; }
      }
    }
  }
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

interface Result { engine: string; rows: number; seconds: number; rowsPerSec: number; lastFifthRowsPerSec: number; rowsPerCpuSecond: number; bytesPerRow: number; replayOk: boolean; bucketMs: number; buckets: number; latestMs: number }

function timed<T>(fn: () => T): [T, number] {
  const t = performance.now();
  const r = fn();
  return [r, performance.now() - t];
}

async function timedAsync<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

/** Ingest loop shared by both engines; reports overall rate and the rate over the last fifth. */
async function ingest(write: (b: Point[]) => void | Promise<void>): Promise<{ rows: number; seconds: number; lastFifth: number; cpuSeconds: number }> {
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  let rows = 0;
  const marks: Array<[number, number]> = [];
  for (const b of points(TARGET_ROWS)) {
    await write(b);
    rows += b.length;
    marks.push([performance.now(), rows]);
    if (performance.now() - start > MAX_MS) break;
  }
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const cut = marks[Math.floor(marks.length * 0.8)] ?? [start, 0];
  return { rows, seconds: (end - start) / 1000, lastFifth: (rows - cut[1]) / ((end - cut[0]) / 1000), cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/**
 * `staged` is the layout src/stores/embedded uses: writes append to a time-ordered table and a
 * compaction moves them, sorted by series, into the series-ordered table every COMPACT_ROWS.
 * `direct` inserts into the series-ordered table at once (kept to show why staging exists).
 */
async function benchSqlite(dir: string, layout: 'direct' | 'staged'): Promise<Result> {
  const COMPACT_ROWS = 250_000;
  const db = new Database(join(dir, 'store.db'));
  db.pragma('page_size = 8192');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('cache_size = -262144');
  db.pragma('temp_store = MEMORY');
  db.pragma('wal_autocheckpoint = 4000');
  // Same shape as src/stores/embedded: names interned to small integers, tenant first in every key.
  db.exec(`
    CREATE TABLE names (id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, tenant_id INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE (kind, tenant_id, name));
    CREATE TABLE points (tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
      message_id TEXT NOT NULL, project_id INTEGER NOT NULL, v, PRIMARY KEY (tenant_id, device_id, key_id, ts, message_id)) WITHOUT ROWID;
    CREATE TABLE latest (tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
      message_id TEXT NOT NULL, v, PRIMARY KEY (tenant_id, device_id, key_id)) WITHOUT ROWID;
    CREATE TABLE points_recent (tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
      message_id TEXT NOT NULL, project_id INTEGER NOT NULL, v, PRIMARY KEY (tenant_id, ts, device_id, key_id, message_id)) WITHOUT ROWID;
  `);
  const target = layout === 'staged' ? 'points_recent' : 'points';
  const compact = db.transaction(() => {
    db.exec('INSERT OR IGNORE INTO points SELECT * FROM points_recent ORDER BY tenant_id, device_id, key_id, ts, message_id; DELETE FROM points_recent;');
  });
  let pending = 0;
  const intern = db.prepare('INSERT INTO names (kind, tenant_id, name) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET name = excluded.name RETURNING id');
  const ids = new Map<string, number>();
  const id = (kind: number, tenant: number, name: string): number => {
    const k = `${kind}\u0000${tenant}\u0000${name}`;
    let v = ids.get(k);
    if (v === undefined) { v = (intern.get(kind, tenant, name) as { id: number }).id; ids.set(k, v); }
    return v;
  };
  const tenantId = id(0, 0, TENANT);
  const projectId = id(1, tenantId, PROJECT);
  const deviceIds = Array.from({ length: DEVICES }, (_, d) => id(2, tenantId, `dev-${d}`));
  const keyIds = KEYS.map((k) => id(3, 0, k));
  const ROWS_PER_STMT = 100;
  const multi = (n: number) => db.prepare(`INSERT OR IGNORE INTO ${target} VALUES ${Array(n).fill('(?,?,?,?,?,?,?)').join(',')}`);
  const insertMany = multi(ROWS_PER_STMT);
  const insertOne = multi(1);
  const upsertSql = (n: number) => db.prepare(`INSERT INTO latest VALUES ${Array(n).fill('(?,?,?,?,?,?)').join(',')}
    ON CONFLICT DO UPDATE SET ts = excluded.ts, message_id = excluded.message_id, v = excluded.v
    WHERE excluded.ts > latest.ts OR (excluded.ts = latest.ts AND excluded.message_id > latest.message_id)`);
  const upsertMany = upsertSql(ROWS_PER_STMT);
  const upsertOne = upsertSql(1);
  const params: unknown[] = new Array(ROWS_PER_STMT * 7);
  const latestParams: unknown[] = new Array(ROWS_PER_STMT * 6);
  const write = db.transaction((b: Point[]) => {
    let i = 0;
    for (; i + ROWS_PER_STMT <= b.length; i += ROWS_PER_STMT) {
      for (let j = 0; j < ROWS_PER_STMT; j++) {
        const p = b[i + j], o = j * 7;
        params[o] = tenantId; params[o + 1] = deviceIds[p.device]; params[o + 2] = keyIds[p.key]; params[o + 3] = p.ts;
        params[o + 4] = p.messageId; params[o + 5] = projectId; params[o + 6] = p.value;
      }
      insertMany.run(params);
    }
    for (; i < b.length; i++) {
      const p = b[i];
      insertOne.run(tenantId, deviceIds[p.device], keyIds[p.key], p.ts, p.messageId, projectId, p.value);
    }
    // Latest state: one upsert per series per batch, the batch's winner chosen in JS.
    const win = new Map<number, Point>();
    for (const p of b) {
      const k = p.device * 16 + p.key;
      const w = win.get(k);
      if (!w || p.ts > w.ts || (p.ts === w.ts && p.messageId > w.messageId)) win.set(k, p);
    }
    const winners = [...win.values()];
    let w = 0;
    for (; w + ROWS_PER_STMT <= winners.length; w += ROWS_PER_STMT) {
      for (let j = 0; j < ROWS_PER_STMT; j++) {
        const p = winners[w + j], o = j * 6;
        latestParams[o] = tenantId; latestParams[o + 1] = deviceIds[p.device]; latestParams[o + 2] = keyIds[p.key];
        latestParams[o + 3] = p.ts; latestParams[o + 4] = p.messageId; latestParams[o + 5] = p.value;
      }
      upsertMany.run(latestParams);
    }
    for (; w < winners.length; w++) {
      const p = winners[w];
      upsertOne.run(tenantId, deviceIds[p.device], keyIds[p.key], p.ts, p.messageId, p.value);
    }
  });
  const writeAndCompact = (b: Point[]) => {
    write(b);
    pending += b.length;
    if (layout === 'staged' && pending >= COMPACT_ROWS) { compact(); pending = 0; }
  };
  const ing = await ingest(writeAndCompact);
  if (layout === 'staged') compact();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const bytes = dirBytes(dir);
  // Replay the first 50,000 points: a replay must store nothing twice.
  for (const b of points(Math.min(50_000, ing.rows))) writeAndCompact(b);
  if (layout === 'staged') compact();
  const count = (db.prepare('SELECT count(*) AS n FROM points').get() as { n: number }).n;
  const bucketSql = db.prepare(`SELECT ts - ts % 60000 AS b, avg(v) AS avg, count(*) AS n FROM points
    WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts >= ? AND ts < ? GROUP BY b ORDER BY b`);
  const latestSql = db.prepare('SELECT key_id, ts, v FROM latest WHERE tenant_id = ? AND device_id = ?');
  bucketSql.all(tenantId, deviceIds[500], keyIds[1], T0, T0 + 86_400_000);
  const [buckets, bucketMs] = timed(() => bucketSql.all(tenantId, deviceIds[500], keyIds[1], T0, T0 + 86_400_000));
  const [, latestMs] = timed(() => latestSql.all(tenantId, deviceIds[777]));
  db.close();
  return { engine: `SQLite ${layout} ${(new Database(':memory:').prepare('select sqlite_version() v').get() as { v: string }).v}`, rows: ing.rows, seconds: ing.seconds, rowsPerSec: ing.rows / ing.seconds, lastFifthRowsPerSec: ing.lastFifth, rowsPerCpuSecond: ing.rows / ing.cpuSeconds, bytesPerRow: bytes / ing.rows, replayOk: count === ing.rows, bucketMs, buckets: buckets.length, latestMs };
}

async function benchDuckdb(dir: string): Promise<Result> {
  // DuckDB is not a dependency (the choice fell on SQLite, and its lock entries break `npm ci`):
  // install it for this comparison with `npm install --no-save @duckdb/node-api`.
  const duckdbModule: string = '@duckdb/node-api';
  const { DuckDBInstance } = await import(duckdbModule).catch(() => {
    throw new Error('DuckDB is not installed: run `npm install --no-save @duckdb/node-api` to include it in this comparison');
  });
  const inst = await DuckDBInstance.create(join(dir, 'store.duckdb'));
  const c = await inst.connect();
  await c.run(`
    CREATE TABLE points (tenant VARCHAR, project VARCHAR, device VARCHAR, key VARCHAR, ts BIGINT, message_id VARCHAR, v DOUBLE,
      PRIMARY KEY (tenant, device, key, ts, message_id));
    CREATE TABLE latest (tenant VARCHAR, device VARCHAR, key VARCHAR, ts BIGINT, message_id VARCHAR, v DOUBLE, PRIMARY KEY (tenant, device, key));
    CREATE TABLE staging (tenant VARCHAR, project VARCHAR, device VARCHAR, key VARCHAR, ts BIGINT, message_id VARCHAR, v DOUBLE);
  `);
  const deviceNames = Array.from({ length: DEVICES }, (_, d) => `dev-${d}`);
  // The appender cannot skip duplicates, so a batch lands in a staging table and moves with INSERT OR IGNORE.
  const write = async (b: Point[]) => {
    const app = await c.createAppender('staging');
    for (const p of b) {
      app.appendVarchar(TENANT); app.appendVarchar(PROJECT); app.appendVarchar(deviceNames[p.device]); app.appendVarchar(KEYS[p.key]);
      app.appendBigInt(BigInt(p.ts)); app.appendVarchar(p.messageId); app.appendDouble(p.value); app.endRow();
    }
    app.closeSync();
    await c.run(`BEGIN;
      INSERT OR IGNORE INTO points SELECT * FROM staging;
      INSERT INTO latest SELECT tenant, device, key, max(ts), arg_max(message_id, ts), arg_max(v, ts) FROM staging GROUP BY ALL
        ON CONFLICT DO UPDATE SET ts = excluded.ts, message_id = excluded.message_id, v = excluded.v WHERE excluded.ts > latest.ts;
      DELETE FROM staging;
      COMMIT;`);
  };
  const ing = await ingest(write);
  await c.run('CHECKPOINT');
  const bytes = dirBytes(dir);
  for (const b of points(Math.min(50_000, ing.rows))) await write(b);
  const count = Number((await c.runAndReadAll('SELECT count(*) FROM points')).getRows()[0][0]);
  const bucketSql = `SELECT ts - ts % 60000 AS b, avg(v), count(*) FROM points WHERE tenant = 'acme' AND device = 'dev-500' AND key = 'humidity'
    AND ts >= ${T0} AND ts < ${T0 + 86_400_000} GROUP BY b ORDER BY b`;
  await c.runAndReadAll(bucketSql);
  const [buckets, bucketMs] = await timedAsync(async () => (await c.runAndReadAll(bucketSql)).getRows());
  const [, latestMs] = await timedAsync(async () => (await c.runAndReadAll(`SELECT key, ts, v FROM latest WHERE tenant = 'acme' AND device = 'dev-777'`)).getRows());
  c.closeSync();
  inst.closeSync();
  const version = '1.5.6';
  return { engine: `DuckDB ${version}`, rows: ing.rows, seconds: ing.seconds, rowsPerSec: ing.rows / ing.seconds, lastFifthRowsPerSec: ing.lastFifth, rowsPerCpuSecond: ing.rows / ing.cpuSeconds, bytesPerRow: bytes / ing.rows, replayOk: count === ing.rows, bucketMs, buckets: buckets.length, latestMs };
}

const results: Result[] = [];
for (const engine of ['sqlite-staged', 'sqlite-direct', 'duckdb']) {
  if (args.engine !== 'all' && !engine.startsWith(args.engine ?? '')) continue;
  const dir = mkdtempSync(join(tmpdir(), `fluxgate-bench-${engine}-`));
  try {
    const r = engine === 'duckdb' ? await benchDuckdb(dir) : await benchSqlite(dir, engine === 'sqlite-direct' ? 'direct' : 'staged');
    results.push(r);
    console.log(JSON.stringify(r));
  } catch (err) {
    // An engine that cannot run (DuckDB not installed) is reported and skipped; the others still print.
    if (engine !== 'duckdb') throw err;
    console.error(`skipped ${engine}: ${(err as Error).message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('\n| Engine | Rows | Ingest rows/s (overall) | rows/s (last fifth) | rows per CPU-second | Bytes/row on disk | Replay stored once | 1-min avg over 1 device-key, 1 day | Latest read |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.engine} | ${r.rows.toLocaleString('en')} | ${Math.round(r.rowsPerSec).toLocaleString('en')} | ${Math.round(r.lastFifthRowsPerSec).toLocaleString('en')} | ${Math.round(r.rowsPerCpuSecond).toLocaleString('en')} | ${r.bytesPerRow.toFixed(1)} | ${r.replayOk ? 'yes' : 'NO'} | ${r.bucketMs.toFixed(2)} ms (${r.buckets} buckets) | ${r.latestMs.toFixed(3)} ms |`);
}
