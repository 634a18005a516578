/**
 * @module Publishing a batch to JetStream and waiting for every PubAck, on the hot path. One
 * wildcard reply subscription per log (`<inbox>.<n>`) and one timer per batch instead of
 * nats.js's request per message (a timer, a mux entry and an Error built for each, a third of
 * the append CPU in bench/jetstream-append.ts). Messages go out in call order on one
 * connection, so a batch lands in the stream in its order.
 */
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

export interface Outgoing {
  subject: string;
  data: Uint8Array;
  /** `Nats-Msg-Id`, JetStream's de-duplication key. */
  msgId: string;
}

interface Waiter {
  ok(): void;
  fail(err: Error): void;
}

export class BatchPublisher {
  private readonly inbox = createInbox();
  private readonly waiting = new Map<number, Waiter>();
  private next = 0;
  private readonly sub: Subscription;

  constructor(private readonly nc: NatsConnection, private readonly stream: string) {
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (err, m) => { if (!err) this.onAck(m); } });
  }

  /** Resolves when the stream acknowledged every message; rejects on the first failure or after `timeoutMs`. */
  publishAll(items: readonly Outgoing[], timeoutMs: number): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const ids: number[] = [];
      let left = items.length;
      let settled = false;
      const waiter: Waiter = {
        ok: () => {
          if (--left === 0 && !settled) { settled = true; clearTimeout(timer); resolve(); }
        },
        fail: (err) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          for (const id of ids) this.waiting.delete(id);
          reject(err);
        },
      };
      const timer = setTimeout(() => waiter.fail(new Error(`${left} of ${items.length} messages not acknowledged by JetStream within ${timeoutMs} ms`)), timeoutMs);
      try {
        for (const item of items) {
          const id = this.next++;
          ids.push(id);
          this.waiting.set(id, waiter);
          const h = headers();
          h.set('Nats-Msg-Id', item.msgId);
          this.nc.publish(item.subject, item.data, { reply: `${this.inbox}.${id}`, headers: h });
        }
      } catch (err) {
        waiter.fail(err as Error);
      }
    });
  }

  close(): void {
    this.sub.unsubscribe();
    for (const w of new Set(this.waiting.values())) w.fail(new Error('the log connection closed'));
    this.waiting.clear();
  }

  private onAck(m: Msg): void {
    const id = Number(m.subject.slice(this.inbox.length + 1));
    const waiter = this.waiting.get(id);
    if (!waiter) return; // its batch already failed or timed out
    this.waiting.delete(id);
    if (m.headers?.code === 503) return waiter.fail(new Error('no JetStream stream answers for this subject (503 no responders)'));
    let ack: { stream?: string; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(m.string()) as typeof ack;
    } catch {
      return waiter.fail(new Error(`unreadable PubAck: ${m.string().slice(0, 200)}`));
    }
    if (ack.error) return waiter.fail(new Error(`JetStream refused the message: ${ack.error.description ?? 'error'} (${ack.error.err_code ?? ack.error.code})`));
    if (ack.stream !== this.stream) return waiter.fail(new Error(`stored in stream ${String(ack.stream)}, not ${this.stream}`));
    waiter.ok();
  }
}
