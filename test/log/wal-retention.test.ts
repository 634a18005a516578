/** @module WAL retention: by age and by size, only ever segments every consumer group has committed. */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readRecords, testEnvelope } from '../conformance/log.suite.js';
import { segmentFiles, walHarness, type WalHarness } from './wal-harness.js';
import type { FileLogOptions } from '../../src/log/wal/index.js';

const HOUR = 3600 * 1000;

async function withWal(over: Partial<FileLogOptions>, fn: (h: WalHarness) => Promise<void>): Promise<void> {
  const h = await walHarness(over);
  try {
    await fn(h);
  } finally {
    await h.cleanup();
  }
}

async function fill(h: WalHarness, count: number): Promise<void> {
  for (let i = 0; i < count; i += 4) await h.log.append([0, 1, 2, 3].map((k) => testEnvelope(i + k)));
}

const bases = async (dir: string) => (await segmentFiles(dir)).map((f) => Number(f.slice(0, -4)));
async function totalBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await segmentFiles(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

describe('wal - retention', () => {
  it('wal - retention by age deletes only segments fully committed by every group', () => withWal({ segmentBytes: 4096, retentionHours: 72 }, async (h) => {
    await fill(h, 400);
    const before = await bases(h.opts.dir);
    assert.ok(before.length >= 6, `${before.length} segments`);
    await h.log.commit('a', { records: await readRecords(h.log, 'a', 230) });
    await h.log.commit('b', { records: await readRecords(h.log, 'b', 400) });

    await h.log.enforceRetention(Date.now());
    assert.deepEqual(await bases(h.opts.dir), before, 'nothing is old enough yet');

    await h.log.enforceRetention(Date.now() + 73 * HOUR);
    const after = await bases(h.opts.dir);
    const deleted = before.filter((b) => !after.includes(b));
    assert.ok(deleted.length > 0, 'old committed segments were deleted');
    // Every deleted segment ended at or before group a's committed position (230) ...
    for (const b of deleted) assert.ok(before[before.indexOf(b) + 1]! <= 230, `segment ${b} held uncommitted records`);
    // ... and the oldest kept one holds record 230 or a record before it.
    assert.ok(after[0]! <= 230);
    assert.ok(after[1]! > 230, 'every fully committed segment went');

    const log = await h.reopen();
    const a = await readRecords(log, 'a', 170);
    assert.deepEqual([a[0]!.offset, a.at(-1)!.offset], [230n, 399n]);
    const fresh = await log.read('c', 1, 100);
    assert.equal(fresh.records[0]!.offset, BigInt(after[0]!), 'a new group starts at the oldest record kept');
  }));

  it('wal - retention deletes nothing while no consumer group exists', () => withWal({ segmentBytes: 4096, retentionHours: 1, retentionBytes: 4096 }, async (h) => {
    await fill(h, 200);
    const before = await bases(h.opts.dir);
    await h.log.enforceRetention(Date.now() + 1000 * HOUR);
    assert.deepEqual(await bases(h.opts.dir), before);
  }));

  it('wal - a group that has read but not committed holds retention back', () => withWal({ segmentBytes: 4096, retentionHours: 1 }, async (h) => {
    await fill(h, 200);
    await h.log.commit('a', { records: await readRecords(h.log, 'a', 200) });
    await readRecords(h.log, 'slow', 10); // reads, never commits
    const before = await bases(h.opts.dir);
    await h.log.enforceRetention(Date.now() + 1000 * HOUR);
    assert.deepEqual(await bases(h.opts.dir), before);
  }));

  it('wal - retention by size deletes the oldest committed segments until the log fits', () => withWal({ segmentBytes: 4096, retentionHours: 0, retentionBytes: 3 * 4096 }, async (h) => {
    await fill(h, 400);
    await h.log.commit('a', { records: await readRecords(h.log, 'a', 400) });
    const before = await bases(h.opts.dir);
    const sizes = new Map<number, number>();
    for (const f of await segmentFiles(h.opts.dir)) sizes.set(Number(f.slice(0, -4)), (await stat(join(h.opts.dir, f))).size);
    assert.ok(await totalBytes(h.opts.dir) > 3 * 4096);
    await h.log.enforceRetention();
    const after = await bases(h.opts.dir);
    const total = await totalBytes(h.opts.dir);
    assert.ok(total <= 3 * 4096, `${total} bytes left`);
    const deleted = before.filter((b) => !after.includes(b));
    assert.ok(deleted.length > 0);
    assert.deepEqual(deleted, before.slice(0, deleted.length), 'oldest first');
    // Minimal: keeping the newest deleted segment would have been over the limit.
    assert.ok(total + sizes.get(deleted.at(-1)!)! > 3 * 4096, 'deleted no more than needed');
    // Records kept are all readable from the oldest on.
    const c = await readRecords(h.log, 'c', 400 - after[0]!);
    assert.equal(c[0]!.offset, BigInt(after[0]!));
    assert.equal(c.at(-1)!.offset, 399n);
  }));

  it('wal - a quiet, fully committed active segment is sealed so age retention can remove it', () => withWal({ retentionHours: 1 }, async (h) => {
    await fill(h, 12);
    assert.deepEqual(await bases(h.opts.dir), [0]);
    await h.log.commit('a', { records: await readRecords(h.log, 'a', 12) });
    await h.log.enforceRetention(Date.now() + 2 * HOUR);
    assert.deepEqual(await bases(h.opts.dir), [12], 'only a new, empty segment is left');
    await h.log.append([testEnvelope(12)]);
    const log = await h.reopen();
    const r = await readRecords(log, 'a', 1);
    assert.equal(r[0]!.offset, 12n);
    assert.equal(r[0]!.envelope.messageId, 'm-12');
  }));
});
