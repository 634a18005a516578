/**
 * @module A Log made of one inner Log per lane (lane.ts): events, telemetry and attributes in
 * the `events` lane, snapshots in the `snapshots` lane. Wraps any backend (the WAL, JetStream)
 * so lanes are not a flag inside each one.
 *
 * - `append` splits a batch by lane and resolves only when every part is durable; if one part
 *   fails the call rejects (after both settled) and nothing of it counts as acknowledged — a
 *   part already durable is then logged twice when the source retries, which stores absorb
 *   (idempotent on message id).
 * - `read` prefers events without starving snapshots: `snapshotShare` of each read's `max`
 *   (ceil(max × share), at least 1 and at most max − 1 when share > 0 and max > 1) is kept for
 *   the snapshot lane. A read takes events up to `max − reserve`, then snapshots up to what is
 *   left, then — when the snapshot lane had fewer than its reserve — events again for the rest;
 *   so a lane with nothing waiting leaves its room to the other, and under sustained event load
 *   snapshots still advance at the share rate (latest state and "last seen" move). Events always
 *   keep at least one place, so a share of 1 does not reverse the priority. With share 0 (or
 *   max 1) it is strict priority: snapshots only fill what the event lane left. Snapshots beyond
 *   their share still wait; that backlog stays bounded because admission sheds new snapshots
 *   once the lag passes log.shedSnapshotsAtRecords. While both lanes are empty the read waits
 *   on the event lane in slices of `idleSliceMs` and looks at the snapshot lane between them:
 *   an event wakes a waiting reader at once, a snapshot within one slice.
 * - A batch holds its events first (both event reads, in lane order), then its snapshots, so
 *   offsets stay ascending within a read (lane.ts) and each lane's part of a commit is in order.
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
  /**
   * Fraction (0–1) of each read's `max` kept for the snapshot lane while it has records, so
   * sustained events cannot starve snapshots; default 0 (strict priority). See the module comment.
   */
  snapshotShare?: number;
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
   * Whatever is ready now, up to `max` records: events, then the snapshots' share, then events
   * again for the room the snapshot lane left (module comment). Records a lane already handed
   * out are never dropped: when a later read fails the records taken so far are returned (the
   * failure shows again at the next read), since those lanes' cursors have moved past them.
   */
  private async takeInOrder(group: string, max: number): Promise<LogRecord[]> {
    const [eventLane, snapshotLane] = this.inner as [Log, Log];
    const reserve = snapshotReserve(max, this.opts.snapshotShare ?? 0);
    const events = (await eventLane.read(group, max - reserve, 0)).records;
    let snapshots: LogRecord[] = [];
    let more: LogRecord[] = [];
    let failed: { err: unknown; lane: Lane } | undefined;
    try {
      // An inner read of 0 may still hand out one record (JetStream pulls at least 1): never ask for 0.
      if (events.length < max) snapshots = (await snapshotLane.read(group, max - events.length, 0)).records;
    } catch (err) {
      failed = { err, lane: 'snapshots' };
    }
    const room = max - events.length - snapshots.length;
    // Only when the event lane filled its part: fewer means it had no more a moment ago.
    if (room > 0 && reserve > 0 && events.length === max - reserve) {
      try {
        more = (await eventLane.read(group, room, 0)).records;
      } catch (err) {
        failed ??= { err, lane: 'events' };
      }
    }
    if (failed) {
      if (events.length === 0 && snapshots.length === 0) throw failed.err;
      this.opts.logger?.warn({ err: failed.err, group, lane: failed.lane }, 'log lane read failed; handing out the records already taken first');
    }
    this.tag(0, events);
    this.tag(0, more);
    this.tag(1, snapshots);
    return more.length || snapshots.length ? events.concat(more, snapshots) : events;
  }

  /** Rewrites the inner records' offsets in place (they are this read's own objects). */
  private tag(index: number, records: LogRecord[]): LogRecord[] {
    for (const r of records) r.offset = tagOffset(index, r.offset);
    return records;
  }
}

/**
 * Places of a read of `max` kept for snapshots: ceil(max × share), at least 1 and at most
 * max − 1 when share > 0 and max > 1 (events always keep one place); 0 otherwise.
 */
export function snapshotReserve(max: number, share: number): number {
  if (!(share > 0) || max <= 1) return 0;
  // The epsilon keeps float error from adding a place (0.1 × 30 is 3.0000000000000004).
  return Math.min(max - 1, Math.max(1, Math.ceil(max * Math.min(1, share) - 1e-9)));
}

/** Waits for every promise; then rethrows the first failure, if any. */
async function settleAll(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
