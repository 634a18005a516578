/**
 * @module The lane log (src/log/lanes/) runs the Log conformance suite over the WAL and over
 * JetStream, plus its own promises: events are read before snapshots, except the share of each
 * read kept for snapshots (snapshotShare) so sustained events cannot starve them, a mixed append lands in
 * both lanes, commits go to the right lane, pressure and metrics per lane, and a single-lane
 * log from an earlier version is read as the events lane.
 */
import assert from 'node:assert/strict';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '../../src/core/envelope.js';
import type { LogRecord } from '../../src/log/log.js';
import { createFileLog } from '../../src/log/wal/index.js';
import { createLaneLog } from '../../src/log/lanes/index.js';
import { snapshotReserve } from '../../src/log/lanes/lane-log.js';
import type { Log } from '../../src/log/log.js';
import { runLogSuite, readRecords, testEnvelope, assertSameEnvelope } from '../conformance/log.suite.js';
import { NATS_SERVER_BIN, startNatsServer, type NatsHandle } from '../helpers/nats-server.js';
import { tempDir, waitFor } from '../helpers/wait.js';
import { fileLaneHarness, jetStreamLaneHarness, laneIndex, type LaneHarness } from './lanes-harness.js';

runLogSuite({ name: 'lanes over wal', laneOf: laneIndex, create: ({ maxLagRecords }) => fileLaneHarness({ maxLagRecords }) });

