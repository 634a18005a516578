/**
 * @module The processing consumer: one ordered pass per log batch (decode → points, raw
 * archive, dead letters → one idempotent store write → commit). Order per device is kept
 * because a batch is processed in log order and written as one unit. A store failure is
 * retried with exponential back-off and jitter and never skips a batch: the log holds the
 * messages until the store took them, and a restart resumes from the committed offset.
 */
import type { Log, LogBatch } from '../log/log.js';
import type { Store, WriteBatch } from '../stores/store.js';
import type { Metrics } from '../observability/metrics.js';
import type { Logger } from '../core/logger.js';
import { decodeEnvelope } from './decode.js';

export const PROCESS_GROUP = 'process';

export interface PipelineOptions {
  log: Log;
  store: Store;
  metrics: Metrics;
  logger: Logger;
  batchSize: number;
  /** How long one read waits for records before looping, ms. */
  readWaitMs?: number;
  /** Called with what was stored, after the store took it (live updates). */
  onStored?: (write: WriteBatch) => void;
}

export function buildWriteBatch(batch: LogBatch, metrics?: Metrics): WriteBatch {
  const out: WriteBatch = { points: [], messages: [], deadLetters: [] };
  for (const { envelope } of batch.records) {
    const d = decodeEnvelope(envelope);
    for (const p of d.points) out.points.push(p);
    out.messages.push(d.message);
    if (d.deadLetter) {
      out.deadLetters.push(d.deadLetter);
      metrics?.deadLetters.inc({ tenant: envelope.tenant, reason: 'undecodable' });
    }
  }
  return out;
}

export class Pipeline {
  private running = false;
  private loop?: Promise<void>;
  private lastError?: string;
  private processed = 0;

  constructor(private readonly opts: PipelineOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Finishes the batch in hand, commits it and stops. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  status(): { ok: boolean; detail?: string } {
    return this.lastError ? { ok: false, detail: `store write failing, retrying: ${this.lastError}` } : { ok: true, detail: `${this.processed} records processed` };
  }

  private async run(): Promise<void> {
    const { log, batchSize } = this.opts;
    while (this.running) {
      let batch: LogBatch;
      try {
        batch = await log.read(PROCESS_GROUP, batchSize, this.opts.readWaitMs ?? 200);
      } catch (err) {
        if (!this.running) return;
        this.opts.logger.error({ err }, 'log read failed; retrying');
        await this.backoff(1);
        continue;
      }
      if (batch.records.length === 0) continue;
      await this.process(batch);
    }
  }

  private async process(batch: LogBatch): Promise<void> {
    const { store, log, metrics, logger } = this.opts;
    const write = buildWriteBatch(batch, metrics);
    for (let attempt = 1; ; attempt++) {
      const end = metrics.storeWriteSeconds.startTimer();
      try {
        await store.writeBatch(write);
        end();
        this.lastError = undefined;
        break;
      } catch (err) {
        this.lastError = (err as Error).message;
        logger.warn({ err, attempt }, 'store write failed; retrying the batch');
        await this.backoff(attempt);
        // Stopping gives up this batch uncommitted: the log keeps it for the next start.
        if (!this.running) return;
      }
    }
    this.opts.onStored?.(write);
    const perTenant = new Map<string, number>();
    for (const p of write.points) perTenant.set(p.tenant, (perTenant.get(p.tenant) ?? 0) + 1);
    for (const [tenant, n] of perTenant) metrics.pointsStored.inc({ tenant }, n);
    try {
      await log.commit(PROCESS_GROUP, batch);
    } catch (err) {
      // The records come again (at least once) and the store takes them idempotently.
      logger.warn({ err }, 'log commit failed; the batch will be read again');
      return;
    }
    this.processed += batch.records.length;
  }

  private backoff(attempt: number): Promise<void> {
    const base = Math.min(5000, 50 * 2 ** Math.min(attempt, 7));
    return new Promise((r) => setTimeout(r, base / 2 + Math.random() * base / 2));
  }
}
