/**
 * @module The embedded write-ahead log behind the Log contract: segmented append-only files
 * in one directory, group commit, torn-tail repair on open, consumer groups with committed
 * positions in offsets.json, retention that never removes an uncommitted record.
 *
 * Sequences start at 0 and are dense; `LogRecord.offset` is the record's sequence as a bigint.
 * A group's committed position is the sequence of the first record it has not processed.
 * Opening verifies only the active (last) segment, so start-up time does not grow with the
 * size of the log; a group's read position is found from segment file names plus one scan
 * of a single segment. Readers see only durable records.
 *
 * Room for lanes (events vs snapshots, read with priority): a lane would be a second set of
 * segments in a subdirectory with its own writer and sequences; groups would then hold one
 * position per lane. Nothing here assumes a single lane beyond this class.
 */
import { OneAtATime } from '../one-at-a-time.js';
import { mkdir, open, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Envelope } from '../../core/envelope.js';
import { FluxgateError } from '../../core/errors.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Log, LogBatch, LogPressure } from '../log.js';
import { OFFSETS_FILE, OffsetsFile, loadOffsets } from './offsets.js';
import { SegmentReader, type Cursor } from './reader.js';
import { encodeFrames } from './record.js';
import { segmentsToDelete, shouldSealActive } from './retention.js';
import { listSegments, openSegment, scanFrames, segmentFileName, syncDir, type SegmentInfo } from './segment.js';
import { GroupCommitWriter } from './writer.js';

export interface FileLogOptions {
  /** Directory of the log's files, e.g. `<dataDir>/log`; created when missing. */
  dir: string;
  /** A segment is sealed and a new one started once it reaches this many bytes. */
  segmentBytes: number;
  /** Committed segments whose last write is older than this are deleted; 0: no age limit. */
  retentionHours: number;
  /** Committed segments are deleted oldest first while the log is larger; 0: no size limit. */
  retentionBytes: number;
  /** `pressure().overLimit` once the slowest group is this many records behind. */
  maxLagRecords: number;
  metrics?: Metrics;
  logger?: Logger;
}

/** Appends queued beyond this many bytes are refused (LOG_OVERLOADED) rather than held in memory. */
const MAX_PENDING_BYTES = 256 * 1024 * 1024;

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

export class FileLog implements Log {
  private state: State = 'new';
  private readonly segments: SegmentInfo[] = [];
  private writer!: GroupCommitWriter;
  private reader!: SegmentReader;
  private offsets!: OffsetsFile;
  /** Every known group → its committed position (first unprocessed sequence). */
  private readonly groups = new Map<string, number>();
  private readonly cursors = new Map<string, Cursor>();
  /** One read at a time per group, so successive reads hand out successive records. */
  private readonly reads = new OneAtATime();
  private readonly waiters = new Set<() => void>();
  /** One retention pass at a time; a call during a pass waits for it and then runs its own. */
  private readonly retention = new OneAtATime();
  private closing?: Promise<void>;
  /** Sequence after the last durable record. */
  private logEnd = 0;

  constructor(private readonly opts: FileLogOptions) {}

  async open(): Promise<void> {
    if (this.state !== 'new') throw new Error(`the log in ${this.opts.dir} is already ${this.state}`);
    this.state = 'opening';
    const { dir, logger } = this.opts;
    try {
      await mkdir(dir, { recursive: true });
      await rm(join(dir, `${OFFSETS_FILE}.tmp`), { force: true });
      this.segments.push(...(await listSegments(dir)));
      if (this.segments.length === 0) {
        const path = join(dir, segmentFileName(0));
        await (await open(path, 'wx')).close();
        await syncDir(dir);
        this.segments.push({ base: 0, path, size: 0, mtimeMs: Date.now() });
      }
      const active = this.segments[this.segments.length - 1]!;
      const { fh, size } = await openSegment(active.path, 'r+');
      try {
        const r = await scanFrames(fh, 0, active.base, size, { verifyCrc: true });
        if (r.pos < size) {
          // Torn tail (a write the crash interrupted, never acknowledged) or damage: cut at the
          // last whole, sound record so appends continue on a frame boundary.
          logger?.warn({ segment: active.path, keptBytes: r.pos, droppedBytes: size - r.pos, reason: r.stop }, 'log tail repaired');
          await fh.truncate(r.pos);
          await fh.datasync();
        }
        active.size = r.pos;
        this.logEnd = r.seq;
        for (const [group, next] of await loadOffsets(dir)) this.groups.set(group, this.clampPosition(group, next));
      } catch (err) {
        await fh.close();
        throw err;
      }
      this.reader = new SegmentReader(this.segments);
      this.offsets = new OffsetsFile(dir, () => this.groups);
      this.writer = new GroupCommitWriter({
        dir, segments: this.segments, active: fh, nextSeq: this.logEnd, segmentBytes: this.opts.segmentBytes,
        metrics: this.opts.metrics, logger,
        onDurable: (end) => { this.logEnd = end; this.wake(); this.updateLagGauges(); },
      });
      this.updateLagGauges();
      this.state = 'open';
      logger?.info({ dir, segments: this.segments.length, firstSeq: this.segments[0]!.base, nextSeq: this.logEnd, groups: Object.fromEntries(this.groups) }, 'log opened');
    } catch (err) {
      this.state = 'closed';
      throw new FluxgateError('LOG_UNAVAILABLE', `the log in ${dir} cannot be opened: ${(err as Error).message}`, { cause: err });
    }
  }

