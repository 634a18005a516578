/**
 * @module Reading a tenant's part of the cluster's MQTT stream between two positions, for
 * sessions that resume on this node (handed over, or rebuilt after their node died). Sessions
 * that resume from the same position — all persistent sessions of a dead node come back with its
 * one watermark — share one read: the QoS 1/2 messages of the range are kept for a minute after
 * their last use and extended as later sessions need more, so a reconnect storm of N sessions of
 * one tenant reads the stream once, not N times. Bounded: past `maxBytes` of payload the shared
 * copy is dropped and each session reads on its own (`shared` false).
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { RoutedMessage } from '../message.js';
import { decodeMessage } from './wire.js';

export interface Replayed { seq: number; msg: RoutedMessage }

interface Range { tenant: string; from: number; upto: number; msgs: Replayed[]; bytes: number; lastUsed: number; overflow: boolean; chain: Promise<void> }

export class ReplayReader {
  private readonly ranges = new Map<string, Range>();
  private readonly sweeper: NodeJS.Timeout;
  /** Ranges read from the stream, and ranges served from a shared copy (for tests and /readyz). */
  readonly stats = { reads: 0, shared: 0 };

  constructor(private readonly js: JetStreamClient, private readonly jsm: JetStreamManager, private readonly stream: string, private readonly subjectOf: (tenant: string) => string, private readonly maxBytes = 64 * 1024 * 1024, private readonly keepMs = 60_000) {
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const [k, r] of this.ranges) if (now - r.lastUsed > this.keepMs) this.ranges.delete(k);
    }, Math.min(10_000, keepMs));
    this.sweeper.unref();
  }

  /** The QoS 1/2 messages of `tenant` with from <= seq <= upper, in order. */
  async read(tenant: string, from: number, upper: number): Promise<Replayed[]> {
    if (from > upper) return [];
    const key = `${tenant}\u0000${from}`;
    let r = this.ranges.get(key);
    if (!r) this.ranges.set(key, (r = { tenant, from, upto: from - 1, msgs: [], bytes: 0, lastUsed: Date.now(), overflow: false, chain: Promise.resolve() }));
    const range = r;
    const reused = range.upto >= from;
    // One extension at a time per range; a later caller waits for the earlier one and reads only the rest.
    range.chain = range.chain.then(() => this.extend(range, upper));
    await range.chain;
    range.lastUsed = Date.now();
    if (range.overflow) {
      this.ranges.delete(key);
      const own: Range = { tenant, from, upto: from - 1, msgs: [], bytes: 0, lastUsed: 0, overflow: false, chain: Promise.resolve() };
      await this.fetch(own, upper, Infinity);
      return own.msgs;
    }
    if (reused) this.stats.shared++;
    let end = range.msgs.length;
    while (end > 0 && range.msgs[end - 1]!.seq > upper) end--;
    return range.msgs.slice(0, end);
  }

  private async extend(r: Range, upper: number): Promise<void> {
    if (r.overflow || r.upto >= upper) return;
    await this.fetch(r, upper, this.maxBytes);
  }

  /** Reads (r.upto, upper] into r; past `limit` bytes r is marked overflow and emptied. */
  private async fetch(r: Range, upper: number, limit: number): Promise<void> {
    // Where the tenant's messages end now: the read stops there instead of waiting for more.
    const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subjectOf(r.tenant) }).then((m) => m?.seq ?? 0, () => Infinity);
    const stop = Math.min(upper, last);
    if (stop <= r.upto) { r.upto = Math.max(r.upto, upper); return; }
    this.stats.reads++;
    const consumer = await this.js.consumers.get(this.stream, { filter_subjects: this.subjectOf(r.tenant), deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: r.upto + 1 });
    try {
      let done = false;
      while (!done) {
        const batch = await consumer.fetch({ max_messages: 500, expires: 1000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          if (m.seq > stop) { done = true; continue; }
          r.upto = m.seq;
          if (m.seq >= stop) done = true;
          let d;
          try { d = decodeMessage(m.data); } catch { continue; }
          if (d.msg.qos === 0) continue; // never kept for offline sessions
          r.msgs.push({ seq: m.seq, msg: d.msg });
          r.bytes += d.msg.payload.length + d.msg.topic.length + 64;
          if (r.bytes > limit) { r.overflow = true; r.msgs = []; return; }
        }
        if (n === 0) done = true;
      }
      // Nothing more in the stream up to `upper` (an empty tail): the range is complete.
      if (r.upto < upper) r.upto = upper;
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.ranges.clear();
  }
}
