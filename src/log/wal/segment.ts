/**
 * @module WAL segment files: naming (the first sequence of a segment is its file name, so
 * finding the segment of any sequence needs no scan), listing, chunked frame scanning and
 * torn-tail repair. Only the last (active) segment is ever written, so only it is verified on
 * open; sealed segments were fully fdatasync'd before the next one was created and are trusted
 * (their CRCs are still checked on every read).
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FRAME_HEADER_BYTES, checkFrame, frameBytes, readSeq, type FrameCheck } from './record.js';

export const SEGMENT_SUFFIX = '.wal';
const NAME_DIGITS = 20;
/** Scan chunk: large sequential reads, one syscall per MiB rather than per record. */
export const SCAN_CHUNK_BYTES = 1024 * 1024;

export interface SegmentInfo {
  /** Sequence of the first record in the segment (also its file name). */
  base: number;
  path: string;
  /** Bytes of whole records (for the active segment: what is durable). */
  size: number;
  /** Time of the last write, ms; retention by age compares against it. */
  mtimeMs: number;
}

export function segmentFileName(base: number): string {
  return String(base).padStart(NAME_DIGITS, '0') + SEGMENT_SUFFIX;
}

/** Segment files of `dir`, oldest first, with their sizes and modification times. */
export async function listSegments(dir: string): Promise<SegmentInfo[]> {
  const names = await readdir(dir);
  const out: SegmentInfo[] = [];
  for (const name of names) {
    if (!name.endsWith(SEGMENT_SUFFIX)) continue;
    const digits = name.slice(0, -SEGMENT_SUFFIX.length);
    if (!/^\d+$/.test(digits)) continue;
    const path = join(dir, name);
    const st = await stat(path);
    out.push({ base: Number(digits), path, size: st.size, mtimeMs: st.mtimeMs });
  }
  return out.sort((a, b) => a.base - b.base);
}

/** Index of the segment holding `seq` (the last whose base ≤ seq); -1 when seq is before all. */
export function findSegment(segments: readonly SegmentInfo[], seq: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (segments[mid]!.base <= seq) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

export interface ScanResult {
  /** File position after the last whole, sound record visited (or where the visitor stopped). */
  pos: number;
  /** Sequence of the next record (the one at `pos`). */
  seq: number;
  /** Why the scan ended. `short`: the data ends inside a frame (a torn tail). */
  stop: 'end' | 'visitor' | FrameCheck | 'bad-seq';
}

/**
 * Walks the frames of `fh` from `start` (whose record has sequence `seq`) to `end`, reading
 * SCAN_CHUNK_BYTES at a time. `visit` returns false to stop before that record. Stops at the
 * first frame that is cut short, damaged, or out of sequence.
 */
export async function scanFrames(
  fh: FileHandle, start: number, seq: number, end: number,
  opts: { verifyCrc: boolean; visit?: (seq: number, pos: number) => boolean },
): Promise<ScanResult> {
  let chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
  let pos = start;
  while (pos < end) {
    const want = Math.min(chunk.length, end - pos);
    const { bytesRead } = await fh.read(chunk, 0, want, pos);
    let off = 0;
    let stop: ScanResult['stop'] | undefined;
    while (off < bytesRead) {
      const check = checkFrame(chunk, off, bytesRead, opts.verifyCrc);
      if (check === 'short') break;
      if (check !== 'ok') { stop = check; break; }
      if (readSeq(chunk, off + 8) !== seq) { stop = 'bad-seq'; break; }
      if (opts.visit && !opts.visit(seq, pos + off)) { stop = 'visitor'; break; }
      off += frameBytes(chunk, off);
      seq++;
    }
    if (stop) return { pos: pos + off, seq, stop };
    if (off === 0) {
      // The frame at `pos` does not fit in this chunk: a record larger than a chunk, or a tail
      // that ends inside a frame.
      if (bytesRead < FRAME_HEADER_BYTES || pos + frameBytes(chunk, 0) > end) return { pos, seq, stop: 'short' };
      if (bytesRead < want) return { pos, seq, stop: 'short' };
      chunk = Buffer.allocUnsafe(frameBytes(chunk, 0));
      continue;
    }
    pos += off;
  }
  return { pos, seq, stop: 'end' };
}

/** Opens a segment file and reads its current size (for repair and for reading). */
export async function openSegment(path: string, flags: 'r' | 'r+'): Promise<{ fh: FileHandle; size: number }> {
  const fh = await open(path, flags);
  try {
    return { fh, size: (await fh.stat()).size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** fsync of a directory, so a created, renamed or deleted entry survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
