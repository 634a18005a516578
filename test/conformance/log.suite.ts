/**
 * @module The Log conformance suite: the promises of src/log/log.ts, checked against any
 * backend. A backend runs it in a few lines:
 *
 *   runLogSuite({ name: 'wal', create: async ({ maxLagRecords }) => ({ log, reopen, cleanup }) });
 *
 * `create` returns an OPEN log honouring `maxLagRecords`; `reopen` closes the current log
 * (if still open) and resolves to a new open instance over the same data (a restart);
 * `cleanup` closes whatever is open and removes the data. Every test calls cleanup, also on
 * failure. Nothing here sleeps to synchronise or depends on a backend's offsets beyond order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '../../src/core/envelope.js';
import type { Log, LogBatch, LogRecord } from '../../src/log/log.js';
import { waitFor } from '../helpers/wait.js';

export interface LogHarness {
  log: Log;
  reopen: () => Promise<Log>;
  cleanup: () => Promise<void>;
}

export interface LogSuiteCreateOptions {
  /** The backend's maxLagRecords; the pressure test depends on it. */
  maxLagRecords: number;
}

export interface LogSuiteOptions {
  name: string;
  create: (opts: LogSuiteCreateOptions) => Promise<LogHarness>;
  /**
   * For a log with lanes (src/log/lanes/): the priority of an envelope's lane, 0 first. Reads
   * then hand out waiting records lane by lane and keep order only within a lane, so the
   * expected order of records appended before reading is a stable sort by lane. Unset: one lane.
   */
  laneOf?: (e: Envelope) => number;
}

const MAX_LAG = 50;

/** A test envelope; `n` makes its id and payload unique. Payload bytes cover 0..255, not only text. */
export function testEnvelope(n: number, over: Partial<Envelope> = {}): Envelope {
  const payload = new Uint8Array(20 + (n % 37));
  for (let i = 0; i < payload.length; i++) payload[i] = (n * 31 + i * 7) & 0xff;
  return {
    tenant: 't1', project: 'p1', device: `dev-${n % 7}`, kind: n % 5 === 0 ? 'snapshot' : 'event',
    topic: `mtic/msg/client/realtime/t1/p1/dev-${n % 7}`, protocol: n % 2 ? 'mqtt' : 'http',
    receiveTime: 1_764_000_000_000 + n, ...(n % 3 ? { deviceTime: 1_764_000_000_000 - n } : {}),
    messageId: `m-${n}`, payload, ...over,
  };
}

/** Deep equality of envelopes, payload compared byte for byte (a Buffer and a Uint8Array alike). */
export function assertSameEnvelope(actual: Envelope, expected: Envelope): void {
  const { payload: pa, ...ra } = actual;
  const { payload: pe, ...re } = expected;
  assert.deepEqual(ra, re);
  assert.ok(pa instanceof Uint8Array, 'payload is a Uint8Array');
  assert.equal(Buffer.from(pa.buffer, pa.byteOffset, pa.byteLength).compare(Buffer.from(pe.buffer, pe.byteOffset, pe.byteLength)), 0, `payload of ${expected.messageId} differs`);
}

/** Reads until `count` records came back (or fails after the deadline); one batch per read. */
export async function readRecords(log: Log, group: string, count: number, max = 1000): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  const deadline = Date.now() + 20_000;
  while (out.length < count) {
    if (Date.now() > deadline) throw new Error(`read ${out.length} of ${count} records before the deadline`);
    const b = await log.read(group, Math.min(max, count - out.length), 500);
    out.push(...b.records);
  }
  return out;
}

function ids(records: LogRecord[]): string[] {
  return records.map((r) => r.envelope.messageId);
}

