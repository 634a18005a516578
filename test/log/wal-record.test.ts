/** @module WAL record format: the bytes match docs/format/log.md, and records of any size round-trip. */
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { describe, it } from 'node:test';
import { checkFrame, decodeFrame, encodeFrames, stampFrames } from '../../src/log/wal/record.js';
import { assertSameEnvelope, readRecords, testEnvelope } from '../conformance/log.suite.js';
import { walHarness } from './wal-harness.js';
import type { Envelope } from '../../src/core/envelope.js';

describe('wal - record format', () => {
  it('wal - CRC is CRC-32/ISO-HDLC (check value 0xCBF43926), as documented', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  });

  it('wal - a record is laid out byte by byte as docs/format/log.md says', () => {
    const env: Envelope = {
      tenant: 'acme', project: 'p7', device: 'd1', kind: 'snapshot', topic: 't/x', protocol: 'coap',
      receiveTime: 1_764_000_000_123, deviceTime: 1_764_000_000_000, messageId: 'id-1', payload: new Uint8Array([0, 1, 0xfe, 0xff]),
    };
    const buf = encodeFrames([env]);
    assert.equal(stampFrames(buf, 2 ** 40 + 7), 2 ** 40 + 8);
    const body = Buffer.concat([
      Buffer.from([1, 2, 2, 1]), // version 1, kind snapshot=2, protocol coap=2, flags deviceTime
      f64(1_764_000_000_123), f64(1_764_000_000_000),
      str('acme'), str('p7'), str('d1'), str('t/x'), str('id-1'),
      Buffer.from([0, 1, 0xfe, 0xff]),
    ]);
    const afterCrc = Buffer.concat([u32(body.length), u32(7), u32(2 ** 8), body]); // sequence 2^40 + 7 as two little-endian words
    assert.deepEqual(buf, Buffer.concat([u32(crc32(afterCrc)), afterCrc]));
    assert.equal(checkFrame(buf, 0, buf.length, true), 'ok');
    assertSameEnvelope(decodeFrame(buf, 0), env);
    buf[buf.length - 1] ^= 1;
    assert.equal(checkFrame(buf, 0, buf.length, true), 'bad-crc');
    assert.equal(checkFrame(buf, 0, buf.length - 1, true), 'short');
  });

  it('wal - an envelope without deviceTime comes back without it', () => {
    const buf = encodeFrames([testEnvelope(3)]);
    stampFrames(buf, 0);
    const env = decodeFrame(buf, 0);
    assert.equal('deviceTime' in env, false);
    assertSameEnvelope(env, testEnvelope(3));
  });

  it('wal - envelopes the format cannot hold are refused at append', () => {
    assert.throws(() => encodeFrames([testEnvelope(1, { topic: 'x'.repeat(70_000) })]), (e: { code?: string }) => e.code === 'BAD_REQUEST');
    assert.throws(() => encodeFrames([testEnvelope(1, { kind: 'bogus' as never })]), (e: { code?: string }) => e.code === 'BAD_REQUEST');
  });

  it('wal - records larger than a read chunk round-trip, also across a restart and a resume', async () => {
    const h = await walHarness({ segmentBytes: 64 * 1024 });
    try {
      const big = (n: number, size: number) => testEnvelope(n, { payload: new Uint8Array(size).map((_, i) => (i * 13 + n) & 0xff) });
      const sent = [testEnvelope(0), big(1, 3 * 1024 * 1024), testEnvelope(2), big(3, 1024 * 1024 + 3), testEnvelope(4)];
      for (const e of sent) await h.log.append([e]);
      const first = await readRecords(h.log, 'g', 2, 2);
      await h.log.commit('g', { records: first });
      const log = await h.reopen();
      const rest = await readRecords(log, 'g', 3);
      [...first, ...rest].forEach((r, i) => assertSameEnvelope(r.envelope, sent[i]!));
      const all = await readRecords(log, 'all', 5, 5000);
      all.forEach((r, i) => assertSameEnvelope(r.envelope, sent[i]!));
    } finally {
      await h.cleanup();
    }
  });
});

function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function f64(n: number): Buffer { const b = Buffer.alloc(8); b.writeDoubleLE(n); return b; }
function str(s: string): Buffer { const b = Buffer.from(s, 'utf8'); return Buffer.concat([Buffer.from([b.length & 0xff, b.length >> 8]), b]); }
