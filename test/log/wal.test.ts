/** @module The WAL runs the Log conformance suite, plus its own durability and format tests. */
import assert from 'node:assert/strict';
import { appendFile, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runLogSuite, readRecords, testEnvelope, assertSameEnvelope } from '../conformance/log.suite.js';
import { counterValue, histogramTotals, segmentFiles, walHarness, type WalHarness } from './wal-harness.js';

runLogSuite({ name: 'wal', create: ({ maxLagRecords }) => walHarness({ maxLagRecords }) });

async function withWal(over: Parameters<typeof walHarness>[0], fn: (h: WalHarness) => Promise<void>): Promise<void> {
  const h = await walHarness(over);
  try {
    await fn(h);
  } finally {
    await h.cleanup();
  }
}

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `m-${from + i}`);

describe('wal - repair and damage', () => {
  it('wal - torn tail (garbage after the last record) is cut at the last good record and appends continue', () => withWal({}, async (h) => {
    await h.log.append(Array.from({ length: 10 }, (_, i) => testEnvelope(i)));
    await h.close();
    const [seg] = await segmentFiles(h.opts.dir);
    const path = join(h.opts.dir, seg!);
    const goodSize = (await stat(path)).size;
    await appendFile(path, Buffer.from([0x13, 0x00, 0x00, 0x00, 0x99, 0x01, 0x02, 0xff, 0x00, 0x07]));
    const log = await h.reopen();
    assert.equal((await stat(path)).size, goodSize, 'garbage removed');
    await log.append([testEnvelope(10)]);
    const got = await readRecords(log, 'g', 11);
    assert.deepEqual(got.map((r) => r.envelope.messageId), ids(11));
    assert.deepEqual(got.map((r) => r.offset), Array.from({ length: 11 }, (_, i) => BigInt(i)), 'offsets start at 0 and stay dense');
  }));

  it('wal - torn tail (last record cut short) is cut at the last good record', () => withWal({}, async (h) => {
    await h.log.append(Array.from({ length: 10 }, (_, i) => testEnvelope(i)));
    await h.close();
    const path = join(h.opts.dir, (await segmentFiles(h.opts.dir))[0]!);
    await truncate(path, (await stat(path)).size - 5);
    const log = await h.reopen();
    await log.append([testEnvelope(100)]);
    const got = await readRecords(log, 'g', 10);
    assert.deepEqual(got.map((r) => r.envelope.messageId), [...ids(9), 'm-100']);
    assert.equal(got[9]!.offset, 9n, 'the cut record\'s sequence is reused');
  }));

  it('wal - a CRC-corrupted record in the active segment is detected on open and the log is cut before it', () => withWal({}, async (h) => {
    for (let i = 0; i < 10; i++) await h.log.append([testEnvelope(i)]);
    await h.close();
    const path = join(h.opts.dir, (await segmentFiles(h.opts.dir))[0]!);
    const bytes = await readFile(path);
    const fifth = offsetOfRecord(bytes, 5);
    bytes[fifth + 40] = bytes[fifth + 40]! ^ 0x55; // inside record 5's body
    await writeFile(path, bytes);
    const log = await h.reopen();
    const got = await readRecords(log, 'g', 5);
    assert.deepEqual(got.map((r) => r.envelope.messageId), ids(5));
    assert.equal((await log.read('g', 10, 20)).records.length, 0);
  }));

  it('wal - a CRC-corrupted record in a sealed segment is reported when read, never skipped', () => withWal({ segmentBytes: 4096 }, async (h) => {
    for (let i = 0; i < 200; i++) await h.log.append([testEnvelope(i)]);
    await h.close();
    const files = await segmentFiles(h.opts.dir);
    assert.ok(files.length > 2);
    const path = join(h.opts.dir, files[0]!);
    const bytes = await readFile(path);
    const third = offsetOfRecord(bytes, 3);
    bytes[third + 30] = bytes[third + 30]! ^ 0x01;
    await writeFile(path, bytes);
    const log = await h.reopen();
    const first = await log.read('g', 3, 100);
    assert.deepEqual(first.records.map((r) => r.envelope.messageId), ids(3));
    await assert.rejects(log.read('g', 10, 100), (err: { code?: string; message: string }) => err.code === 'LOG_UNAVAILABLE' && /bad-crc/.test(err.message));
    // The failed read did not move the group past the damage.
    await assert.rejects(log.read('g', 10, 100), /bad-crc/);
  }));
});

