/**
 * @module Group appends: device messages from every connection that arrive in the same
 * event-loop turn go to the log as one `append` call, so many publishers share one fdatasync.
 * Each message's waiter is told once its batch is durable (or failed); only then does the
 * connection send PUBACK/PUBREC. Several batches may be in flight at once.
 *
 * Bounded by its callers, not here: a connection stops reading its socket once
 * mqtt.receiveMaximum of its messages wait for the log, so at most connections ×
 * receiveMaximum messages are queued or in flight (`fluxgate_mqtt_ingest_queue_messages`).
 */
import { Gauge, type Registry } from 'prom-client';
import type { Envelope } from '../../core/envelope.js';
import type { Log } from '../../log/log.js';

/** Told once its message is durable (or failed). */
export interface DurableWaiter {
  durable(err?: Error): void;
}

export class IngestBatcher {
  private envelopes: Envelope[] = [];
  private waiters: DurableWaiter[] = [];
  private scheduled = false;
  private inflight = 0;
  /** Messages of the appends in flight. */
  private inflightMessages = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly log: Log, private readonly maxBatch = 4096, private readonly beforeAppend?: () => void, registry?: Registry) {
    if (!registry) return;
    const name = 'fluxgate_mqtt_ingest_queue_messages';
    // A broker restarted on the same registry (tests) takes the series over.
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    const self = this;
    new Gauge({ name, help: 'MQTT device messages waiting for the log: gathered for the next append, or in an append not yet durable (at most connections × mqtt.receiveMaximum).', registers: [registry], collect() { this.set(self.queuedMessages); } });
  }

  /** Messages gathered for the next append or in an append not yet durable. */
  get queuedMessages(): number {
    return this.envelopes.length + this.inflightMessages;
  }

  get pending(): number {
    return this.envelopes.length + this.inflight;
  }

  submit(envelope: Envelope, waiter: DurableWaiter): void {
    this.envelopes.push(envelope);
    this.waiters.push(waiter);
    if (this.envelopes.length >= this.maxBatch) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      // setImmediate runs after the poll phase: every socket read of this turn is in the batch.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.envelopes.length === 0) return;
    const batch = this.envelopes;
    const waiters = this.waiters;
    this.envelopes = [];
    this.waiters = [];
    this.inflight++;
    this.inflightMessages += batch.length;
    this.beforeAppend?.();
    let appended: Promise<void>;
    try {
      appended = this.log.append(batch);
    } catch (err) {
      appended = Promise.reject(err);
    }
    appended.then(
      () => {
        for (const w of waiters) w.durable();
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        for (const w of waiters) w.durable(e);
      },
    ).finally(() => {
      this.inflight--;
      this.inflightMessages -= batch.length;
      if (this.inflight === 0 && this.envelopes.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  /** Appends what is queued and resolves once no append is in flight. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inflight > 0 || this.envelopes.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      this.flush();
    }
  }
}
