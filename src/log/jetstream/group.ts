/**
 * @module One consumer group on JetStream: a durable pull consumer with explicit acks.
 *
 * Reads are raw pull requests (`$JS.API.CONSUMER.MSG.NEXT`) with `no_wait` and `expires`:
 * the server answers at once with whatever is ready (up to `max`), or waits up to `waitMs`
 * for the first record and then answers. (nats.js's fetch() cannot wait less than 1 s and
 * always waits for a full batch.) Each delivered record's ack subject is kept until commit.
 *
 * Deliveries that never reached this reader: the server counts a record as delivered when
 * it sends it, so records a previous process read and never committed, or records in flight
 * when a connection or a server died, would only come back one by one after ack_wait, out
 * of order. So the reader checks the consumer when it takes the group over (first read in a
 * process) and after anything that may have lost deliveries (reconnect, a pull that ended
 * without the server's answer, a 409/503 status): when the server counts more records
 * delivered-and-unacknowledged than this reader holds, and this reader holds none, the
 * consumer is recreated to start right after its ack floor, and those records come again now
 * and in order. The consumer is therefore owned by one reader at a time (see index.ts).
 *
 * Commit resolves only once the server confirmed the batch's acks (the last is a request, see
 * commit()). Plain acks alone are fire-and-forget: ones lost in a disconnect would make the
 * group process those records again after a restart, so commit() would promise nothing. A
 * commit costs one round trip whatever its size. "Confirmed" is the server's word that it
 * applied the acks; nats-server writes consumer state to disk a moment later, so a server
 * killed right after a commit may deliver the last committed records again (at least once,
 * test/log/jetstream.test.ts) — never fewer.
 */
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';
import { createInbox, nanos, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { LogRecord } from '../log.js';
import { decodeEnvelope, encodeToken } from './codec.js';
import { isNotFound } from './stream.js';

export interface GroupSettings {
  ackWaitMs: number;
  maxAckPending: number;
  requestTimeoutMs: number;
}

/** The durable consumer name of a group: `fg_` + the group name encoded as a subject token. */
export function consumerNameOf(group: string): string {
  return `fg_${encodeToken(group)}`;
}

const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');
const TERM = new TextEncoder().encode('+TERM');

/** Stream sequence of a delivered message, from its ack subject (v1 and v2 formats). */
export function streamSeqOf(reply: string): bigint {
  const t = reply.split('.');
  if (t.length === 9) t.splice(2, 0, '_', '');
  if (t.length < 11 || t[0] !== '$JS' || t[1] !== 'ACK') throw new Error(`not a JetStream delivery: ${reply}`);
  return BigInt(t[7]!);
}

export class GroupReader {
  readonly consumer: string;
  /** Deliveries may have been lost since the last check (and at the start). */
  private suspect = true;
  /** Records handed out and not yet committed: stream sequence → ack subject. */
  private readonly unacked = new Map<bigint, string>();
  private readonly cancels = new Set<() => void>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    readonly group: string,
    private readonly settings: GroupSettings,
    private readonly logger?: Logger,
  ) {
    this.consumer = consumerNameOf(group);
  }

  async read(max: number, waitMs: number): Promise<LogRecord[]> {
    if (this.suspect) await this.check();
    const msgs = await this.pull(Math.max(1, max), Math.max(0, waitMs));
    const records: LogRecord[] = [];
    for (const m of msgs) {
      const offset = streamSeqOf(m.reply!);
      let envelope;
      try {
        envelope = decodeEnvelope(m.data);
      } catch (err) {
        // Not written by Fluxgate (someone published on our subjects by hand): terminated, so
        // it is never delivered again and does not hold the group back, and reported.
        this.nc.publish(m.reply!, TERM);
        this.logger?.error({ group: this.group, seq: Number(offset), subject: m.subject, err }, 'log record is not a Fluxgate envelope; skipped');
        continue;
      }
      this.unacked.set(offset, m.reply!);
      records.push({ offset, envelope });
    }
    return records;
  }

  /**
   * Acknowledges every record of the batch this reader handed out (others are done already):
   * plain acks for all but the last, then a confirmed ack (request) for the last. One
   * connection keeps its messages in order and the server handles a consumer's acks in the
   * order they arrive, so the last one's confirmation covers the batch.
   */
  async commit(records: readonly LogRecord[]): Promise<void> {
    const held: bigint[] = [];
    for (const r of records) if (this.unacked.has(r.offset)) held.push(r.offset);
    if (held.length === 0) return;
    held.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const last = held.pop()!;
    for (const seq of held) this.nc.publish(this.unacked.get(seq)!, ACK);
    try {
      await this.nc.request(this.unacked.get(last)!, ACK, { timeout: this.settings.requestTimeoutMs });
    } catch (err) {
      this.suspect = true; // the next read checks what the server recorded
      throw err;
    }
    for (const seq of held) this.unacked.delete(seq);
    this.unacked.delete(last);
  }

  /** Ends waiting pulls now (close): they resolve with what they received. */
  cancelWaits(): void {
    for (const c of [...this.cancels]) c();
  }

  private config(): Partial<ConsumerConfig> {
    return {
      durable_name: this.consumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.settings.ackWaitMs),
      max_ack_pending: this.settings.maxAckPending,
      // Redelivery goes on until committed: a record is never dropped for being retried.
      max_deliver: -1,
    };
  }

  /**
   * This process stops reading the group (processing moved to another node): every record it
   * holds uncommitted is nak'd, so the server hands it out again at once instead of after
   * ack_wait, and the next read here (if processing comes back) checks the consumer first —
   * another reader may have left records delivered and uncommitted meanwhile (a lease bounce
   * A→B→A). Naks are fire-and-forget: one lost in a disconnect only means that record waits
   * for ack_wait or for the next reader's check.
   */
  release(): void {
    for (const reply of this.unacked.values()) this.nc.publish(reply, NAK);
    this.unacked.clear();
    this.suspect = true;
  }

  /** Marks the group for a check at the next read (after a reconnect). */
  markSuspect(): void {
    this.suspect = true;
  }

  private async check(): Promise<void> {
    const info = await this.jsm.consumers.info(this.stream, this.consumer).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (!info) {
      // A new group starts at the oldest record the stream holds.
      await this.jsm.consumers.add(this.stream, { ...this.config(), deliver_policy: DeliverPolicy.All });
      this.suspect = false;
      return;
    }
    if (info.config.ack_wait !== nanos(this.settings.ackWaitMs) || info.config.max_ack_pending !== this.settings.maxAckPending) {
      // Settings changed since the consumer was made (both may change on a live consumer).
      await this.jsm.consumers.update(this.stream, this.consumer, { ack_wait: nanos(this.settings.ackWaitMs), max_ack_pending: this.settings.maxAckPending });
    }
    // Nothing pending on the server: acks whose confirmation was lost did arrive.
    if (info.num_ack_pending === 0) this.unacked.clear();
    if (info.num_ack_pending <= this.unacked.size) { this.suspect = false; return; }
    // Records this reader still holds would be delivered again under new ack subjects; wait
    // until they are committed (the next read after the commit checks again).
    if (this.unacked.size > 0) return;
    const start = info.ack_floor.stream_seq + 1;
    this.logger?.info({ group: this.group, consumer: this.consumer, ackFloor: info.ack_floor.stream_seq, unacked: info.num_ack_pending }, 'log group rewound to its ack floor: records delivered and never committed are read again');
    await this.jsm.consumers.delete(this.stream, this.consumer);
    await this.jsm.consumers.add(this.stream, { ...this.config(), deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start });
    this.suspect = false;
  }

  /**
   * One pull request: up to `batch` messages, returned as soon as any are ready, else after
   * `waitMs`. The server ends the request with a status message (404/408) when it has no more;
   * a local timer a little past `waitMs` covers a lost connection.
   */
  private pull(batch: number, waitMs: number): Promise<Msg[]> {
    return new Promise<Msg[]>((resolve, reject) => {
      const got: Msg[] = [];
      let done = false;
      const inbox = createInbox();
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.cancels.delete(cancel);
        sub.unsubscribe();
        if (err && got.length === 0) reject(err); else resolve(got);
      };
      const cancel = (): void => finish();
      const sub = this.nc.subscribe(inbox, {
        callback: (err, m) => {
          if (err) { this.suspect = true; return finish(err); }
          if (!m.reply) {
            const code = m.headers?.code ?? 0;
            if (code === 100) return; // idle heartbeat
            if (code !== 404 && code !== 408) {
              this.suspect = true;
              this.logger?.warn({ group: this.group, code, description: m.headers?.description }, 'log pull request ended by the server');
            }
            return finish();
          }
          got.push(m);
          if (got.length >= batch) finish();
        },
      });
      const timer = setTimeout(() => { this.suspect = true; finish(); }, waitMs + this.settings.requestTimeoutMs);
      this.cancels.add(cancel);
      const req: Record<string, unknown> = { batch, no_wait: true };
      if (waitMs > 0) req.expires = nanos(waitMs);
      try {
        this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`, JSON.stringify(req), { reply: inbox });
      } catch (err) {
        finish(err as Error);
      }
    });
  }
}