describe('wal - segments', () => {
  it('wal - segments roll at segmentBytes and are named by their first sequence', () => withWal({ segmentBytes: 8192 }, async (h) => {
    const sent = Array.from({ length: 300 }, (_, i) => testEnvelope(i, { payload: new Uint8Array(100).fill(i & 0xff) }));
    for (let i = 0; i < sent.length; i += 10) await h.log.append(sent.slice(i, i + 10));
    const files = await segmentFiles(h.opts.dir);
    assert.ok(files.length >= 4, `${files.length} segments`);
    for (const [i, f] of files.entries()) {
      const size = (await stat(join(h.opts.dir, f))).size;
      if (i < files.length - 1) assert.ok(size >= 8192 && size < 8192 + 10 * 300, `sealed segment ${f} is ${size} bytes`);
    }
    const got = await readRecords(h.log, 'g', 300, 37);
    got.forEach((r, i) => assertSameEnvelope(r.envelope, sent[i]!));
    // Each file's name is the sequence of its first record.
    const firsts = new Set(files.map((f) => BigInt(f.slice(0, -4))));
    for (const r of got) if (firsts.has(r.offset)) firsts.delete(r.offset);
    assert.equal(firsts.size, 0);
    const log = await h.reopen();
    const again = await readRecords(log, 'g2', 300, 5000);
    assert.equal(again.length, 300);
    again.forEach((r, i) => assertSameEnvelope(r.envelope, sent[i]!));
  }));

  it('wal - a group resumes in the middle of a sealed segment after a restart', () => withWal({ segmentBytes: 8192 }, async (h) => {
    for (let i = 0; i < 200; i += 4) await h.log.append([testEnvelope(i), testEnvelope(i + 1), testEnvelope(i + 2), testEnvelope(i + 3)]);
    const first = await readRecords(h.log, 'g', 77);
    await h.log.commit('g', { records: first });
    const log = await h.reopen();
    const rest = await readRecords(log, 'g', 123, 50);
    assert.deepEqual(rest.map((r) => r.envelope.messageId), ids(123, 77));
  }));
});

describe('wal - consumer groups', () => {
  it('wal - group names are data: __proto__ and constructor commit and resume like any other', () => withWal({}, async (h) => {
    await h.log.append(Array.from({ length: 6 }, (_, i) => testEnvelope(i)));
    await h.log.commit('__proto__', { records: await readRecords(h.log, '__proto__', 2) });
    await h.log.commit('constructor', { records: await readRecords(h.log, 'constructor', 4) });
    const log = await h.reopen();
    assert.deepEqual((await readRecords(log, '__proto__', 4)).map((r) => r.envelope.messageId), ids(4, 2));
    assert.deepEqual((await readRecords(log, 'constructor', 2)).map((r) => r.envelope.messageId), ids(2, 4));
  }));

  it('wal - committing past the end of the log is refused', () => withWal({}, async (h) => {
    await h.log.append([testEnvelope(0)]);
    const env = testEnvelope(1);
    await assert.rejects(h.log.commit('g', { records: [{ offset: 5n, envelope: env }] }), (err: { code?: string }) => err.code === 'BAD_REQUEST');
  }));
});

