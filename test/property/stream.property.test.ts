/**
 * @module Property test of stream semantics through the real stores (embedded, and PostgreSQL
 * in a schema of its own): for random streams with replayed message ids, reordering, ties at
 * equal device time and late points across minute and hour edges, written in random batch cuts
 * (the embedded store also compacting at random points), the 1-minute and 1-hour roll-ups equal
 * a recomputation from the raw rows read back, each message is stored once, and latest state
 * equals the raw row with the greatest device time per key — on a tie, the larger message id
 * (the stores' documented rule, src/stores/embedded/latest.ts).
 *
 * Runs per backend: FLUXGATE_PROPERTY_RUNS (default 25), each in a fresh tenant of one store.
 * A failure prints fast-check's seed and the shrunk stream; replay it with FLUXGATE_PROPERTY_SEED.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { EmbeddedStore } from '../../src/stores/embedded/index.js';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import type { Resolution, Rollup, Store, TelemetryPoint, Value } from '../../src/stores/store.js';
import { tempDir } from '../helpers/wait.js';

const RUNS = Number(process.env.FLUXGATE_PROPERTY_RUNS ?? 25);
const SEED = process.env.FLUXGATE_PROPERTY_SEED === undefined ? undefined : Number(process.env.FLUXGATE_PROPERTY_SEED);
const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** 10:00 UTC: the stream spans about three hours from here. */
const T0 = Date.UTC(2026, 0, 1, 10);
const MIN = 60_000;
const HOUR = 3_600_000;
const DEVICES = ['d0', 'd1', 'd2'];
const KEYS = ['a', 'b', 's'];

/** One device message: a device time and one value per key it carries. */
interface Msg { device: string; ts: number; values: Array<[string, Value]> }
interface Stream { messages: Msg[]; order: number[]; replays: number[]; cuts: number[]; compactAfter: boolean[] }

// Device times: anywhere in three hours, or a millisecond around a minute or hour edge, or one
// of a few shared instants (ties between different messages).
const deviceTime = fc.oneof(
  fc.integer({ min: 0, max: 3 * HOUR - 1 }),
  fc.tuple(fc.integer({ min: 1, max: 180 }), fc.constantFrom(-1, 0, 1)).map(([m, d]) => m * MIN + d),
  fc.constantFrom(HOUR - 1, HOUR, 2 * HOUR, 30_000),
).map((t) => T0 + t);
// Quarters keep every sum exact whatever order a store adds them in.
const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -4000, max: 4000 }).map((v) => v / 4) },
  { weight: 1, arbitrary: fc.constantFrom('on', 'off', 'idle') },
  { weight: 1, arbitrary: fc.boolean() },
);
const message: fc.Arbitrary<Msg> = fc.record({
  device: fc.constantFrom(...DEVICES),
  ts: deviceTime,
  values: fc.uniqueArray(fc.tuple(fc.constantFrom(...KEYS), value), { minLength: 1, maxLength: 3, selector: ([k]) => k }),
});
const stream: fc.Arbitrary<Stream> = fc.array(message, { minLength: 1, maxLength: 60 }).chain((messages) => fc.record({
  messages: fc.constant(messages),
  // Every message once, in any order (late data: a later message may carry an earlier time).
  order: fc.shuffledSubarray(messages.map((_, i) => i), { minLength: messages.length, maxLength: messages.length }),
  // Replays of already-sent messages (same id, same content), appended anywhere after.
  replays: fc.array(fc.nat({ max: messages.length - 1 }), { maxLength: 20 }),
  cuts: fc.array(fc.integer({ min: 1, max: 25 }), { minLength: 1, maxLength: 10 }),
  compactAfter: fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
}));

/** The points of a message as processing produces them: one per key, all with the message's id. */
function pointsOf(tenant: string, m: Msg, id: number): TelemetryPoint[] {
  return m.values.map(([key, v]) => ({ tenant, project: 'p', device: m.device, key, ts: m.ts, value: v, messageId: `msg-${id}` }));
}

/** The roll-ups written out longhand from raw rows: sort by (device time, message id), then group. */
function recompute(rows: TelemetryPoint[], width: number): Rollup[] {
  const sorted = [...rows].sort((x, y) => x.ts - y.ts || (x.messageId < y.messageId ? -1 : x.messageId > y.messageId ? 1 : 0));
  const groups = new Map<number, TelemetryPoint[]>();
  for (const p of sorted) {
    const b = Math.floor(p.ts / width) * width;
    groups.set(b, [...(groups.get(b) ?? []), p]);
  }
  return [...groups].map(([b, ps]) => {
    const nums = ps.map((p) => p.value).filter((v): v is number => typeof v === 'number');
    const sum = nums.length === 0 ? null : nums.reduce((s, v) => s + v, 0);
    return {
      ts: b, count: ps.length, numericCount: nums.length,
      min: nums.length === 0 ? null : Math.min(...nums), max: nums.length === 0 ? null : Math.max(...nums),
      sum, avg: sum === null ? null : sum / nums.length,
      first: ps[0].value, firstTs: ps[0].ts, last: ps[ps.length - 1].value, lastTs: ps[ps.length - 1].ts,
    };
  }).sort((x, y) => x.ts - y.ts);
}