if (!NATS_SERVER_BIN) {
  it('lanes over jetstream', { skip: 'nats-server is not installed (apt-get install nats-server)' }, () => undefined);
} else {
  let nats: NatsHandle;
  before(async () => { nats = await startNatsServer(); });
  after(async () => { await nats?.cleanup(); });
  runLogSuite({ name: 'lanes over jetstream', laneOf: laneIndex, create: ({ maxLagRecords }) => jetStreamLaneHarness(nats.url, { maxLagRecords }) });

  it('lanes over jetstream - events are read before snapshots appended earlier', async () => {
    const h = await jetStreamLaneHarness(nats.url);
    try {
      await h.log.append(range(0, 20).map((n) => env(n, 'snapshot')));
      await h.log.append(range(20, 40).map((n) => env(n, 'event')));
      const got = await readRecords(h.log, 'g', 40, 15);
      assert.deepEqual(ids(got), [...names(20, 40), ...names(0, 20)]);
    } finally {
      await h.cleanup();
    }
  });

  it('lanes over jetstream - with snapshotShare 0.1 a read of 10 from two full lanes takes 9 events and 1 snapshot', async () => {
    const h = await jetStreamLaneHarness(nats.url, { snapshotShare: 0.1 });
    try {
      await h.log.append(range(0, 20).map((n) => env(n, 'snapshot')));
      await h.log.append(range(20, 40).map((n) => env(n, 'event')));
      await waitFor(() => h.log.pressure().lagRecords === 40, { what: 'both lanes to hold their records' });
      const first = await h.log.read('g', 10, 0);
      assert.deepEqual(ids(first.records), [...names(20, 29), 'm-0']);
      await h.log.commit('g', first);
      assert.deepEqual(ids((await h.log.read('g', 10, 0)).records), [...names(29, 38), 'm-1']);
    } finally {
      await h.cleanup();
    }
  });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const names = (from: number, to: number): string[] => range(from, to).map((n) => `m-${n}`);
const ids = (records: LogRecord[]): string[] => records.map((r) => r.envelope.messageId);
const env = (n: number, kind: Envelope['kind']): Envelope => testEnvelope(n, { kind });

async function withLanes(over: Parameters<typeof fileLaneHarness>[0], fn: (h: LaneHarness) => Promise<void>): Promise<void> {
  const h = await fileLaneHarness(over);
  try {
    await fn(h);
  } finally {
    await h.cleanup();
  }
}

describe('lanes - priority', () => {
  it('lanes - a reader behind takes every event before any snapshot, even events appended after the snapshots', () => withLanes({}, async ({ log }) => {
    await log.append(range(0, 30).map((n) => env(n, 'snapshot')));
    await log.append(range(30, 60).map((n) => env(n, n % 2 ? 'telemetry' : 'event')));
    const first = await log.read('g', 20, 0);
    assert.deepEqual(ids(first.records), names(30, 50), 'a full batch of events, no snapshot');
    // Events keep arriving while the reader is behind: they still come first.
    await log.append([env(60, 'attributes'), env(61, 'event')]);
    const second = await log.read('g', 20, 0);
    assert.deepEqual(ids(second.records), [...names(50, 62), ...names(0, 8)], 'the rest of the events, then snapshots fill the batch');
    const rest = await readRecords(log, 'g', 22, 20);
    assert.deepEqual(ids(rest), names(8, 30));
    assert.equal((await log.read('g', 20, 0)).records.length, 0);
  }));

  it('lanes - an idle reader wakes for an event at once and for a snapshot within one slice', () => withLanes({ idleSliceMs: 50 }, async ({ log }) => {
    let started = Date.now();
    let pending = log.read('g', 10, 20_000);
    await log.append([env(1, 'snapshot')]);
    assert.deepEqual(ids((await pending).records), ['m-1']);
    assert.ok(Date.now() - started < 5_000, `snapshot seen after ${Date.now() - started} ms`);
    started = Date.now();
    pending = log.read('g', 10, 20_000);
    await log.append([env(2, 'event')]);
    assert.deepEqual(ids((await pending).records), ['m-2']);
    assert.ok(Date.now() - started < 5_000);
  }));

  it('lanes - one append holding both kinds lands in both lanes and resolves once both are durable', () => withLanes({}, async (h) => {
    const batch = range(0, 10).map((n) => env(n, n % 3 === 0 ? 'snapshot' : 'event'));
    await h.log.append(batch);
    const events = await readdir(join(h.dir, 'events'));
    const snapshots = await readdir(join(h.dir, 'snapshots'));
    assert.ok(events.some((n) => n.endsWith('.wal')) && snapshots.some((n) => n.endsWith('.wal')), 'each lane has its own segments');
    // Durable means readable after a restart without a close in between being needed for it.
    const log2 = await h.reopen();
    const got = await readRecords(log2, 'g', 10);
    const expected = [...batch.filter((e) => e.kind !== 'snapshot'), ...batch.filter((e) => e.kind === 'snapshot')];
    got.forEach((r, i) => assertSameEnvelope(r.envelope, expected[i]!));
  }));

  it('lanes - a commit of a mixed batch commits each lane; one lane committed leaves the other to read again', () => withLanes({}, async (h) => {
    await h.log.append(range(0, 12).map((n) => env(n, n < 6 ? 'event' : 'snapshot')));
    const mixed = await readRecords(h.log, 'g', 8); // 6 events + 2 snapshots
    assert.deepEqual(ids(mixed), names(0, 8));
    await h.log.commit('g', { records: mixed.slice(0, 7) }); // all events and the first snapshot
    const log2 = await h.reopen();
    assert.deepEqual(ids(await readRecords(log2, 'g', 5)), names(7, 12));
    await assert.rejects(log2.commit('g', { records: [{ offset: 5n << 56n, envelope: env(0, 'event') }] }), /lane 5/);
  }));
});

describe('lanes - pressure and metrics', () => {
  it('lanes - pressure and fluxgate_log_lane_lag_records report each lane; fluxgate_consumer_lag_records is their sum', () => withLanes({ maxLagRecords: 25 }, async ({ log, metrics }) => {
    await log.append(range(0, 15).map((n) => env(n, 'event')));
    await log.append(range(15, 24).map((n) => env(n, 'snapshot')));
    const batch = await log.read('g', 20, 0); // 15 events, 5 snapshots
    await log.commit('g', batch);
    await log.append(range(24, 34).map((n) => env(n, 'event')));
    const p = log.pressure();
    assert.deepEqual(p.lanes, { events: { lagRecords: 10 }, snapshots: { lagRecords: 4 } });
    assert.equal(p.lagRecords, 14);
    assert.equal(p.overLimit, false);
    await log.append(range(34, 45).map((n) => env(n, 'snapshot')));
    assert.equal(log.pressure().overLimit, true, 'over the limit by the total of both lanes');
    const lanes = (await metrics.registry.getSingleMetric('fluxgate_log_lane_lag_records')!.get()).values;
    assert.equal(lanes.find((v) => v.labels.group === 'g' && v.labels.lane === 'events')?.value, 10);
    assert.equal(lanes.find((v) => v.labels.group === 'g' && v.labels.lane === 'snapshots')?.value, 15);
    const total = (await metrics.consumerLag.get()).values.find((v) => v.labels.group === 'g')?.value;
    assert.equal(total, 25);
    // The append queue of each lane is measured too (empty once every append resolved).
    const pending = (await metrics.registry.getSingleMetric('fluxgate_log_pending_bytes')!.get()).values;
    assert.deepEqual(pending.map((v) => [v.labels.lane, v.value]).sort(), [['events', 0], ['snapshots', 0]]);
  }));
});

describe('lanes - upgrade from a single-lane log', () => {
  async function singleLaneLog(n: number, committed: number): Promise<{ dir: string; cleanup: () => Promise<void> }> {
    const tmp = await tempDir('fluxgate-lanes-old-');
    const old = createFileLog({ dir: join(tmp.dir, 'log'), segmentBytes: 64 * 1024, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e9 });
    await old.open();
    // Big payloads so the old log has several segments.
    for (let i = 0; i < n; i += 10) {
      await old.append(range(i, Math.min(n, i + 10)).map((k) => ({ ...env(k, k % 4 === 0 ? 'snapshot' : 'event'), payload: new Uint8Array(2000).fill(k & 0xff) })));
    }
    const read = await readRecords(old, 'process', committed);
    await old.commit('process', { records: read });
    await old.close();
    return tmp;
  }

  it('lanes - the old log becomes the events lane with its committed positions; new snapshots go to their own lane', async () => {
    const tmp = await singleLaneLog(100, 40);
    const h = await fileLaneHarness({}, tmp);
    try {
      const root = await readdir(h.dir);
      assert.ok(!root.some((n) => n.endsWith('.wal') || n === 'offsets.json'), `nothing left in the root: ${root.join(', ')}`);
      assert.ok((await readdir(join(h.dir, 'events'))).filter((n) => n.endsWith('.wal')).length > 1, 'the old segments are in the events lane');
      await h.log.append([env(100, 'snapshot'), env(101, 'event')]);
      // Old records (snapshots of the old version too) come in their old order, then the new event, then the new snapshot.
      const got = await readRecords(h.log, 'process', 62, 1000);
      assert.deepEqual(ids(got), [...names(40, 100), 'm-101', 'm-100']);
      assert.equal(got[0]!.envelope.payload.length, 2000);
      await h.log.commit('process', { records: got });
      const log2 = await h.reopen();
      assert.equal((await log2.read('process', 10, 0)).records.length, 0, 'positions survive the restart after the upgrade');
    } finally {
      await h.cleanup();
    }
  });

  it('lanes - an upgrade interrupted part-way (some files moved) is finished on the next start', async () => {
    const tmp = await singleLaneLog(100, 10);
    const dir = join(tmp.dir, 'log');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'events'));
    const [firstSegment] = (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
    await rename(join(dir, firstSegment!), join(dir, 'events', firstSegment!));
    const h = await fileLaneHarness({}, tmp);
    try {
      assert.deepEqual(ids(await readRecords(h.log, 'process', 90, 1000)), names(10, 100));
    } finally {
      await h.cleanup();
    }
  });
});

