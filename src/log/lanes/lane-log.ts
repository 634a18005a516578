/**
 * @module A Log made of one inner Log per lane (lane.ts): events, telemetry and attributes in
 * the `events` lane, snapshots in the `snapshots` lane. Wraps any backend (the WAL, JetStream)
 * so lanes are not a flag inside each one.
 *
 * - `append` splits a batch by lane and resolves only when every part is durable; if one part
 *   fails the call rejects (after both settled) and nothing of it counts as acknowledged — a
 *   part already durable is then logged twice when the source retries, which stores absorb
 *   (idempotent on message id).
 * - `read` is strict priority: events first; snapshots only fill what the event lane left of
 *   `max` (so only when the event lane is caught up). Snapshots may wait as long as events
 *   alone keep processing busy; that backlog stays bounded because admission sheds new
 *   snapshots once the lag passes log.shedSnapshotsAtRecords. While both lanes are empty the
 *   read waits on the event lane in slices of `idleSliceMs` and looks at the snapshot lane
 *   between them: an event wakes a waiting reader at once, a snapshot within one slice.
 * - Order per device holds within a lane. An event and a snapshot of one device may be
 *   processed in the other order; latest state is last-write-wins by device time, so that is
 *   safe (the snapshot is older state either way when it was sent before the event).
 * - `commit` splits the batch by the lane carried in each offset and commits each lane's part.
 * - `pressure` sums the lanes (`lagRecords`, `pendingBytes`) and reports each in `lanes`;
 *   overLimit when the total reaches maxLagRecords or a lane says so.
 * - `enforceRetention` runs each lane's own retention (each keeps what its groups have not
 *   committed).
 */
import type { Logger } from 'pino';
import type { Envelope } from '../../core/envelope.js';
import { FluxgateError } from '../../core/errors.js';
import type { Log, LogBatch, LogPressure, LogRecord } from '../log.js';
import { OneAtATime } from '../one-at-a-time.js';
import { LANES, laneIndexOf, laneOfKind, tagOffset, untagOffset, type Lane } from './lane.js';

export interface LaneLogOptions {
  /** The inner log of each lane, not yet opened. */
  lanes: Record<Lane, Log>;
  /** `pressure().overLimit` once all lanes together are this many records behind. */
  maxLagRecords: number;
  /** While idle, a read waits on the event lane this long before looking at snapshots again, ms; default 100. */
  idleSliceMs?: number;
  /** Runs before the lanes open (the WAL moves a single-lane log into the events lane here). */
  beforeOpen?: () => Promise<void>;
  logger?: Logger;
}

export class LaneLog implements Log {
  private readonly inner: Log[];
  private readonly reads = new OneAtATime();

  constructor(private readonly opts: LaneLogOptions) {
    this.inner = LANES.map((lane) => opts.lanes[lane]);
  }

  async open(): Promise<void> {
    await this.opts.beforeOpen?.();
    const opened: Log[] = [];
    try {
      for (const log of this.inner) {
        await log.open();
        opened.push(log);
      }
    } catch (err) {
      for (const log of opened) await log.close().catch(() => undefined);
      throw err;
    }
  }

  async append(batch: Envelope[]): Promise<void> {
    if (batch.length === 0) return this.inner[0]!.append(batch);
    // The usual batch is one lane (one device message, or one connection's burst): no copy then.
    const first = laneIndexOf(laneOfKind(batch[0]!.kind));
    let mixed = false;
    for (let i = 1; i < batch.length; i++) if (laneIndexOf(laneOfKind(batch[i]!.kind)) !== first) { mixed = true; break; }
    if (!mixed) return this.inner[first]!.append(batch);
    const parts: Envelope[][] = this.inner.map(() => []);
    for (const e of batch) parts[laneIndexOf(laneOfKind(e.kind))]!.push(e);
    await settleAll(parts.map((part, i) => (part.length ? this.inner[i]!.append(part) : Promise.resolve())));
  }

  read(group: string, max: number, waitMs: number): Promise<LogBatch> {
    return this.reads.run(group, () => this.readNow(group, Math.max(1, max), waitMs));
  }

