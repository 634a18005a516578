/**
 * @module writeBatch for the PostgreSQL store: points, latest state, raw messages and dead
 * letters of one batch in one transaction, each idempotent on its natural key (INSERT … ON
 * CONFLICT DO NOTHING), so a batch replayed from the log after a crash changes nothing.
 *
 * Points go in as one multi-row INSERT over unnest() arrays (one round trip, one plan) by
 * default; `ingest: 'copy'` streams them with COPY into a per-connection temporary table and
 * inserts from it. bench/postgres-ingest.ts measures both (docs/benchmarks.md, "PostgreSQL
 * store"): for 5,000-point batches they cost the same, 11-14 µs of server CPU per point,
 * because the INSERT … ON CONFLICT pass after COPY does the same index work. unnest needs no
 * temporary table, so it also works behind PgBouncer in transaction mode. The array literals
 * are built here: the driver's generic serializer cost 15-20 % more client CPU.
 *
 * Roll-ups: inserting the points is one statement that also folds those it stored (new ones
 * only) into the 1-minute and 1-hour buckets (./rollups.ts insertWithRollups).
 *
 * Latest state: the batch's newest value per series is found here first (an upsert may not
 * touch one row twice in a statement), then upserted with last write wins by device time; at
 * equal device time the larger message id wins (byte order, as in the embedded store), so
 * arrival order never matters and a replay changes nothing.
 *
 * Every table's rows are written in key order, tables always in the same order: two nodes
 * writing overlapping batches (a redelivery cut differently) then wait for each other instead
 * of deadlocking, since a conflicting insert or upsert waits on the other transaction's row.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { FluxgateError } from '../../core/errors.js';
import type { DeadLetter, RawMessage, TelemetryPoint, WriteBatch } from '../store.js';
import { ident, sqlState } from './codec.js';
import type { Partitions } from './partitions.js';
import { Seen } from './seen.js';
import { insertWithRollups } from './rollups.js';

export type IngestMode = 'insert' | 'copy';

interface Columns {
  tenant: string[]; device: string[]; key: string[]; ts: number[]; messageId: string[]; project: string[];
  num: Array<number | null>; txt: Array<string | null>; bool: Array<boolean | null>;
}

const STAGE = 'fluxgate_points_stage';
const POINT_COLS = 'tenant, device, key, ts, message_id, project, num, txt, bool';

export class Writer {
  private readonly staged = new WeakSet<pg.PoolClient>();
  private readonly sql;
  /** Message ids and last seen (./seen.ts), written in each batch's transaction. */
  readonly seen: Seen;

  constructor(private readonly pool: pg.Pool, schema: string, private readonly partitions: Partitions, private readonly mode: IngestMode) {
    const s = ident(schema);
    this.seen = new Seen(pool, schema);
    this.sql = {
      points: insertWithRollups(schema, `INSERT INTO ${s}.points (${POINT_COLS})
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::bool[])
        ON CONFLICT DO NOTHING`),
      fromStage: insertWithRollups(schema, `INSERT INTO ${s}.points (${POINT_COLS}) SELECT ${POINT_COLS} FROM ${STAGE} ON CONFLICT DO NOTHING`),
      latest: `INSERT INTO ${s}.latest AS l (tenant, device, key, ts, message_id, num, txt, bool)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::float8[], $7::text[], $8::bool[])
        ON CONFLICT (tenant, device, key) DO UPDATE SET ts = excluded.ts, message_id = excluded.message_id,
          num = excluded.num, txt = excluded.txt, bool = excluded.bool
        WHERE excluded.ts > l.ts OR (excluded.ts = l.ts AND excluded.message_id > l.message_id)`,
      messages: `INSERT INTO ${s}.messages (tenant, device, message_id, project, topic, kind, ts, receive_time, payload)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::int8[], $9::bytea[])
        ON CONFLICT DO NOTHING`,
      // A message that fails again updates its dead letter (reason, bytes, time): see deleteDeadLetters' failedBefore.
      deadLetters: `INSERT INTO ${s}.dead_letters (tenant, project, device, topic, message_id, receive_time, reason, payload, kind, failed_at)
        SELECT *, $10::int8 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::bytea[], $9::text[])
        ON CONFLICT (tenant, device, message_id) DO UPDATE SET project = excluded.project, topic = excluded.topic, receive_time = excluded.receive_time,
          reason = excluded.reason, payload = excluded.payload, kind = excluded.kind, failed_at = excluded.failed_at`,
    };
  }

  async write(batch: WriteBatch): Promise<void> {
    const points = columns([...batch.points].sort(byPointKey));
    const latest = columns(newestPerSeries(batch.points));
    for (const m of batch.messages) {
      checkTime(m.ts, `message ${m.tenant}/${m.device}/${m.messageId}`);
      checkTime(m.receiveTime, `message ${m.tenant}/${m.device}/${m.messageId} receiveTime`);
    }
    for (const d of batch.deadLetters) checkTime(d.receiveTime, `dead letter ${d.tenant}/${d.device}/${d.messageId} receiveTime`);
    const times = () => ({ points: points.ts, messages: batch.messages.map((m) => m.ts) });
    await this.ensurePartitions(times());
    for (let attempt = 1; ; attempt++) {
      try {
        await this.transaction((client) => this.writeInTx(client, batch, points, latest));
        return;
      } catch (err) {
        // Another node's retention dropped a partition this node still had cached: reload, create, retry.
        if (attempt > 1 || !isNoPartition(err)) throw err;
        await this.partitions.reload();
        await this.ensurePartitions(times());
      }
    }
  }

  private async writeInTx(client: pg.PoolClient, batch: WriteBatch, points: Columns, latest: Columns): Promise<void> {
    if (points.ts.length > 0) await this.insertPoints(client, points);
    if (latest.ts.length > 0) {
      await client.query(this.sql.latest, [texts(latest.tenant), texts(latest.device), texts(latest.key), numbers(latest.ts), texts(latest.messageId), numbers(latest.num), texts(latest.txt), bools(latest.bool)]);
    }
    if (batch.messages.length > 0) {
      const m = [...batch.messages].sort(byMessageKey);
      await client.query(this.sql.messages, [texts(m.map((x) => x.tenant)), texts(m.map((x) => x.device)), texts(m.map((x) => x.messageId)),
        texts(m.map((x) => x.project)), texts(m.map((x) => x.topic)), texts(m.map((x) => x.kind)), numbers(m.map((x) => x.ts)),
        numbers(m.map((x) => x.receiveTime)), byteas(m.map((x) => x.payload))]);
    }
    if (batch.deadLetters.length > 0) {
      const d = [...batch.deadLetters].sort(byDeadLetterKey);
      await client.query(this.sql.deadLetters, [texts(d.map((x) => x.tenant)), texts(d.map((x) => x.project)), texts(d.map((x) => x.device)),
        texts(d.map((x) => x.topic)), texts(d.map((x) => x.messageId)), numbers(d.map((x) => x.receiveTime)), texts(d.map((x) => x.reason)),
        byteas(d.map((x) => x.payload)), texts(d.map((x) => x.kind ?? 'telemetry')), Date.now()]);
    }
    await this.seen.write(client, batch.messages, batch.deadLetters, batch.snapshots);
  }

  /** Runs `fn` in one transaction on one pooled connection; a broken connection is not reused. */
  private async transaction(fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query('COMMIT');
    } catch (err) {
      broken = sqlState(err) === undefined;
      if (!broken) await client.query('ROLLBACK').catch(() => { broken = true; });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  private async ensurePartitions(t: { points: number[]; messages: number[] }): Promise<void> {
    const missing = new Set([...this.partitions.missing('points', t.points), ...this.partitions.missing('messages', t.messages)]);
    if (missing.size > 0) await this.partitions.ensure(missing);
  }

  private async insertPoints(client: pg.PoolClient, c: Columns): Promise<void> {
    if (this.mode === 'insert') {
      await client.query(this.sql.points, [texts(c.tenant), texts(c.device), texts(c.key), numbers(c.ts), texts(c.messageId), texts(c.project), numbers(c.num), texts(c.txt), bools(c.bool)]);
      return;
    }
    if (!this.staged.has(client)) {
      // ON COMMIT DELETE ROWS empties it with every transaction: nothing to truncate.
      await client.query(`CREATE TEMP TABLE IF NOT EXISTS ${STAGE} (tenant text COLLATE "C", device text COLLATE "C", key text COLLATE "C",
        ts bigint, message_id text COLLATE "C", project text COLLATE "C", num float8, txt text, bool boolean) ON COMMIT DELETE ROWS`);
      this.staged.add(client);
    }
    const copy = client.query(copyFrom(`COPY ${STAGE} (${POINT_COLS}) FROM STDIN`));
    await pipeline(Readable.from(copyText(c)), copy);
    await client.query(this.sql.fromStage);
  }
}