describe('wal - group commit and failures', () => {
  it('wal - 200 concurrent appends share far fewer fsyncs than appends', () => withWal({}, async (h) => {
    const before = await counterValue(h.metrics.logSyncs);
    await Promise.all(Array.from({ length: 200 }, (_, i) => h.log.append([testEnvelope(i)])));
    const syncs = (await counterValue(h.metrics.logSyncs)) - before;
    assert.ok(syncs >= 1 && syncs <= 20, `${syncs} fsyncs for 200 appends`);
    const totals = await histogramTotals(h.metrics.logSyncBatchRecords);
    assert.equal(totals.sum, 200, 'every record was in exactly one sync');
    assert.equal(totals.count, syncs);
    const appendTimes = (await h.metrics.logAppendSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'));
    assert.equal(appendTimes?.value, 200);
    assert.equal((await readRecords(h.log, 'g', 200)).length, 200);
  }));

  it('wal - a failed fdatasync rejects the pending appends with LOG_UNAVAILABLE and none of them is ever read', () => withWal({}, async (h) => {
    await h.log.append([testEnvelope(1)]);
    const active = activeHandle(h);
    const realSync = active.datasync;
    let failures = 1; // the batch's sync fails once; cutting it off afterwards succeeds
    active.datasync = function (this: unknown) {
      return failures-- > 0 ? Promise.reject(Object.assign(new Error('EIO: simulated disk failure'), { code: 'EIO' })) : realSync.call(this);
    };
    const attempts = [[2], [3, 4], [5], [6, 7, 8], [9]];
    const settled = await Promise.allSettled(attempts.map((ns) => h.log.append(ns.map((n) => testEnvelope(n)))));
    delete (active as { datasync?: unknown }).datasync; // back to the prototype's real datasync
    const acked = ['m-1'];
    for (const [i, r] of settled.entries()) {
      if (r.status === 'fulfilled') { acked.push(...attempts[i]!.map((n) => `m-${n}`)); continue; }
      assert.equal(r.reason.code, 'LOG_UNAVAILABLE');
      assert.match(String(r.reason.cause?.message), /EIO/);
    }
    assert.ok(acked.length < 9, 'the failed sync rejected at least one append');
    await h.log.append([testEnvelope(10)]);
    acked.push('m-10');
    assert.deepEqual((await readRecords(h.log, 'g', acked.length)).map((r) => r.envelope.messageId), acked);
    const log = await h.reopen();
    assert.deepEqual((await readRecords(log, 'g2', acked.length)).map((r) => r.envelope.messageId), acked);
    assert.equal((await log.read('g2', 10, 20)).records.length, 0, 'nothing of a rejected append is read');
  }));

  it('wal - a failure that cannot be undone stops the log taking appends until it is reopened', () => withWal({}, async (h) => {
    await h.log.append([testEnvelope(1)]);
    const active = activeHandle(h);
    active.datasync = () => Promise.reject(Object.assign(new Error('EIO: simulated disk failure'), { code: 'EIO' }));
    await assert.rejects(h.log.append([testEnvelope(2)]), (err: { code?: string }) => err.code === 'LOG_UNAVAILABLE');
    await assert.rejects(h.log.append([testEnvelope(3)]), (err: { code?: string }) => err.code === 'LOG_UNAVAILABLE');
    delete (active as { datasync?: unknown }).datasync;
    const log = await h.reopen();
    await log.append([testEnvelope(4)]);
    assert.deepEqual((await readRecords(log, 'g', 2)).map((r) => r.envelope.messageId), ['m-1', 'm-4']);
  }));

  it('wal - appends queued before close are written; close then reopen keeps them', () => withWal({}, async (h) => {
    const appends = Array.from({ length: 50 }, (_, i) => h.log.append([testEnvelope(i)]));
    const closed = h.log.close();
    await Promise.all(appends);
    await closed;
    const log = await h.reopen();
    assert.equal((await readRecords(log, 'g', 50)).length, 50);
  }));
});

/** Byte position of record `n` in a segment file whose first record is 0. */
function offsetOfRecord(bytes: Buffer, n: number): number {
  let off = 0;
  for (let i = 0; i < n; i++) off += 16 + bytes.readUInt32LE(off + 4);
  return off;
}

/** The writer's active segment handle, to inject disk failures. */
function activeHandle(h: WalHarness): { datasync: () => Promise<void> } {
  return (h.log as unknown as { writer: { active: { datasync: () => Promise<void> } } }).writer.active;
}
