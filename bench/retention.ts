/**
 * @module Ingest during a large retention pass vs without one. A node in a child process (one
 * core) is preloaded over HTTP with --old messages of 3 keys whose device time is 10 days old,
 * kept while the tenant's raw window is 0 (for ever). Then, twice, the same HTTP ingest load
 * (batches of --batch current messages over --connections keep-alive connections): first alone
 * for --seconds, then while a retention pass (raw window 3 days, POST /api/v1/retention/run)
 * deletes every preloaded point and message; the load stops when the pass ends. Prints the
 * accepted messages/s, request latency and how fast processing stored them (until the log lag
 * is back to 0) for both, and the pass's rows and duration.
 *
 *   node --import tsx bench/retention.ts [--old 200000] [--seconds 10] [--batch 20] [--connections 8]
 *     [--store postgres://postgres@127.0.0.1:5432/test] [--export] [--shared-partition]
 *
 * --shared-partition adds a tenant with a 30-day window and one message on the same old day, so
 * PostgreSQL cannot drop that day's partitions and deletes the rows in 20k-row statements.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ADMIN_KEY, createDevices, fmt, load, machine, pin, startNodeChild, stopChild, untrackDir, type Api, type LoadResult } from './run.js';

const { values: args } = parseArgs({
  options: {
    old: { type: 'string', default: '200000' },
    seconds: { type: 'string', default: '10' },
    batch: { type: 'string', default: '20' },
    connections: { type: 'string', default: '8' },
    store: { type: 'string' },
    export: { type: 'boolean', default: false },
    'shared-partition': { type: 'boolean', default: false },
  },
});
const OLD = Number(args.old);
const SECONDS = Number(args.seconds);
const BATCH = Number(args.batch);
const CONNECTIONS = Number(args.connections);
const DEVICES = 100;
const DAY = 86_400_000;

async function lag(url: string): Promise<number> {
  const r = await fetch(`${url}/readyz`).then((x) => x.json()) as { components: Record<string, { detail?: string }> };
  return Number(/lag (\d+) records/.exec(r.components.log?.detail ?? '')?.[1] ?? NaN);
}

/** Waits until processing has stored everything the log holds; returns when (performance.now()). */
async function caughtUp(url: string, maxMs = 600_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  while ((await lag(url)) !== 0) {
    if (Date.now() > deadline) throw new Error('processing did not catch up');
    await new Promise((r) => setTimeout(r, 50));
  }
  return performance.now();
}

async function setRawDays(api: Api, days: number): Promise<void> {
  const r = await api('PATCH', '/api/v1/tenants/default', { settings: { rawRetentionDays: days } });
  if (r.status !== 200) throw new Error(`PATCH tenant: ${r.status} ${JSON.stringify(r.body)}`);
}

