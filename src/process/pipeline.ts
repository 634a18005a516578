/**
 * @module The processing consumer: one ordered pass per log batch (decode and classify →
 * de-duplicate → same-value suppression → one idempotent store write → commit). Order per
 * device is kept because a batch is processed in log order and written as one unit.
 *
 * - De-duplication (./dedup.ts): by (tenant, device, message id) within process.dedupWindowMs;
 *   the window is reloaded from the store's record of message ids when processing starts, so a
 *   retry that straddles a restart (or a takeover by another node) is still stored once.
 * - Classification and settings per project (./settings.ts): a payload field may name the
 *   kind; a snapshot of a project with `snapshotReplaces` becomes a SnapshotCut; same-value
 *   suppression (./suppress.ts) leaves repeated values out of history (not events).
 * - Last seen is kept by the store from every raw message written (suppressed points included).
 * - Transient store failures (STORE_UNAVAILABLE, timeouts, SQLITE_BUSY: anything that is not a
 *   content refusal) are retried with exponential back-off and jitter (./retry.ts,
 *   process.retry*); the log is never committed past a batch that is not stored. After
 *   process.retryMaxAttempts the batch's messages become dead letters ("store write failed
 *   after N attempts: …") with tenant, kind and original bytes, and processing moves on; that
 *   dead-letter write itself is retried for ever, so an acknowledged message is always either
 *   stored, in the dead-letter queue, or still in the log. Replay (REST) puts them back through
 *   the log, where de-duplication keeps a replay from storing anything twice.
 * - A batch the store refuses for its content (a non-retryable 4xx FluxgateError) is split in
 *   halves until the refused messages are found; each becomes a dead letter with the store's
 *   reason, and the rest is stored: one bad message never stops the pipeline.
 */
import { Gauge, type Counter } from 'prom-client';
import type { Log, LogBatch, LogRecord } from '../log/log.js';
import type { DeadLetter, SnapshotCut, Store, WriteBatch } from '../stores/store.js';
import { counterOf, type Metrics } from '../observability/metrics.js';
import type { Logger } from '../core/logger.js';
import { isFluxgateError, type FluxgateError } from '../core/errors.js';
import { decodeEnvelope, deadLetterOf } from './decode.js';
import { DedupWindow, messageKey } from './dedup.js';
import { ProjectSettingsCache } from './settings.js';
import { SameValueFilter, type SuppressionPass } from './suppress.js';
import { backoffMs, DEFAULT_RETRY, exhausted, type RetryPolicy } from './retry.js';

export const PROCESS_GROUP = 'process';
/** Dead-letter reasons of messages the store refused start with this. */
export const STORE_REFUSED = 'store refused the message';
/** Dead-letter reasons of messages whose store write kept failing start with this. */
export const STORE_FAILED = 'store write failed after';

/** The metric label of a dead letter's reason. */
export function reasonLabel(reason: string): 'store_refused' | 'store_failed' | 'undecodable' {
  return reason.startsWith(STORE_REFUSED) ? 'store_refused' : reason.startsWith(STORE_FAILED) ? 'store_failed' : 'undecodable';
}

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
  /** Most message ids the window holds (process.dedupMaxIds; oldest forgotten first). */
  dedupMaxIds?: number;
  /** Most keys whose last stored value same-value suppression remembers (process.suppressMaxKeys). */
  suppressMaxKeys?: number;
  /** Back-off and give-up of transient store failures (process.retry*). */
  retry?: Partial<RetryPolicy>;
  /** How long project settings are cached, ms (5 s). */
  settingsTtlMs?: number;
}

/** One write and what deciding it changed, applied only once the store took it. */
interface Built {
  write: WriteBatch;
  duplicates: Map<string, number>;
  suppressed: Map<string, number>;
  pass?: SuppressionPass;
}

type Outcome = 'stored' | 'refused' | 'exhausted' | 'stopped';

/** Prunes the store's record of message ids this often, ms. */
const PRUNE_EVERY_MS = 60_000;
/** Message ids read per call when the window is reloaded. */
const LOAD_PAGE = 50_000;

