/**
 * @module Retention of the JetStream log, consumer-aware like the WAL's: records are purged
 * from the front of the stream only when every Fluxgate group has committed them (below the
 * lowest ack floor) AND they are older than retentionHours or the stream is larger than
 * retentionBytes. JetStream's own max_age/max_bytes (limits policy) would remove records no
 * group has processed, and the interest/work-queue policies cannot serve a group created
 * later from the oldest record, so neither is used: the stream has no limits of its own and
 * this purge is the retention. With no group at all nothing is purged. 0 disables a limit.
 */
import type { JetStreamManager } from '@nats-io/jetstream';

export interface RetentionSettings {
  stream: string;
  consumerPrefix: string;
  retentionHours: number;
  retentionBytes: number;
}

const HOUR_MS = 3600 * 1000;

/** Purges what retention allows; returns the number of records removed. */
export async function purgeCommitted(jsm: JetStreamManager, s: RetentionSettings, now: number): Promise<number> {
  if (s.retentionHours <= 0 && s.retentionBytes <= 0) return 0;
  let floor: number | undefined;
  for await (const c of jsm.consumers.list(s.stream)) {
    if (!c.name.startsWith(s.consumerPrefix)) continue;
    if (floor === undefined || c.ack_floor.stream_seq < floor) floor = c.ack_floor.stream_seq;
  }
  if (floor === undefined) return 0;
  const { state } = await jsm.streams.info(s.stream);
  const first = state.first_seq;
  // Every sequence below `limit` is committed by every group.
  const limit = Math.min(floor + 1, state.last_seq + 1);
  if (state.messages === 0 || limit <= first) return 0;
  let cut = first;
  if (s.retentionBytes > 0 && state.bytes > s.retentionBytes) {
    const perRecord = state.bytes / state.messages;
    cut = Math.max(cut, first + Math.ceil((state.bytes - s.retentionBytes) / perRecord));
  }
  if (s.retentionHours > 0) cut = Math.max(cut, await firstYoungerThan(jsm, s.stream, first, limit, now - s.retentionHours * HOUR_MS));
  cut = Math.min(cut, limit);
  if (cut <= first) return 0;
  const r = await jsm.streams.purge(s.stream, { seq: cut });
  return r.purged;
}

/**
 * The first sequence in [lo, hi) stored at or after `cutoffMs` (hi when none is): a binary
 * search over message times, which grow with the sequence. A missing message counts as young,
 * so a hole never makes more go.
 */
async function firstYoungerThan(jsm: JetStreamManager, stream: string, lo: number, hi: number, cutoffMs: number): Promise<number> {
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    const m = await jsm.streams.getMessage(stream, { seq: mid }).catch(() => null);
    if (m && m.time.getTime() < cutoffMs) lo = mid + 1; else hi = mid;
  }
  return lo;
}