const dir = mkdtempSync(join(tmpdir(), 'fluxgate-bench-retention-'));
const schema = args.store ? `fluxgate_bench_${randomBytes(4).toString('hex')}` : undefined;
const env: Record<string, string> = { FLUXGATE_STORE_RETENTION_INTERVAL_MS: String(24 * 3600_000) };
if (args.store) Object.assign(env, { FLUXGATE_STORE: args.store, FLUXGATE_STORE_SCHEMA: schema });
if (args.export) env.FLUXGATE_RETENTION_EXPORT_DIR = join(dir, 'exports');
pin('1');
const node = await startNodeChild(join(dir, 'data'), env, { cpu: '0' });
try {
  console.log(`# retention bench — ${machine()}`);
  console.log(`store ${args.store ? 'postgres' : 'embedded'}${args.export ? ', Parquet export on' : ''}${args['shared-partition'] ? ', another tenant keeps a row on the old day' : ''}; node on core 0, load generator on core 1`);
  await setRawDays(node.api, 0);
  const tokens = await createDevices(node.api, 'd', DEVICES);
  if (args['shared-partition']) {
    const other = 'other';
    if ((await node.api('POST', '/api/v1/tenants', { id: other })).status !== 201) throw new Error('create tenant other');
    const p = await node.api('PATCH', `/api/v1/tenants/${other}`, { settings: { rawRetentionDays: 30 } });
    if (p.status !== 200) throw new Error(`PATCH tenant other: ${p.status}`);
    const d = await node.api('POST', `/api/v1/devices?tenant=${other}`, { id: 'keep' });
    const r = await fetch(`${node.url}/api/v1/devices/keep/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${d.body.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ ts: Date.now() - 10 * DAY, k: 1 }) });
    if (r.status !== 202) throw new Error(`ingest for tenant other: ${r.status}`);
  }

  // Preload: OLD messages 10 days old, 1,000 per request.
  const old = Date.now() - 10 * DAY;
  const t0 = performance.now();
  for (let sent = 0; sent < OLD;) {
    const reqs = [];
    for (let c = 0; c < 4 && sent < OLD; c++) {
      const n = Math.min(1000, OLD - sent);
      const dev = (sent / 1000) % DEVICES;
      const body = JSON.stringify(Array.from({ length: n }, (_, i) => ({ ts: old + sent + i, a: i, b: i * 2, c: 'x' })));
      reqs.push(fetch(`${node.url}/api/v1/devices/d${dev}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${tokens[dev]}`, 'content-type': 'application/json' }, body })
        .then(async (r) => { if (r.status !== 202) throw new Error(`preload: ${r.status} ${await r.text()}`); }));
      sent += n;
    }
    await Promise.all(reqs);
  }
  await caughtUp(node.url);
  console.log(`preloaded ${fmt(OLD)} old messages (${fmt(OLD * 3)} points) in ${fmt((performance.now() - t0) / 1000, 1)} s`);

  const body = JSON.stringify(Array.from({ length: BATCH }, (_, i) => ({ a: i, b: i * 2, c: 'y' })));
  const request = (i: number) => ({
    method: 'POST' as const, path: `/api/v1/devices/d${i % DEVICES}/telemetry`, body,
    headers: { authorization: `Bearer ${tokens[i % DEVICES]}`, 'content-type': 'application/json' },
  });
  const report = (name: string, r: LoadResult, storedSeconds: number) => {
    const msgs = r.ok * BATCH;
    console.log(`${name}: ${fmt(msgs / r.seconds)} msg/s accepted over ${fmt(r.seconds, 1)} s (${fmt(r.okPerSec)} req/s, latency p50 ${fmt(r.latency.p50, 1)} ms, p99 ${fmt(r.latency.p99, 1)} ms, max ${fmt(r.latency.max, 1)} ms; non-2xx ${r.requests - r.ok}); stored at ${fmt(msgs / storedSeconds)} msg/s (until log lag 0); other processes used ${r.foreign}% of a core`);
  };

  // A: ingest alone.
  const a0 = performance.now();
  const alone = await load({ url: node.url, connections: CONNECTIONS, seconds: SECONDS, request, watchPids: [node.pid] });
  report('without retention', alone, ((await caughtUp(node.url)) - a0) / 1000);

  // B: the same ingest while a pass deletes every preloaded row.
  await setRawDays(node.api, 3);
  const control: { stop?: () => void } = {};
  const b0 = performance.now();
  let passMs = 0;
  const pass = node.api('POST', '/api/v1/retention/run').then((r) => {
    passMs = performance.now() - b0;
    control.stop?.();
    if (r.status !== 200) throw new Error(`retention run: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as { deleted: { raw: number }; exportedRows: number; exportedFiles: number; errors: string[] };
  });
  const during = await load({ url: node.url, connections: CONNECTIONS, seconds: Math.max(SECONDS, 600), request, watchPids: [node.pid], control });
  const p = await pass;
  report('during a retention pass', during, ((await caughtUp(node.url)) - b0) / 1000);
  console.log(`retention pass: ${fmt(p.deleted.raw)} rows deleted (points + messages) in ${fmt(passMs / 1000, 1)} s = ${fmt(p.deleted.raw / (passMs / 1000))} rows/s${args.export ? `; exported ${fmt(p.exportedRows)} rows to ${p.exportedFiles} Parquet files first` : ''}${p.errors.length ? `; errors: ${p.errors.join('; ')}` : ''}`);
} finally {
  await stopChild(node.child);
  rmSync(dir, { recursive: true, force: true });
  untrackDir(dir);
  if (args.store && schema) {
    const c = new pg.Client({ connectionString: args.store });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => c.end());
  }
}
void ADMIN_KEY;
