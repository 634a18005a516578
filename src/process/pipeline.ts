/**
 * @module The processing consumer: one ordered pass per log batch (decode → points, raw
 * archive, dead letters → one idempotent store write → commit). Order per device is kept
 * because a batch is processed in log order and written as one unit. A store failure is
 * retried with exponential back-off and jitter and never skips a batch: the log holds the
 * messages until the store took them, and a restart resumes from the committed offset.
 * A batch the store refuses for its content (a non-retryable error such as BAD_REQUEST) is
 * split in halves until the refused messages are found; each becomes a dead letter with the
 * store's reason, and the rest is stored: one bad message never stops the pipeline.
 */
import type { Log, LogBatch, LogRecord } from '../log/log.js';
import type { Store, WriteBatch } from '../stores/store.js';
import type { Metrics } from '../observability/metrics.js';
import type { Logger } from '../core/logger.js';
import { decodeEnvelope, deadLetterOf } from './decode.js';
import { DedupWindow, messageKey } from './dedup.js';
import { Counter } from 'prom-client';
import { isFluxgateError, type FluxgateError } from '../core/errors.js';

export const PROCESS_GROUP = 'process';
/** Dead-letter reasons of messages the store refused start with this. */
export const STORE_REFUSED = 'store refused the message';

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
  /** Message-id de-duplication window, ms (0: off; stores stay idempotent on replays either way). */
  dedupWindowMs?: number;
}

/** Decodes records into one write; with `dedup`, messages already stored within its window (or twice in this batch) are left out. */
export function buildWriteBatch(records: LogRecord[], dedup?: DedupWindow, onDuplicate?: (tenant: string) => void): WriteBatch {
  const out: WriteBatch = { points: [], messages: [], deadLetters: [] };
  const inBatch = dedup ? new Set<string>() : undefined;
  for (const { envelope } of records) {
    const d = decodeEnvelope(envelope);
    if (dedup && inBatch) {
      const k = messageKey(d.message);
      if (inBatch.has(k) || dedup.isDuplicate(d.message)) { onDuplicate?.(d.message.tenant); continue; }
      inBatch.add(k);
    }
    for (const p of d.points) out.points.push(p);
    out.messages.push(d.message);
    if (d.deadLetter) out.deadLetters.push(d.deadLetter);
  }
  return out;
}

/** A store error that a retry cannot fix: the content was refused (not the store unavailable). */
function refusedForContent(err: unknown): err is FluxgateError {
  return isFluxgateError(err) && !err.spec.retryable && err.status < 500;
}

type Outcome = 'stored' | 'refused' | 'stopped';

export class Pipeline {
  private running = false;
  private loop?: Promise<void>;
  private lastError?: string;
  private processed = 0;
  /** The store's message for the last content refusal (the dead letter's reason). */
  private lastRefusal = '';
  private readonly dedup?: DedupWindow;
  private readonly duplicates: Counter<'tenant'>;

  constructor(private readonly opts: PipelineOptions) {
    if (opts.dedupWindowMs) this.dedup = new DedupWindow(opts.dedupWindowMs);
    const name = 'fluxgate_duplicates_dropped_total';
    this.duplicates = (opts.metrics.registry.getSingleMetric(name) as Counter<'tenant'> | undefined)
      ?? new Counter({ name, help: 'Messages dropped by processing because their message id was already stored within process.dedupWindowMs.', labelNames: ['tenant'] as const, registers: [opts.metrics.registry] });
  }

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
    const { log, metrics, logger } = this.opts;
    const written: WriteBatch[] = [];
    if ((await this.store(batch.records, written)) === 'stopped') return;
    for (const write of written) {
      // Dead-lettered messages are not remembered: replaying them must not look like a duplicate.
      if (this.dedup) {
        const letters = new Set(write.deadLetters.map(messageKey));
        this.dedup.remember(letters.size ? write.messages.filter((m) => !letters.has(messageKey(m))) : write.messages);
      }
      this.opts.onStored?.(write);
      const perTenant = new Map<string, number>();
      for (const p of write.points) perTenant.set(p.tenant, (perTenant.get(p.tenant) ?? 0) + 1);
      for (const [tenant, n] of perTenant) metrics.pointsStored.inc({ tenant }, n);
      for (const d of write.deadLetters) metrics.deadLetters.inc({ tenant: d.tenant, reason: d.reason.startsWith(STORE_REFUSED) ? 'store_refused' : 'undecodable' });
    }
    try {
      await log.commit(PROCESS_GROUP, batch);
    } catch (err) {
      // The records come again (at least once) and the store takes them idempotently.
      logger.warn({ err }, 'log commit failed; the batch will be read again');
      return;
    }
    this.processed += batch.records.length;
  }

  /** Stores `records` (halving on a content refusal), pushing what was written to `written`. */
  private async store(records: LogRecord[], written: WriteBatch[]): Promise<Outcome> {
    const write = buildWriteBatch(records, this.dedup, (tenant) => this.duplicates.inc({ tenant }));
    const outcome = await this.writeWithRetry(write);
    if (outcome === 'stored') written.push(write);
    if (outcome !== 'refused') return outcome;
    if (records.length > 1) {
      const half = Math.ceil(records.length / 2);
      for (const part of [records.slice(0, half), records.slice(half)]) {
        if ((await this.store(part, written)) === 'stopped') return 'stopped';
      }
      return 'stored';
    }
    const env = records[0].envelope;
    const message = buildWriteBatch(records).messages;
    const letter = { ...deadLetterOf(env, `${STORE_REFUSED}: ${this.lastRefusal}`), messageId: message[0]?.messageId ?? env.messageId };
    const asDeadLetter: WriteBatch = { points: [], messages: [], deadLetters: [letter] };
    // Keep the raw message too when the store takes it on its own.
    if ((await this.writeWithRetry({ points: [], messages: message, deadLetters: [letter] })) === 'stored') {
      written.push({ points: [], messages: message, deadLetters: [letter] });
      return 'stored';
    }
    const last = await this.writeWithRetry(asDeadLetter);
    if (last === 'stored') written.push(asDeadLetter);
    else if (last === 'refused') this.opts.logger.error({ tenant: env.tenant, device: env.device, messageId: env.messageId, reason: this.lastRefusal }, 'the store refused even the dead letter of this message; it is only in the log');
    return last === 'stopped' ? 'stopped' : 'stored';
  }

  private async writeWithRetry(write: WriteBatch): Promise<Outcome> {
    const { store, metrics, logger } = this.opts;
    for (let attempt = 1; ; attempt++) {
      const end = metrics.storeWriteSeconds.startTimer();
      try {
        await store.writeBatch(write);
        end();
        this.lastError = undefined;
        return 'stored';
      } catch (err) {
        if (refusedForContent(err)) {
          this.lastRefusal = err.message;
          return 'refused';
        }
        this.lastError = (err as Error).message;
        logger.warn({ err, attempt }, 'store write failed; retrying the batch');
        await this.backoff(attempt);
        // Stopping gives up this batch uncommitted: the log keeps it for the next start.
        if (!this.running) return 'stopped';
      }
    }
  }

  private backoff(attempt: number): Promise<void> {
    const base = Math.min(5000, 50 * 2 ** Math.min(attempt, 7));
    return new Promise((r) => setTimeout(r, base / 2 + Math.random() * base / 2));
  }
}