async function writeStream(store: Store, tenant: string, s: Stream, compact?: () => Promise<unknown>): Promise<void> {
  const sends = [...s.order, ...s.replays].flatMap((i) => pointsOf(tenant, s.messages[i], i));
  for (let at = 0, c = 0; at < sends.length; c++) {
    const n = s.cuts[c % s.cuts.length];
    await store.writeBatch({ points: sends.slice(at, at + n), messages: [], deadLetters: [] });
    at += n;
    if (compact && s.compactAfter[c % s.compactAfter.length]) await compact();
  }
}

async function checkStream(store: Store, tenant: string, s: Stream): Promise<void> {
  for (const device of DEVICES) {
    const latest = new Map((await store.latest(tenant, device)).map((l) => [l.key, l]));
    for (const key of KEYS) {
      const page = await store.range({ tenant, device, key, from: T0 - HOUR, to: T0 + 4 * HOUR, limit: 10_000 });
      assert.equal(page.next, undefined);
      const rows = page.items;
      // Stored once: one row per distinct message that carried this key.
      const sent = new Set(s.messages.flatMap((m, i) => (m.device === device && m.values.some(([k]) => k === key) ? [`msg-${i}`] : [])));
      assert.deepEqual(rows.map((r) => r.messageId).sort(), [...sent].sort(), `${device}/${key}: each message stored once`);
      for (const [r, width] of [['1m', MIN], ['1h', HOUR]] as Array<[Resolution, number]>) {
        const got = await store.rollups({ tenant, device, key, from: T0 - HOUR, to: T0 + 4 * HOUR, resolution: r });
        assert.deepEqual(got, recompute(rows, width), `${device}/${key} ${r} roll-ups equal a recomputation from the raw rows`);
      }
      // Latest: the greatest device time; on a tie, the larger message id.
      const newest = rows.reduce<TelemetryPoint | undefined>((best, p) =>
        (!best || p.ts > best.ts || (p.ts === best.ts && p.messageId > best.messageId) ? p : best), undefined);
      const l = latest.get(key);
      assert.deepEqual(l && { value: l.value, ts: l.ts }, newest && { value: newest.value, ts: newest.ts }, `${device}/${key} latest`);
    }
  }
}

async function pgReachable(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await c.end().catch(() => undefined);
  }
}

function property(store: () => Store, compact?: () => Promise<unknown>) {
  let run = 0;
  return fc.asyncProperty(stream, async (s) => {
    // A fresh tenant per run keeps runs (and shrinking's re-runs) apart in one store.
    const tenant = `t${run++}`;
    await writeStream(store(), tenant, s, compact);
    await checkStream(store(), tenant, s);
  });
}

const unreachable = await pgReachable();
if (unreachable !== undefined && process.env.CI) throw new Error(`PostgreSQL at ${PG_URL} is unreachable in CI: ${unreachable}`);

describe('stream property: roll-ups and latest state equal a recomputation from raw rows', () => {
  describe('embedded store', () => {
    let store: EmbeddedStore;
    let cleanup: () => Promise<void>;
    before(async () => {
      const d = await tempDir('fluxgate-property-');
      cleanup = d.cleanup;
      store = new EmbeddedStore({ dir: d.dir });
      await store.open();
    });
    after(async () => {
      await store?.close();
      await cleanup?.();
    });
    it('random streams (replays, reordering, ties, late data, batch cuts, compactions)', { timeout: 120_000 }, async () => {
      await fc.assert(property(() => store, () => store.compact()), { numRuns: RUNS, seed: SEED });
    });
  });

  describe('postgres store', () => {
    const schema = `fluxgate_prop_${randomBytes(5).toString('hex')}`;
    let store: Store;
    before(async () => {
      if (unreachable) return;
      store = createPostgresStore({ url: PG_URL, schema });
      await store.open();
    });
    after(async () => {
      if (unreachable) return;
      await store?.close();
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    });
    it('random streams (replays, reordering, ties, late data, batch cuts)', { timeout: 120_000, skip: unreachable && `PostgreSQL at ${PG_URL} is unreachable: ${unreachable}` }, async () => {
      await fc.assert(property(() => store), { numRuns: RUNS, seed: SEED });
    });
  });
});
