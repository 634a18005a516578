/**
 * @module Group commit: the one writer of the active segment. Appends from every connection
 * queue here; a single loop takes the whole queue, gives it sequence numbers, writes it with
 * one writev and makes it durable with one fdatasync, then resolves every append in
 * it. While that sync runs, new appends queue for the next round, so the number of syncs
 * follows the disk's speed, not the number of callers.
 *
 * Promise: an append resolves only after fdatasync of its bytes; on a failed write or sync it
 * rejects with LOG_UNAVAILABLE, the segment is cut back to its last durable byte and the
 * sequence numbers are not consumed, so nothing of it is ever read.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FluxgateError } from '../../core/errors.js';
import type { Metrics } from '../../observability/metrics.js';
import { stampFrames } from './record.js';
import { segmentFileName, syncDir, type SegmentInfo } from './segment.js';

interface PendingAppend {
  frames: Buffer;
  records: number;
  startedNs: bigint;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface WriterOptions {
  dir: string;
  /** Shared with the log: the writer pushes a new entry when it rolls; the last one is active. */
  segments: SegmentInfo[];
  active: FileHandle;
  nextSeq: number;
  segmentBytes: number;
  metrics?: Metrics;
  logger?: Logger;
  /** Called after each durable write with the new end of the log. */
  onDurable: (nextSeq: number) => void;
}

export class GroupCommitWriter {
  private queue: PendingAppend[] = [];
  private queuedBytes = 0;
  private queuedRecords = 0;
  private loop?: Promise<void>;
  private running = false;
  private rollRequested = false;
  private active: FileHandle;
  private failure?: FluxgateError;
  /** Sequence of the next record to be written; everything below it is durable. */
  nextSeq: number;

  constructor(private readonly opts: WriterOptions) {
    this.active = opts.active;
    this.nextSeq = opts.nextSeq;
  }

  get pendingBytes(): number { return this.queuedBytes; }
  get pendingRecords(): number { return this.queuedRecords; }
  /** Set when the log can no longer be trusted to write (a failed sync could not be undone). */
  get broken(): FluxgateError | undefined { return this.failure; }

  enqueue(frames: Buffer, records: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ frames, records, startedNs: process.hrtime.bigint(), resolve, reject });
      this.queuedBytes += frames.length;
      this.queuedRecords += records;
      this.kick();
    });
  }

  /** Seals the active segment at the next opportunity (retention of a quiet log uses it). */
  requestRoll(): Promise<void> {
    this.rollRequested = true;
    this.kick();
    return this.idle();
  }

  /** Resolves once everything queued so far is written (or failed). */
  async idle(): Promise<void> {
    while (this.running) await this.loop;
  }

  async close(): Promise<void> {
    await this.idle();
    await this.active.close();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    // `running` is cleared in the same turn as the last empty-queue check (no await between
    // them), so an append that arrives afterwards always starts a new loop.
    for (;;) {
      if (this.queue.length === 0 && !this.rollRequested) { this.running = false; return; }
      const batch = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      this.queuedRecords = 0;
      try {
        await this.maybeRoll();
      } catch (err) {
        this.rollRequested = false;
        this.fail(batch, err, 'creating a new segment');
        continue;
      }
      if (batch.length === 0) continue;
      try {
        await this.flush(batch);
      } catch (err) {
        // Only a bug gets here (I/O failures are handled inside flush); the loop must live on.
        this.fail(batch, err, 'preparing the write');
      }
    }
  }

  private activeInfo(): SegmentInfo {
    return this.opts.segments[this.opts.segments.length - 1]!;
  }

  private async maybeRoll(): Promise<void> {
    const info = this.activeInfo();
    const full = info.size >= this.opts.segmentBytes;
    if (!(full || this.rollRequested) || info.size === 0) {
      this.rollRequested = false;
      return;
    }
    const base = this.nextSeq;
    const path = join(this.opts.dir, segmentFileName(base));
    // 'wx': a segment is created once; finding one already there means two writers on one dir.
    const fh = await open(path, 'wx');
    try {
      // The new name must be durable before any record in it is acknowledged.
      await syncDir(this.opts.dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    const old = this.active;
    this.active = fh;
    this.opts.segments.push({ base, path, size: 0, mtimeMs: Date.now() });
    this.rollRequested = false;
    await old.close();
    this.opts.logger?.debug({ segment: path }, 'log segment rolled');
  }

  private async flush(batch: PendingAppend[]): Promise<void> {
    const info = this.activeInfo();
    let records = 0;
    let bytes = 0;
    for (const p of batch) { records += p.records; bytes += p.frames.length; }
    let next = this.nextSeq;
    const buffers = batch.map((p) => p.frames);
    for (const b of buffers) next = stampFrames(b, next);
    try {
      // One writev for the whole round (libuv splits at IOV_MAX and finishes short writes);
      // the fallback only runs if a short count still comes back.
      const { bytesWritten } = await this.active.writev(buffers, info.size);
      if (bytesWritten < bytes) {
        const rest = Buffer.concat(buffers, bytes);
        for (let written = bytesWritten; written < bytes;) {
          written += (await this.active.write(rest, written, bytes - written, info.size + written)).bytesWritten;
        }
      }
      await this.active.datasync();
      this.opts.metrics?.logSyncs.inc();
    } catch (err) {
      await this.undo(info);
      this.fail(batch, err, `writing ${info.path}`);
      return;
    }
    info.size += bytes;
    info.mtimeMs = Date.now();
    this.nextSeq = next;
    this.opts.metrics?.logSyncBatchRecords.observe(records);
    const now = process.hrtime.bigint();
    for (const p of batch) {
      this.opts.metrics?.logAppendSeconds.observe(Number(now - p.startedNs) / 1e9);
      p.resolve();
    }
    this.opts.onDurable(this.nextSeq);
  }

  /** Cuts a partly written batch off, so the next write starts on a frame boundary. */
  private async undo(info: SegmentInfo): Promise<void> {
    try {
      await this.active.truncate(info.size);
      await this.active.datasync();
    } catch (err) {
      // After a failed sync the kernel's view of the file is unknown: stop taking writes
      // rather than acknowledge on top of it. Reopening repairs the tail.
      this.failure = new FluxgateError('LOG_UNAVAILABLE', `the log segment ${info.path} cannot be repaired after a failed write; restart the node`, { cause: err });
      this.opts.logger?.error({ err, segment: info.path }, 'log is unusable until restart');
    }
  }

  private fail(batch: PendingAppend[], err: unknown, doing: string): void {
    const e = new FluxgateError('LOG_UNAVAILABLE', `log append failed ${doing}: ${(err as Error).message}`, { cause: err });
    this.opts.logger?.error({ err }, `log append failed ${doing}`);
    for (const p of batch) p.reject(e);
    if (this.failure) {
      for (const p of this.queue) p.reject(this.failure);
      this.queue = [];
      this.queuedBytes = 0;
      this.queuedRecords = 0;
    }
  }
}