function isNoPartition(err: unknown): boolean {
  return sqlState(err) === '23514' && /no partition of relation/.test((err as Error).message);
}

/** Column arrays for an unnest() insert; refuses what the columns cannot keep faithfully. */
function columns(points: TelemetryPoint[]): Columns {
  const n = points.length;
  const c: Columns = {
    tenant: new Array(n), device: new Array(n), key: new Array(n), ts: new Array(n), messageId: new Array(n), project: new Array(n),
    num: new Array(n), txt: new Array(n), bool: new Array(n),
  };
  for (let i = 0; i < n; i++) {
    const p = points[i];
    checkTime(p.ts, `point ${p.tenant}/${p.device}/${p.key}`);
    if (typeof p.messageId !== 'string') throw invalid(p, 'messageId must be a string');
    c.tenant[i] = p.tenant; c.device[i] = p.device; c.key[i] = p.key; c.ts[i] = p.ts; c.messageId[i] = p.messageId; c.project[i] = p.project;
    const v = p.value;
    c.num[i] = null; c.txt[i] = null; c.bool[i] = null;
    if (typeof v === 'number' && !Number.isNaN(v)) c.num[i] = v;
    else if (typeof v === 'boolean') c.bool[i] = v;
    else if (typeof v === 'string') c.txt[i] = v;
    else throw invalid(p, 'value must be a number, a string or a boolean');
  }
  return c;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function byPointKey(a: TelemetryPoint, b: TelemetryPoint): number {
  return cmp(a.tenant, b.tenant) || cmp(a.device, b.device) || cmp(a.key, b.key) || a.ts - b.ts || cmp(a.messageId, b.messageId);
}

function byMessageKey(a: RawMessage, b: RawMessage): number {
  return cmp(a.tenant, b.tenant) || a.ts - b.ts || cmp(a.device, b.device) || cmp(a.messageId, b.messageId);
}

function byDeadLetterKey(a: DeadLetter, b: DeadLetter): number {
  return cmp(a.tenant, b.tenant) || cmp(a.device, b.device) || cmp(a.messageId, b.messageId);
}

/** The newest point per (tenant, device, key) of a batch, in key order. */
function newestPerSeries(points: TelemetryPoint[]): TelemetryPoint[] {
  const best = new Map<string, TelemetryPoint>();
  for (const p of points) {
    const k = `${p.tenant}\u0000${p.device}\u0000${p.key}`;
    const cur = best.get(k);
    if (!cur || p.ts > cur.ts || (p.ts === cur.ts && p.messageId > cur.messageId)) best.set(k, p);
  }
  return [...best].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, p]) => p);
}

