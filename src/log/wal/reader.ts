/**
 * @module Reading the WAL: positions a cursor on a sequence (the segment by its file name,
 * the byte position by one chunked scan of that segment) and reads batches with large
 * positional reads, several thousand records per syscall. Every record's CRC and sequence are
 * checked on the way out; damage is reported, never skipped silently. Only durable bytes
 * (up to each segment's recorded size) are ever read.
 */
import type { FileHandle } from 'node:fs/promises';
import { FluxgateError } from '../../core/errors.js';
import type { LogRecord } from '../log.js';
import { checkFrame, decodeFrame, frameBytes, readSeq, FRAME_HEADER_BYTES } from './record.js';
import { findSegment, openSegment, scanFrames, type SegmentInfo } from './segment.js';

/** Where a group's next read starts: the record `seq` at byte `pos` of segment `base`. */
export interface Cursor {
  seq: number;
  base: number;
  pos: number;
}

const MIN_CHUNK_BYTES = 64 * 1024;
const MAX_CHUNK_BYTES = 8 * 1024 * 1024;

function damaged(seg: SegmentInfo, pos: number, seq: number, what: string): FluxgateError {
  return new FluxgateError('LOG_UNAVAILABLE', `log record ${seq} in ${seg.path} at byte ${pos} is damaged (${what}); the segment needs repair or removal`, { details: { segment: seg.path, pos, seq, what } });
}

export class SegmentReader {
  private readonly handles = new Map<number, FileHandle>();
  /** Running mean frame size, to size reads so that one read yields about `max` records. */
  private meanFrameBytes = 256;

  constructor(private readonly segments: SegmentInfo[]) {}

  /** A cursor on `seq`, which must lie within [first base, logEnd]. */
  async locate(seq: number): Promise<Cursor> {
    const i = findSegment(this.segments, seq);
    if (i < 0) throw new Error(`sequence ${seq} is before the oldest segment`);
    const seg = this.segments[i]!;
    if (seq === seg.base) return { seq, base: seg.base, pos: 0 };
    const fh = await this.handle(seg);
    const r = await scanFrames(fh, 0, seg.base, seg.size, { verifyCrc: false, visit: (s) => s < seq });
    if (r.stop !== 'visitor' && !(r.stop === 'end' && r.seq === seq)) throw damaged(seg, r.pos, r.seq, `${r.stop} while seeking record ${seq}`);
    return { seq, base: seg.base, pos: r.pos };
  }

  /** Reads up to `max` records from `cursor` (below `logEnd`); advances the cursor in place. */
  async read(cursor: Cursor, max: number, logEnd: number): Promise<LogRecord[]> {
    const records: LogRecord[] = [];
    let minChunk = 0;
    while (records.length < max && cursor.seq < logEnd) {
      const i = findSegment(this.segments, cursor.base);
      const seg = this.segments[i];
      if (!seg || seg.base !== cursor.base) throw new Error(`segment ${cursor.base} is gone`);
      if (cursor.pos >= seg.size) {
        const next = this.segments[i + 1];
        if (!next) break;
        cursor.base = next.base;
        cursor.pos = 0;
        continue;
      }
      const fh = await this.handle(seg);
      const wanted = Math.ceil((max - records.length) * this.meanFrameBytes * 1.25);
      const size = Math.min(seg.size - cursor.pos, Math.max(minChunk, Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, wanted))));
      // A fresh buffer per read: the payloads handed out are views into it.
      const chunk = Buffer.allocUnsafeSlow(size);
      const { bytesRead } = await fh.read(chunk, 0, size, cursor.pos);
      let off = 0;
      const before = records.length;
      while (off < bytesRead && records.length < max) {
        const check = checkFrame(chunk, off, bytesRead, true);
        if (check === 'short') break;
        if (check !== 'ok') throw damaged(seg, cursor.pos + off, cursor.seq, check);
        if (readSeq(chunk, off + 8) !== cursor.seq) throw damaged(seg, cursor.pos + off, cursor.seq, `sequence ${readSeq(chunk, off + 8)} found`);
        let envelope;
        try {
          envelope = decodeFrame(chunk, off);
        } catch (err) {
          throw damaged(seg, cursor.pos + off, cursor.seq, (err as Error).message);
        }
        records.push({ offset: BigInt(cursor.seq), envelope });
        off += frameBytes(chunk, off);
        cursor.seq++;
      }
      if (off === 0) {
        // One record larger than the chunk: read it whole next time round.
        if (bytesRead < FRAME_HEADER_BYTES || cursor.pos + frameBytes(chunk, 0) > seg.size) throw damaged(seg, cursor.pos, cursor.seq, 'cut short inside durable data');
        minChunk = frameBytes(chunk, 0);
        continue;
      }
      this.meanFrameBytes = Math.max(32, Math.round(this.meanFrameBytes * 0.5 + (off / (records.length - before)) * 0.5));
      cursor.pos += off;
    }
    return records;
  }

  /** Closes the read handle of a segment that retention removed. */
  async forget(base: number): Promise<void> {
    const fh = this.handles.get(base);
    this.handles.delete(base);
    await fh?.close();
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((fh) => fh.close()));
  }

  private async handle(seg: SegmentInfo): Promise<FileHandle> {
    let fh = this.handles.get(seg.base);
    if (!fh) {
      fh = (await openSegment(seg.path, 'r')).fh;
      // Another read may have opened it meanwhile; keep one.
      const other = this.handles.get(seg.base);
      if (other) { await fh.close(); return other; }
      this.handles.set(seg.base, fh);
    }
    return fh;
  }
}
