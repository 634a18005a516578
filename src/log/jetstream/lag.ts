/**
 * @module Consumer lag of the JetStream log, cached: `pressure()` must answer without the
 * network, so the lag is refreshed in the background (one consumer list of the stream per
 * refresh, at most every `refreshMs`, sooner after an append or a commit asks for it). The
 * lag of a group is num_pending (not yet delivered) + num_ack_pending (delivered, not
 * committed); the log's lag is that of the slowest Fluxgate group on the stream, on any node,
 * or every record in the stream while no group exists yet (processing never started).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { Metrics } from '../../observability/metrics.js';

export class LagMonitor {
  /** Lag of the slowest group at the last successful refresh. */
  lagRecords = 0;
  /** False after a refresh failed, until one succeeds. */
  healthy = true;
  private running?: Promise<void>;
  private again = false;
  private lastStart = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly consumerPrefix: string,
    private readonly refreshMs: number,
    /** No refresh is started while disconnected (it would only wait for its timeout). */
    private readonly connected: () => boolean,
    private readonly metrics?: Metrics,
    private readonly logger?: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), Math.max(this.refreshMs, 1000));
    this.timer.unref();
    this.kick();
  }

  /** Refreshes soon: now if none runs and the last started `refreshMs` ago, else once after. */
  kick(): void {
    if (this.stopped || !this.connected()) return;
    if (this.running) { this.again = true; return; }
    const wait = this.lastStart + this.refreshMs - Date.now();
    if (wait > 0) {
      this.again = true;
      this.running = new Promise<void>((r) => setTimeout(r, wait).unref()).then(() => { this.running = undefined; this.next(); });
      return;
    }
    this.lastStart = Date.now();
    this.running = this.refresh().finally(() => { this.running = undefined; this.next(); });
  }

  /** Stops refreshing; a refresh under way ends with the connection, unawaited. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private next(): void {
    if (this.again && !this.stopped) { this.again = false; this.kick(); }
  }

  private async refresh(): Promise<void> {
    try {
      let max = 0;
      let groups = 0;
      for await (const c of this.jsm.consumers.list(this.stream)) {
        if (!c.name.startsWith(this.consumerPrefix)) continue;
        groups++;
        const lag = c.num_pending + c.num_ack_pending;
        if (lag > max) max = lag;
        this.metrics?.consumerLag.set({ group: c.name.slice(this.consumerPrefix.length) }, lag);
      }
      // As in the WAL: before any group exists, nothing is processed, so every record counts.
      if (groups === 0) max = (await this.jsm.streams.info(this.stream)).state.messages;
      this.lagRecords = max;
      if (!this.healthy) this.logger?.info({ stream: this.stream }, 'log consumer lag readable again');
      this.healthy = true;
    } catch (err) {
      if (this.stopped) return;
      if (this.healthy) this.logger?.warn({ stream: this.stream, err }, 'log consumer lag cannot be read');
      this.healthy = false;
    }
  }
}