/** A lane log over two real WALs whose snapshot lane's reads fail on command (a disk error on that lane). */
async function withFlakySnapshotLane(snapshotShare: number, fn: (log: Log, fail: (on: boolean) => void) => Promise<void>): Promise<void> {
  const tmp = await tempDir('fluxgate-lanes-fail-');
  const wal = (name: string) => createFileLog({ dir: join(tmp.dir, name), segmentBytes: 1 << 20, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e9 });
  const snapshots = wal('snapshots');
  let failing = false;
  const flaky: Log = {
    open: () => snapshots.open(), append: (b) => snapshots.append(b), commit: (g, b) => snapshots.commit(g, b),
    enforceRetention: (now) => snapshots.enforceRetention(now), pressure: () => snapshots.pressure(), close: () => snapshots.close(),
    read: (g, max, waitMs) => (failing ? Promise.reject(new Error('EIO: snapshot lane unreadable')) : snapshots.read(g, max, waitMs)),
  };
  const log = createLaneLog({ lanes: { events: wal('events'), snapshots: flaky }, maxLagRecords: 1e9, snapshotShare });
  await log.open();
  try {
    await fn(log, (on) => { failing = on; });
  } finally {
    await log.close();
    await tmp.cleanup();
  }
}

describe('lanes - snapshot share', () => {
  const offsetsIncrease = (records: LogRecord[]): void => {
    for (let i = 1; i < records.length; i++) assert.ok(records[i]!.offset > records[i - 1]!.offset, `offsets increase at ${i}`);
  };
  /** 30 snapshots appended before 30 events, so a reader behind has both lanes full. */
  const bothFull = async (log: Log): Promise<void> => {
    await log.append(range(0, 30).map((n) => env(n, 'snapshot')));
    await log.append(range(30, 60).map((n) => env(n, 'event')));
  };

  it('lanes - the reserve is ceil(max x share), at least 1 and at most max - 1; 0 for share 0 or max 1', () => {
    assert.equal(snapshotReserve(10, 0.1), 1);
    assert.equal(snapshotReserve(30, 0.1), 3, 'no extra place from float error (0.1 x 30)');
    assert.equal(snapshotReserve(5000, 0.1), 500);
    assert.equal(snapshotReserve(3, 0.01), 1);
    assert.equal(snapshotReserve(10, 1), 9, 'events keep one place');
    assert.equal(snapshotReserve(10, 0), 0);
    assert.equal(snapshotReserve(1, 0.5), 0);
  });

  it('lanes - with share 0.1 a read of 10 from two full lanes takes 9 events then 1 snapshot', () => withLanes({ snapshotShare: 0.1 }, async ({ log }) => {
    await bothFull(log);
    const got = (await log.read('g', 10, 0)).records;
    assert.deepEqual(ids(got), [...names(30, 39), 'm-0']);
    offsetsIncrease(got);
  }));

  it('lanes - with share 0 a read of 10 from two full lanes takes 10 events (strict priority)', () => withLanes({ snapshotShare: 0 }, async ({ log }) => {
    await bothFull(log);
    assert.deepEqual(ids((await log.read('g', 10, 0)).records), names(30, 40));
  }));

  it('lanes - when fewer snapshots wait than the reserve, events take the rest, still ahead of the snapshots in the batch', () => withLanes({ snapshotShare: 0.2 }, async ({ log }) => {
    await log.append(range(0, 2).map((n) => env(n, 'snapshot')));
    await log.append(range(2, 40).map((n) => env(n, 'event')));
    const got = (await log.read('g', 20, 0)).records; // reserve 4, only 2 snapshots
    assert.deepEqual(ids(got), [...names(2, 20), 'm-0', 'm-1']);
    offsetsIncrease(got);
    // And the other way: few events leave their room to snapshots.
    await log.commit('g', { records: got });
    await log.append(range(40, 70).map((n) => env(n, 'snapshot')));
    const next = (await log.read('g', 30, 0)).records;
    assert.deepEqual(ids(next), [...names(20, 40), ...names(40, 50)]);
    offsetsIncrease(next);
  }));

  for (const share of [0.1, 0]) {
    it(`lanes - sustained event load: reads and commits drain snapshots at the share rate (${share})`, () => withLanes({ snapshotShare: share, maxLagRecords: 1e9 }, async ({ log }) => {
      await log.append(range(0, 50).map((n) => env(n, 'snapshot')));
      await log.append(range(1000, 1020).map((n) => env(n, 'event')));
      let next = 1020;
      const snapshotsTaken: number[] = [];
      for (let round = 0; round < 30; round++) {
        // Events arrive as fast as processing takes them: the event lane never runs dry.
        await log.append(range(next, next + 10).map((n) => env(n, 'event')));
        next += 10;
        const batch = await log.read('g', 10, 0);
        assert.equal(batch.records.length, 10);
        offsetsIncrease(batch.records);
        snapshotsTaken.push(batch.records.filter((r) => r.envelope.kind === 'snapshot').length);
        await log.commit('g', batch);
      }
      const lanes = log.pressure().lanes!;
      if (share > 0) {
        assert.deepEqual(snapshotsTaken, Array(30).fill(1), 'one snapshot in every batch of 10');
        assert.deepEqual(lanes, { events: { lagRecords: 20 + 30 }, snapshots: { lagRecords: 50 - 30 } });
      } else {
        assert.deepEqual(snapshotsTaken, Array(30).fill(0), 'strict priority: no snapshot while events wait');
        assert.deepEqual(lanes, { events: { lagRecords: 20 }, snapshots: { lagRecords: 50 } });
      }
    }));
  }
});