  async commit(group: string, batch: LogBatch): Promise<void> {
    if (batch.records.length === 0) return;
    const parts: LogRecord[][] = this.inner.map(() => []);
    for (const r of batch.records) {
      const { index, inner } = untagOffset(r.offset);
      const part = parts[index];
      if (!part) throw new FluxgateError('BAD_REQUEST', `cannot commit offset ${r.offset}: it names lane ${index}, and this log has ${this.inner.length} lanes`);
      part.push({ offset: inner, envelope: r.envelope });
    }
    await settleAll(parts.map((part, i) => (part.length ? this.inner[i]!.commit(group, { records: part }) : Promise.resolve())));
  }

  /** Hands the group back in every lane (another node takes it over); see Log.release. */
  async release(group: string): Promise<void> {
    await settleAll(this.inner.map((log) => log.release?.(group) ?? Promise.resolve()));
  }

  async enforceRetention(now?: number): Promise<void> {
    await settleAll(this.inner.map((log) => log.enforceRetention(now)));
  }

  pressure(): LogPressure {
    let lagRecords = 0;
    let pendingBytes = 0;
    let overLimit = false;
    let unavailable = false;
    const lanes: Record<string, { lagRecords: number }> = {};
    LANES.forEach((lane, i) => {
      const p = this.inner[i]!.pressure();
      lagRecords += p.lagRecords;
      pendingBytes += p.pendingBytes;
      overLimit ||= p.overLimit;
      unavailable ||= p.unavailable === true;
      lanes[lane] = { lagRecords: p.lagRecords };
    });
    return { lagRecords, pendingBytes, overLimit: overLimit || lagRecords >= this.opts.maxLagRecords, unavailable, lanes };
  }

  /** Bytes each lane holds queued and not yet durable (fluxgate_log_pending_bytes). */
  pendingBytesByLane(): Record<string, number> {
    const out: Record<string, number> = {};
    LANES.forEach((lane, i) => { out[lane] = this.inner[i]!.pressure().pendingBytes; });
    return out;
  }

  async close(): Promise<void> {
    await settleAll(this.inner.map((log) => log.close()));
    await this.reads.idle();
  }

  private async readNow(group: string, max: number, waitMs: number): Promise<LogBatch> {
    const deadline = Date.now() + Math.max(0, waitMs);
    const slice = this.opts.idleSliceMs ?? 100;
    for (;;) {
      const records = await this.takeInOrder(group, max);
      const left = deadline - Date.now();
      if (records.length > 0 || left <= 0) return { records };
      // Idle: an event arriving now wakes this wait; snapshots are looked at between slices.
      const events = await this.inner[0]!.read(group, max, Math.min(left, slice));
      if (events.records.length > 0) return { records: this.tag(0, events.records) };
    }
  }

  /**
   * Whatever is ready now, lanes in priority order, up to `max` records. Records a lane already
   * handed out are never dropped: when a later lane's read fails they are returned alone (the
   * failure shows again at the next read), since that lane's cursor has moved past them.
   */
  private async takeInOrder(group: string, max: number): Promise<LogRecord[]> {
    let out: LogRecord[] = [];
    for (let i = 0; i < this.inner.length && out.length < max; i++) {
      let got: LogRecord[];
      try {
        got = (await this.inner[i]!.read(group, max - out.length, 0)).records;
      } catch (err) {
        if (out.length === 0) throw err;
        this.opts.logger?.warn({ err, group, lane: LANES[i] }, 'log lane read failed; handing out the other lanes\' records first');
        return out;
      }
      if (got.length) out = out.length ? out.concat(this.tag(i, got)) : this.tag(i, got);
    }
    return out;
  }

  /** Rewrites the inner records' offsets in place (they are this read's own objects). */
  private tag(index: number, records: LogRecord[]): LogRecord[] {
    for (const r of records) r.offset = tagOffset(index, r.offset);
    return records;
  }
}

/** Waits for every promise; then rethrows the first failure, if any. */
async function settleAll(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