function checkTime(ts: number, what: string): void {
  if (!Number.isSafeInteger(ts)) throw new FluxgateError('BAD_REQUEST', `${what}@${ts}: ts must be an integer number of ms`);
}

function invalid(p: TelemetryPoint, why: string): FluxgateError {
  return new FluxgateError('BAD_REQUEST', `point ${p.tenant}/${p.device}/${p.key}@${p.ts}: ${why}`);
}

/** bytea[] literal: each element in hex form, `\\x…`, its backslash escaped for the array syntax. */
function byteas(xs: Uint8Array[]): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const u = xs[i];
    const hex = (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)).toString('hex');
    out += i === 0 ? `"\\\\x${hex}"` : `,"\\\\x${hex}"`;
  }
  return `${out}}`;
}

/*
 * Array literals built here rather than by the driver's generic serializer: consecutive
 * repeats (tenant, project, device) are escaped once, and no per-element type dispatch.
 */
function texts(xs: Array<string | null>): string {
  let out = '{';
  let prev: string | null | undefined;
  let prevLit = '';
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    if (x !== prev || i === 0) {
      prevLit = x === null ? 'NULL' : /["\\]/.test(x) ? `"${x.replace(/[\\"]/g, '\\$&')}"` : `"${x}"`;
      prev = x;
    }
    out += i === 0 ? prevLit : `,${prevLit}`;
  }
  return `${out}}`;
}

function numbers(xs: Array<number | null>): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    const lit = x === null ? 'NULL' : Object.is(x, -0) ? '-0' : String(x);
    out += i === 0 ? lit : `,${lit}`;
  }
  return `${out}}`;
}

function bools(xs: Array<boolean | null>): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    const lit = x === null ? 'NULL' : x ? 't' : 'f';
    out += i === 0 ? lit : `,${lit}`;
  }
  return `${out}}`;
}

/** COPY text format: tab-separated, \N for null, backslash escapes. */
function* copyText(c: Columns): Generator<string> {
  const CHUNK = 500;
  for (let start = 0; start < c.ts.length; start += CHUNK) {
    let out = '';
    const end = Math.min(c.ts.length, start + CHUNK);
    for (let i = start; i < end; i++) {
      const num = c.num[i];
      const bool = c.bool[i];
      const txt = c.txt[i];
      out += `${esc(c.tenant[i])}\t${esc(c.device[i])}\t${esc(c.key[i])}\t${c.ts[i]}\t${esc(c.messageId[i])}\t${esc(c.project[i])}\t${
        num === null ? '\\N' : Object.is(num, -0) ? '-0' : String(num)}\t${txt === null ? '\\N' : esc(txt)}\t${bool === null ? '\\N' : bool ? 't' : 'f'}\n`;
    }
    yield out;
  }
}

function esc(s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/[\\\t\n\r]/g, (ch) => (ch === '\\' ? '\\\\' : ch === '\t' ? '\\t' : ch === '\n' ? '\\n' : '\\r')) : s;
}