describe('lanes - failures', () => {
  it('lanes - when the snapshot lane cannot be read, the events already taken are still handed out (none skipped)', () => withFlakySnapshotLane(0, async (log, fail) => {
    await log.append(range(0, 10).map((n) => env(n, n % 2 ? 'snapshot' : 'event')));
    fail(true);
    const first = await log.read('g', 20, 0);
    assert.deepEqual(ids(first.records), ['m-0', 'm-2', 'm-4', 'm-6', 'm-8']);
    await log.commit('g', first);
    await log.append([env(10, 'event')]);
    assert.deepEqual(ids((await log.read('g', 20, 0)).records), ['m-10']);
    fail(false);
    assert.deepEqual(ids(await readRecords(log, 'g', 5)), ['m-1', 'm-3', 'm-5', 'm-7', 'm-9']);
  }));

  it('lanes - with a snapshot share, a failing snapshot read after the events were taken hands out those events and fills the batch with events; nothing skipped', () => withFlakySnapshotLane(0.1, async (log, fail) => {
    await log.append(range(0, 30).map((n) => env(n, 'event')));
    await log.append(range(30, 35).map((n) => env(n, 'snapshot')));
    fail(true);
    const first = await log.read('g', 10, 0);
    assert.deepEqual(ids(first.records), names(0, 10), '9 events, then the snapshot place goes to events too');
    await log.commit('g', first);
    // Nothing left in the event lane but the failing snapshot lane: the failure shows.
    assert.deepEqual(ids(await readRecords(log, 'g', 20)), names(10, 30));
    await assert.rejects(log.read('g', 10, 0), /EIO/);
    fail(false);
    assert.deepEqual(ids(await readRecords(log, 'g', 5)), names(30, 35), 'every snapshot still there');
  }));
});

describe('lanes - waits', () => {
  it('lanes - a read with nothing in either lane returns empty after waitMs', () => withLanes({ idleSliceMs: 20 }, async ({ log }) => {
    const started = Date.now();
    assert.equal((await log.read('g', 5, 120)).records.length, 0);
    await waitFor(() => Date.now() - started >= 100, { what: 'time' });
  }));
});