  async append(batch: Envelope[]): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closing and takes no appends');
    if (this.state !== 'open') throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    if (batch.length === 0) return;
    const frames = encodeFrames(batch);
    if (this.writer.pendingBytes + frames.length > MAX_PENDING_BYTES) {
      throw new FluxgateError('LOG_OVERLOADED', `more than ${MAX_PENDING_BYTES} bytes wait to be written; the disk is not keeping up`);
    }
    return this.writer.enqueue(frames, batch.length);
  }

  read(group: string, max: number, waitMs: number): Promise<LogBatch> {
    return this.reads.run(group, () => this.readNow(group, max, waitMs));
  }

  async commit(group: string, batch: LogBatch): Promise<void> {
    if (this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closed');
    if (this.state !== 'open' && this.state !== 'closing') throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    if (batch.records.length === 0) return;
    let last = -1;
    for (const r of batch.records) if (Number(r.offset) > last) last = Number(r.offset);
    if (last >= this.logEnd) throw new FluxgateError('BAD_REQUEST', `cannot commit offset ${last}: the log ends before it (${this.logEnd})`);
    const next = last + 1;
    if (next > (this.groups.get(group) ?? -1)) {
      this.groups.set(group, next);
      const cursor = this.cursors.get(group);
      if (cursor && cursor.seq < next) this.cursors.delete(group);
      this.updateLagGauges();
    }
    await this.offsets.persist();
  }

  enforceRetention(now: number = Date.now()): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    return this.retention.run('retention', () => this.retain(now));
  }

  pressure(): LogPressure {
    if (this.state !== 'open') return { lagRecords: 0, pendingBytes: 0, overLimit: false };
    const end = this.logEnd + this.writer.pendingRecords;
    const low = this.lowestCommitted() ?? this.segments[0]!.base;
    const lagRecords = Math.max(0, end - low);
    return { lagRecords, pendingBytes: this.writer.pendingBytes, overLimit: lagRecords >= this.opts.maxLagRecords, unavailable: this.writer.broken !== undefined };
  }

  close(): Promise<void> {
    if (this.state === 'new') { this.state = 'closed'; return Promise.resolve(); }
    if (this.state === 'closed') return Promise.resolve();
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    this.state = 'closing';
    this.wake();
    // Appends queued before close are still written and acknowledged.
    await this.writer.close();
    await this.reads.idle();
    await this.retention.idle();
    await this.offsets.idle();
    await this.reader.close();
    this.state = 'closed';
  }

  private async readNow(group: string, max: number, waitMs: number): Promise<LogBatch> {
    if (this.state !== 'open') {
      if (this.state === 'closing' || this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closing');
      throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    }
    let cursor = await this.cursorFor(group);
    if (cursor.seq >= this.logEnd && waitMs > 0 && this.state === 'open') {
      await this.waitForAppend(waitMs);
      if (this.state !== 'open') return { records: [] };
      cursor = await this.cursorFor(group);
    }
    // Read on a copy: a failed read must not move the group past records it never got.
    const moved = { ...cursor };
    const records = await this.reader.read(moved, Math.max(1, max), this.logEnd);
    this.cursors.set(group, moved);
    return { records };
  }

  private async cursorFor(group: string): Promise<Cursor> {
    const oldest = this.segments[0]!.base;
    const known = this.cursors.get(group);
    if (known && known.seq >= oldest) return known;
    // A new group starts at the oldest record and holds retention back from here on.
    if (!this.groups.has(group)) this.groups.set(group, oldest);
    const cursor = await this.reader.locate(Math.max(oldest, this.groups.get(group)!));
    this.cursors.set(group, cursor);
    return cursor;
  }

  private waitForAppend(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Keeps fluxgate_consumer_lag_records current on every commit and every durable write. */
  private updateLagGauges(): void {
    const gauge = this.opts.metrics?.consumerLag;
    if (gauge) for (const [group, next] of this.groups) gauge.set({ group }, this.logEnd - next);
  }

  private lowestCommitted(): number | undefined {
    let low: number | undefined;
    for (const v of this.groups.values()) if (low === undefined || v < low) low = v;
    return low;
  }

  /** A committed position outside the log (files removed or restored by hand) is pulled inside it. */
  private clampPosition(group: string, next: number): number {
    const oldest = this.segments[0]!.base;
    const clamped = Math.min(Math.max(next, oldest), this.logEnd);
    if (clamped !== next) this.opts.logger?.warn({ group, committed: next, oldest, end: this.logEnd }, 'committed position outside the log; moved inside it');
    return clamped;
  }

  private async retain(now: number): Promise<void> {
    if (this.state !== 'open') return;
    const limits = { retentionHours: this.opts.retentionHours, retentionBytes: this.opts.retentionBytes };
    const low = this.lowestCommitted();
    const active = this.segments[this.segments.length - 1]!;
    if (shouldSealActive(active, low, this.logEnd, now, limits)) await this.writer.requestRoll();
    const n = segmentsToDelete(this.segments, this.lowestCommitted(), this.logEnd, now, limits);
    if (n === 0) return;
    const gone = this.segments.splice(0, n);
    for (const seg of gone) {
      await this.reader.forget(seg.base);
      await unlink(seg.path);
    }
    await syncDir(this.opts.dir);
    const oldest = this.segments[0]!.base;
    for (const [group, cursor] of this.cursors) if (cursor.seq < oldest) this.cursors.delete(group);
    this.opts.logger?.info({ deleted: gone.map((s) => s.path), oldestSeq: oldest }, 'log retention deleted segments');
  }
}