function batchOf(records: LogRecord[]): LogBatch {
  return { records };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

export function runLogSuite(opts: LogSuiteOptions): void {
  const laneOf = opts.laneOf ?? (() => 0);
  /** Message ids of testEnvelope(n) for `ns`, in the order a reader gets them once all were appended. */
  const inReadOrder = (ns: number[]): string[] => ns.map((n) => ({ n, lane: laneOf(testEnvelope(n)) })).sort((a, b) => a.lane - b.lane).map(({ n }) => `m-${n}`);
  describe(`log conformance - ${opts.name}`, () => {
    async function withLog(fn: (h: LogHarness) => Promise<void>): Promise<void> {
      const h = await opts.create({ maxLagRecords: MAX_LAG });
      try {
        await fn(h);
      } finally {
        await h.cleanup();
      }
    }

    it('append then read returns the envelopes byte-identical and in order', () => withLog(async ({ log }) => {
      const sent = range(0, 30).map((n) => testEnvelope(n));
      sent.push(testEnvelope(30, { payload: new Uint8Array(0), deviceTime: 0 }));
      sent.push(testEnvelope(31, { payload: new TextEncoder().encode('{"temp":21.5,"ü":"✓"}'), device: 'déviçe-✓' }));
      await log.append(sent.slice(0, 10));
      await log.append(sent.slice(10));
      const got = await readRecords(log, 'g', sent.length);
      assert.equal(got.length, sent.length);
      const expected = sent.map((e, i) => ({ e, lane: laneOf(e), i })).sort((a, b) => a.lane - b.lane || a.i - b.i).map(({ e }) => e);
      got.forEach((r, i) => assertSameEnvelope(r.envelope, expected[i]!));
      for (let i = 1; i < got.length; i++) assert.ok(got[i]!.offset > got[i - 1]!.offset, 'offsets increase');
    }));

    it('concurrent appends from many callers all resolve and each record is read exactly once', () => withLog(async ({ log }) => {
      const callers = 60;
      const perCaller = 5;
      await Promise.all(range(0, callers).map(async (c) => {
        // One single append, then batches of two: both shapes share syncs.
        const n = c * perCaller;
        await log.append([testEnvelope(n)]);
        await log.append([testEnvelope(n + 1), testEnvelope(n + 2)]);
        await log.append([testEnvelope(n + 3), testEnvelope(n + 4)]);
      }));
      const got = await readRecords(log, 'g', callers * perCaller, 64);
      assert.equal(new Set(ids(got)).size, callers * perCaller);
      // Nothing more arrives after everything was read.
      assert.equal((await log.read('g', 100, 50)).records.length, 0);
      // Order per caller (per device in production) is the order of its appends.
      const pos = new Map(ids(got).map((id, i) => [id, i]));
      for (let c = 0; c < callers; c++) {
        for (let k = 1; k < perCaller; k++) {
          for (let j = 0; j < k; j++) {
            const [a, b] = [c * perCaller + j, c * perCaller + k];
            if (laneOf(testEnvelope(a)) === laneOf(testEnvelope(b))) assert.ok(pos.get(`m-${b}`)! > pos.get(`m-${a}`)!, `m-${b} after m-${a}`);
          }
        }
      }
    }));

    it('read waits up to waitMs and returns an empty batch when nothing arrives', () => withLog(async ({ log }) => {
      const started = Date.now();
      const b = await log.read('g', 10, 150);
      assert.equal(b.records.length, 0);
      assert.ok(Date.now() - started >= 100, `returned after ${Date.now() - started} ms`);
    }));

    it('a waiting read wakes early when an append arrives', () => withLog(async ({ log }) => {
      const started = Date.now();
      const pending = log.read('g', 10, 30_000);
      await log.append([testEnvelope(1)]);
      const b = await pending;
      assert.deepEqual(ids(b.records), ['m-1']);
      assert.ok(Date.now() - started < 15_000, 'woke before waitMs');
    }));

    it('successive reads continue where the previous one stopped, without a commit', () => withLog(async ({ log }) => {
      await log.append(range(0, 25).map((n) => testEnvelope(n)));
      const a = await log.read('g', 10, 1000);
      const b = await log.read('g', 10, 1000);
      const c = await readRecords(log, 'g', 5);
      assert.deepEqual([...ids(a.records), ...ids(b.records), ...ids(c)], inReadOrder(range(0, 25)));
    }));

    it('a commit survives a reopen; reading resumes after it and uncommitted records come again', () => withLog(async (h) => {
      await h.log.append(range(0, 20).map((n) => testEnvelope(n)));
      const first = await readRecords(h.log, 'g', 8);
      await h.log.commit('g', batchOf(first));
      const order = inReadOrder(range(0, 20));
      assert.deepEqual(ids(first), order.slice(0, 8));
      const more = await readRecords(h.log, 'g', 7); // read, never committed
      assert.deepEqual(ids(more), order.slice(8, 15));
      const log2 = await h.reopen();
      const again = await readRecords(log2, 'g', 12);
      assert.deepEqual(ids(again), order.slice(8, 20));
      again.forEach((r) => assertSameEnvelope(r.envelope, testEnvelope(Number(r.envelope.messageId.slice(2)))));
      // Appends after a restart follow the old records.
      await log2.append([testEnvelope(20)]);
      assert.deepEqual(ids(await readRecords(log2, 'g', 1)), ['m-20']);
    }));

    it('a commit of an older batch does not move a group back', () => withLog(async (h) => {
      await h.log.append(range(0, 10).map((n) => testEnvelope(n)));
      const a = await readRecords(h.log, 'g', 4);
      const b = await readRecords(h.log, 'g', 4);
      await h.log.commit('g', batchOf(b));
      await h.log.commit('g', batchOf(a));
      const log2 = await h.reopen();
      assert.deepEqual(ids(await readRecords(log2, 'g', 2)), inReadOrder(range(0, 10)).slice(8));
    }));

    it('two consumer groups are independent', () => withLog(async (h) => {
      await h.log.append(range(0, 12).map((n) => testEnvelope(n)));
      const a = await readRecords(h.log, 'a', 12);
      await h.log.commit('a', batchOf(a));
      const b = await readRecords(h.log, 'b', 5);
      await h.log.commit('b', batchOf(b));
      assert.deepEqual(ids(a), inReadOrder(range(0, 12)));
      assert.deepEqual(ids(b), inReadOrder(range(0, 12)).slice(0, 5));
      const log2 = await h.reopen();
      assert.equal((await log2.read('a', 10, 50)).records.length, 0);
      assert.deepEqual(ids(await readRecords(log2, 'b', 7)), inReadOrder(range(0, 12)).slice(5));
    }));

    it('pressure reports uncommitted records and flips overLimit at maxLagRecords', () => withLog(async ({ log }) => {
      const p0 = log.pressure();
      assert.equal(p0.lagRecords, 0);
      assert.equal(p0.overLimit, false);
      await log.append(range(0, MAX_LAG - 1).map((n) => testEnvelope(n)));
      const all = await readRecords(log, 'g', MAX_LAG - 1);
      await waitFor(() => log.pressure().lagRecords === MAX_LAG - 1, { what: `lag ${MAX_LAG - 1}` });
      assert.equal(log.pressure().overLimit, false);
      await log.append([testEnvelope(MAX_LAG)]);
      await waitFor(() => log.pressure().lagRecords === MAX_LAG, { what: `lag ${MAX_LAG}` });
      assert.equal(log.pressure().overLimit, true);
      await log.commit('g', batchOf(all.slice(0, 10)));
      await waitFor(() => log.pressure().lagRecords === MAX_LAG - 10, { what: `lag ${MAX_LAG - 10}` });
      assert.equal(log.pressure().overLimit, false);
    }));

    it('appends after close reject with SHUTTING_DOWN', () => withLog(async ({ log }) => {
      await log.append([testEnvelope(1)]);
      await log.close();
      await assert.rejects(log.append([testEnvelope(2)]), (err: { code?: string }) => err.code === 'SHUTTING_DOWN');
    }));
  });
}
