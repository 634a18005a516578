/**
 * @module Publishing routed messages to the cluster's MQTT stream and learning each one's stream
 * sequence from its PubAck, on the hot path: one wildcard reply subscription (`<inbox>.<n>`) and
 * one sweep timer for timeouts, instead of nats.js's request per message (a timer, a mux entry
 * and an Error object built for every request, even a successful one — 2-3 % of a node's CPU
 * in bench/cluster-mqtt.ts). Messages go out in call order on one connection; acknowledgements
 * come back in the same order.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

export type PublishCallback = (err: Error | undefined, seq: number) => void;

interface Waiter { cb: PublishCallback; deadline: number }

export class StreamPublisher {
  private readonly inbox = createInbox();
  private readonly waiting = new Map<number, Waiter>();
  private next = 0;
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly nc: NatsConnection, private readonly stream: string, private readonly timeoutMs: number) {
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (err, m) => { if (!err) this.onAck(m); } });
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, timeoutMs / 10)));
    this.sweeper.unref();
  }

  get pending(): number {
    return this.waiting.size;
  }

  /** Calls `cb` once: with the stream sequence, or with the error (refused, no stream, no answer in time). */
  publish(subject: string, data: Uint8Array, cb: PublishCallback): void {
    const id = this.next++;
    this.waiting.set(id, { cb, deadline: Date.now() + this.timeoutMs });
    try {
      this.nc.publish(subject, data, { reply: `${this.inbox}.${id}` });
    } catch (err) {
      this.waiting.delete(id);
      cb(err as Error, 0);
    }
  }

  private onAck(m: Msg): void {
    const id = Number(m.subject.slice(this.inbox.length + 1));
    const w = this.waiting.get(id);
    if (!w) return; // timed out already
    this.waiting.delete(id);
    if (m.headers?.code === 503) return w.cb(new Error(`no JetStream stream ${this.stream} answers (503 no responders)`), 0);
    let ack: { stream?: string; seq?: number; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(m.string()) as typeof ack;
    } catch {
      return w.cb(new Error(`unreadable PubAck: ${m.string().slice(0, 200)}`), 0);
    }
    if (ack.error) return w.cb(new Error(`JetStream refused the message: ${ack.error.description ?? 'error'} (${ack.error.err_code ?? ack.error.code})`), 0);
    if (ack.stream !== this.stream || typeof ack.seq !== 'number') return w.cb(new Error(`unexpected PubAck ${m.string().slice(0, 200)}`), 0);
    w.cb(undefined, ack.seq);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, w] of this.waiting) {
      // Ids are in publish order and deadlines with them: the first one still in time ends the sweep.
      if (w.deadline > now) break;
      this.waiting.delete(id);
      w.cb(new Error(`not acknowledged by JetStream within ${this.timeoutMs} ms`), 0);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    const left = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of left) w.cb(new Error('the cluster connection closed'), 0);
  }
}
