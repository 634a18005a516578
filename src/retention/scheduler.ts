/**
 * @module Runs retention passes on a timer, one at a time: a tick while a pass runs is skipped,
 * `runNow` waits for the running pass and then runs its own (so its answer reflects the moment
 * it was asked). The first pass runs soon after start (a node restarted more often than the
 * interval still purges), then every interval. Each pass also applies the log's own retention.
 * Counters and last-run gauges go to /metrics; `status()` is the /readyz detail.
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../core/logger.js';
import type { Log } from '../log/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { Store } from '../stores/store.js';
import { RetentionMetrics } from './metrics.js';
import { runPass, type PassResult } from './pass.js';

/** The first pass waits at most this long after start, ms. */
const FIRST_PASS_MAX_DELAY_MS = 60_000;

export interface SchedulerOptions {
  store: Store;
  log?: Log;
  metrics: Metrics;
  logger?: Logger;
  /** The node's tenant defaults (`tenants.*`). */
  config: Pick<Config, 'tenants'>;
  intervalMs: number;
  exportDir?: string;
  /**
   * Cluster: whether this node runs the scheduled passes (the processing-lease holder), so one
   * node deletes and exports (one set of Parquet files per tenant and day). Absent: always.
   * An explicit `runNow` runs on any node.
   */
  active?: () => boolean;
  /** /readyz detail of a node whose scheduled passes run elsewhere. */
  standbyDetail?: () => string;
}

export class RetentionScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PassResult> | undefined;
  private last: PassResult | undefined;
  private lastError: string | undefined;
  private nextAt: number | undefined;
  private stopped = false;
  private readonly metrics: RetentionMetrics;

  constructor(private readonly opts: SchedulerOptions) {
    this.metrics = new RetentionMetrics(opts.metrics);
  }

  get config(): Pick<Config, 'tenants'> { return this.opts.config; }
  get exportDir(): string | undefined { return this.opts.exportDir; }
  get intervalMs(): number { return this.opts.intervalMs; }
  /** The last finished pass, if any. */
  get lastPass(): PassResult | undefined { return this.last; }

  start(): void {
    this.schedule(Math.min(this.opts.intervalMs, FIRST_PASS_MAX_DELAY_MS));
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.nextAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      const standby = this.opts.active !== undefined && !this.opts.active();
      const tick = this.running || standby ? Promise.resolve() : this.pass().then(() => undefined, () => undefined);
      void tick.finally(() => this.schedule(this.opts.intervalMs));
    }, delay);
    this.timer.unref();
  }

  /** Runs a pass now (after the one running, if any) and returns what it did. */
  async runNow(): Promise<PassResult> {
    while (this.running) await this.running.catch(() => undefined);
    return this.pass();
  }

  private pass(): Promise<PassResult> {
    const p = (async () => {
      const t = performance.now();
      try {
        const r = await runPass({ store: this.opts.store, config: this.opts.config, exportDir: this.opts.exportDir, logger: this.opts.logger });
        if (this.opts.log) await this.opts.log.enforceRetention().catch((err) => { r.errors.push(`log retention failed: ${(err as Error).message}`); });
        this.record(r, (performance.now() - t) / 1000);
        return r;
      } catch (err) {
        this.lastError = (err as Error).message;
        this.metrics.lastOk.set(0);
        this.metrics.lastRun.set(Date.now() / 1000);
        this.metrics.lastDuration.set((performance.now() - t) / 1000);
        this.opts.logger?.warn({ err }, 'retention pass failed; it runs again next interval');
        throw err;
      }
    })();
    this.running = p;
    void p.finally(() => { if (this.running === p) this.running = undefined; }).catch(() => undefined);
    return p;
  }

  private record(r: PassResult, seconds: number): void {
    this.last = r;
    this.lastError = r.errors[0];
    for (const [tier, n] of Object.entries(r.deleted)) if (n > 0) this.metrics.deleted.inc({ tier }, n);
    this.metrics.exportedFiles.inc(r.exportedFiles);
    this.metrics.exportedRows.inc(r.exportedRows);
    this.metrics.lastRun.set(r.finishedAt / 1000);
    this.metrics.lastDuration.set(seconds);
    this.metrics.lastOk.set(r.errors.length === 0 ? 1 : 0);
    if (r.errors.length) this.opts.logger?.warn({ errors: r.errors }, 'retention pass finished with errors');
  }

  /** /readyz detail: retention never makes a node unready, it says how the last pass went. */
  status(): { ok: boolean; detail: string } {
    const next = this.nextAt === undefined ? '' : `; next in ${Math.max(0, Math.round((this.nextAt - Date.now()) / 1000))} s`;
    const running = this.running ? '; a pass is running' : '';
    if (this.opts.active && !this.opts.active() && !this.running) return { ok: true, detail: `standby: scheduled passes run on the processing-lease holder (${this.opts.standbyDetail?.() ?? 'another node'})` };
    const r = this.last;
    if (!r) return { ok: true, detail: `no pass yet${this.lastError ? ` (last attempt failed: ${this.lastError})` : ''}${running}${next}` };
    const d = r.deleted;
    const exported = this.opts.exportDir ? `, exported ${r.exportedRows} rows in ${r.exportedFiles} files` : '';
    const failed = this.lastError ? `, with errors: ${this.lastError}` : '';
    return { ok: true, detail: `last pass ${new Date(r.finishedAt).toISOString()} took ${((r.finishedAt - r.startedAt) / 1000).toFixed(1)} s: deleted raw ${d.raw}, 1m roll-ups ${d.rollup_1m}, 1h roll-ups ${d.rollup_1h}${r.rollupsSkipped ? ' (store keeps no roll-ups)' : ''}${exported}${failed}${running}${next}` };
  }

  /** Stops the timer and waits for a running pass. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }
}