/** A store error that a retry cannot fix: the content was refused (not the store unavailable). */
function refusedForContent(err: unknown): err is FluxgateError {
  return isFluxgateError(err) && !err.spec.retryable && err.status < 500;
}

const bump = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n);

export class Pipeline {
  private running = false;
  private loop?: Promise<void>;
  private lastError?: string;
  private processed = 0;
  private loaded = false;
  private lastPrune = 0;
  private wake?: () => void;
  /** The store's message for the last content refusal (the dead letter's reason). */
  private lastRefusal = '';
  private readonly dedup?: DedupWindow;
  private readonly windowMs: number;
  private readonly retry: RetryPolicy;
  private readonly settings: ProjectSettingsCache;
  private readonly sameValue: SameValueFilter;
  private readonly duplicates: Counter<'tenant'>;
  private readonly suppressed: Counter<'tenant'>;
  private readonly retries: Counter<never>;

  constructor(private readonly opts: PipelineOptions) {
    this.windowMs = opts.dedupWindowMs ?? 0;
    if (this.windowMs > 0) this.dedup = new DedupWindow(this.windowMs, opts.dedupMaxIds);
    this.sameValue = new SameValueFilter(opts.suppressMaxKeys);
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.settings = new ProjectSettingsCache(opts.store, opts.settingsTtlMs);
    const registry = opts.metrics.registry;
    this.duplicates = counterOf(registry, 'fluxgate_duplicates_dropped_total', 'Messages dropped by processing because their message id was already stored within process.dedupWindowMs (also across restarts).', ['tenant']);
    this.suppressed = counterOf(registry, 'fluxgate_suppressed_total', 'Points not stored as history because they repeated the key\'s last stored value within the project\'s suppressSameValueSeconds (the message is archived and refreshes last seen).', ['tenant']);
    this.retries = counterOf(registry, 'fluxgate_store_write_retries_total', 'Store writes of processing retried after a transient failure (process.retry*).', []);
    const name = 'fluxgate_dedup_window_ids';
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    const dedup = this.dedup;
    new Gauge({ name, help: 'Message ids held by the de-duplication window of this node\'s processing (at most process.dedupMaxIds).', registers: [registry], collect() { this.set(dedup?.size ?? 0); } });
    const keys = 'fluxgate_suppress_keys';
    if (registry.getSingleMetric(keys)) registry.removeSingleMetric(keys);
    const sameValue = this.sameValue;
    new Gauge({ name: keys, help: 'Keys whose last stored value same-value suppression remembers (at most process.suppressMaxKeys).', registers: [registry], collect() { this.set(sameValue.size); } });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Finishes the batch in hand, commits it and stops. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  status(): { ok: boolean; detail?: string } {
    if (this.lastError) return { ok: false, detail: `store failing, retrying: ${this.lastError}` };
    if (!this.loaded && this.running) return { ok: true, detail: 'loading the de-duplication window' };
    return { ok: true, detail: `${this.processed} records processed` };
  }

  private async run(): Promise<void> {
    const { log, batchSize } = this.opts;
    if ((await this.retrying('load the de-duplication window', () => this.loadWindow())) === 'stopped') return;
    this.loaded = true;
    while (this.running) {
      let batch: LogBatch;
      try {
        batch = await log.read(PROCESS_GROUP, batchSize, this.opts.readWaitMs ?? 200);
      } catch (err) {
        if (!this.running) return;
        this.opts.logger.error({ err }, 'log read failed; retrying');
        await this.sleep(backoffMs(this.retry, 1));
        continue;
      }
      if (batch.records.length === 0) continue;
      await this.process(batch);
    }
  }

  /** The ids the store took within the window, so a retry straddling a restart is still a duplicate. */
  private async loadWindow(): Promise<void> {
    const now = Date.now();
    if (this.dedup) {
      let since = now - this.windowMs;
      for (;;) {
        const page = await this.opts.store.recentMessageIds(since, LOAD_PAGE);
        this.dedup.load(page);
        if (page.length < LOAD_PAGE) break;
        const first = page[0].receiveTime;
        const last = page[page.length - 1].receiveTime;
        since = last === first ? last + 1 : last;
      }
      this.opts.logger.info({ ids: this.dedup.size, windowMs: this.windowMs }, 'de-duplication window loaded from the store');
    }
    await this.prune(now);
  }

  private async prune(now: number): Promise<void> {
    this.lastPrune = now;
    await this.opts.store.forgetMessageIds(now - this.windowMs);
  }

  private async process(batch: LogBatch): Promise<void> {
    const { log, metrics, logger } = this.opts;
    const built: Built[] = [];
    if ((await this.store(batch.records, built)) === 'stopped') return;
    for (const b of built) {
      const { write } = b;
      // Dead-lettered messages are not remembered: replaying them must not look like a duplicate.
      if (this.dedup) {
        const letters = new Set(write.deadLetters.map(messageKey));
        this.dedup.remember(letters.size ? write.messages.filter((m) => !letters.has(messageKey(m))) : write.messages);
      }
      b.pass?.commit();
      for (const [tenant, n] of b.duplicates) this.duplicates.inc({ tenant }, n);
      for (const [tenant, n] of b.suppressed) this.suppressed.inc({ tenant }, n);
      this.opts.onStored?.(write);
      const perTenant = new Map<string, number>();
      for (const p of write.points) bump(perTenant, p.tenant);
      for (const [tenant, n] of perTenant) metrics.pointsStored.inc({ tenant }, n);
      for (const d of write.deadLetters) metrics.deadLetters.inc({ tenant: d.tenant, reason: reasonLabel(d.reason) });
    }
    try {
      await log.commit(PROCESS_GROUP, batch);
    } catch (err) {
      // The records come again (at least once) and the store takes them idempotently.
      logger.warn({ err }, 'log commit failed; the batch will be read again');
      return;
    }
    this.processed += batch.records.length;
    const now = Date.now();
    if (now - this.lastPrune >= PRUNE_EVERY_MS) {
      this.prune(now).catch((err) => logger.warn({ err }, 'pruning the store\'s record of message ids failed; it is tried again later'));
    }
  }

  /** Decodes, classifies, de-duplicates and suppresses `records` into one write (nothing applied yet). */
  private build(records: LogRecord[]): Built {
    const write: WriteBatch = { points: [], messages: [], deadLetters: [] };
    const built: Built = { write, duplicates: new Map(), suppressed: new Map() };
    const inBatch = this.dedup ? new Set<string>() : undefined;
    const cuts: SnapshotCut[] = [];
    for (const { envelope } of records) {
      const settings = this.settings.get(envelope.tenant, envelope.project);
      const d = decodeEnvelope(envelope, settings);
      const m = d.message;
      if (this.dedup && inBatch) {
        const k = messageKey(m);
        if (inBatch.has(k) || this.dedup.isDuplicate(m)) { bump(built.duplicates, m.tenant); continue; }
        inBatch.add(k);
      }
      // A snapshot without points (`{}`, not JSON) says nothing about which keys exist: no cut.
      if (m.kind === 'snapshot' && settings.snapshotReplaces && d.points.length > 0) {
        cuts.push({ tenant: m.tenant, device: m.device, ts: m.ts, keys: [...new Set(d.points.map((p) => p.key))] });
      }
      const windowMs = (settings.suppressSameValueSeconds ?? 0) * 1000;
      if (windowMs > 0 && m.kind !== 'event') {
        const pass = built.pass ??= this.sameValue.begin();
        for (const p of d.points) {
          if (pass.suppress(p, windowMs)) bump(built.suppressed, p.tenant);
          else write.points.push(p);
        }
      } else {
        for (const p of d.points) write.points.push(p);
      }
      write.messages.push(m);
      if (d.deadLetter) write.deadLetters.push(d.deadLetter);
    }
    if (cuts.length) write.snapshots = cuts;
    return built;
  }

  /** Stores `records` (halving on a content refusal, dead-lettering when retries run out), pushing what was written to `built`. */
  private async store(records: LogRecord[], built: Built[]): Promise<'stored' | 'stopped'> {
    const projects = new Map<string, [string, string]>();
    for (const { envelope: e } of records) projects.set(`${e.tenant}\u0000${e.project}`, [e.tenant, e.project]);
    if ((await this.retrying('read project settings', () => this.settings.load(projects.values()))) === 'stopped') return 'stopped';
    const b = this.build(records);
    const outcome = await this.writeWithRetry(b.write);
    if (outcome === 'stored') built.push(b);
    if (outcome === 'stored' || outcome === 'stopped') return outcome;
    if (outcome === 'exhausted') {
      const reason = `${STORE_FAILED} ${this.retry.maxAttempts} attempts: ${this.lastError ?? 'unknown error'}`;
      const letters = b.write.messages.map((m) => deadLetterOf(m, reason));
      this.opts.logger.error({ messages: letters.length, reason }, 'store write kept failing; the batch goes to the dead-letter queue (replay it once the store is healthy)');
      return this.storeDeadLetters(letters, built, { duplicates: b.duplicates, suppressed: new Map() });
    }
    if (records.length > 1) {
      const half = Math.ceil(records.length / 2);
      for (const part of [records.slice(0, half), records.slice(half)]) {
        if ((await this.store(part, built)) === 'stopped') return 'stopped';
      }
      return 'stored';
    }
    const env = records[0].envelope;
    const message = b.write.messages;
    // The decoded message carries the client's id and the classified kind, when decoding got that far.
    const letter = deadLetterOf(message[0] ?? env, `${STORE_REFUSED}: ${this.lastRefusal}`);
    // Keep the raw message too when the store takes it on its own.
    const withMessage: WriteBatch = { points: [], messages: message, deadLetters: [letter] };
    const kept = await this.writeWithRetry(withMessage, true);
    if (kept === 'stored') {
      built.push({ write: withMessage, duplicates: b.duplicates, suppressed: new Map() });
      return 'stored';
    }
    if (kept === 'stopped') return 'stopped';
    return this.storeDeadLetters([letter], built, { duplicates: b.duplicates, suppressed: new Map() });
  }

  /** Writes dead letters alone, retrying for ever (the log holds the batch meanwhile). */
  private async storeDeadLetters(letters: DeadLetter[], built: Built[], rest: Omit<Built, 'write'>): Promise<'stored' | 'stopped'> {
    const write: WriteBatch = { points: [], messages: [], deadLetters: letters };
    const last = await this.writeWithRetry(write, true);
    if (last === 'stopped') return 'stopped';
    if (last === 'stored') built.push({ ...rest, write });
    else {
      const d = letters[0];
      this.opts.logger.error({ tenant: d?.tenant, device: d?.device, messageId: d?.messageId, reason: this.lastRefusal }, 'the store refused even the dead letter of this message; it is only in the log');
    }
    return 'stored';
  }

  private async writeWithRetry(write: WriteBatch, forever = false): Promise<Outcome> {
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
        if (!forever && exhausted(this.retry, attempt)) return 'exhausted';
        logger.warn({ err, attempt }, 'store write failed; retrying the batch');
        this.retries.inc();
        await this.sleep(backoffMs(this.retry, attempt));
        // Stopping gives up this batch uncommitted: the log keeps it for the next start.
        if (!this.running) return 'stopped';
      }
    }
  }

  /** Runs `fn` until it succeeds (back-off between tries) or processing stops. */
  private async retrying(what: string, fn: () => Promise<void>): Promise<'done' | 'stopped'> {
    for (let attempt = 1; this.running; attempt++) {
      try {
        await fn();
        this.lastError = undefined;
        return 'done';
      } catch (err) {
        this.lastError = `${what}: ${(err as Error).message}`;
        this.opts.logger.warn({ err, attempt }, `${what} failed; retrying`);
        await this.sleep(backoffMs(this.retry, attempt));
      }
    }
    return 'stopped';
  }

  /** A back-off wait that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); this.wake = undefined; resolve(); };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
