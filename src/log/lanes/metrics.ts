/**
 * @module Consumer-lag metrics of a lane log. Each lane's inner log reports the lag of a group
 * as if it were the whole log; here that becomes `fluxgate_log_lane_lag_records{group,lane}`,
 * and `fluxgate_consumer_lag_records{group}` keeps its meaning: the group's lag over all lanes
 * (the sum). Every other series the inner logs write (fsyncs, append latency) is shared as is.
 * `fluxgate_log_pending_bytes{lane}` is the append queue of each lane (bytes accepted and not
 * yet durable; the WAL refuses appends past 256 MiB), read from the log at each scrape.
 */
import { Gauge } from 'prom-client';
import type { Metrics } from '../../observability/metrics.js';
import type { Lane } from './lane.js';

const LANE_LAG = 'fluxgate_log_lane_lag_records';
const PENDING = 'fluxgate_log_pending_bytes';

/** Registry → the lane log whose queues the pending-bytes gauge reports (the last one created on it). */
const pendingSources = new WeakMap<object, () => Record<string, number>>();

export class LaneMetrics {
  private readonly laneLag: Gauge<'group' | 'lane'>;
  /** lane → group → lag last reported by that lane's inner log. */
  private readonly lags = new Map<Lane, Map<string, number>>();

  constructor(private readonly metrics: Metrics) {
    this.laneLag = (metrics.registry.getSingleMetric(LANE_LAG) as Gauge<'group' | 'lane'> | undefined)
      ?? new Gauge({ name: LANE_LAG, help: 'Records of one log lane (events: events, telemetry, attributes; snapshots) appended and not yet committed by the consumer group.', labelNames: ['group', 'lane'] as const, registers: [metrics.registry] });
  }

  /** Reports `pending()` (bytes waiting to be durable, per lane) in fluxgate_log_pending_bytes at each scrape. */
  watchPending(pending: () => Record<string, number>): void {
    const registry = this.metrics.registry;
    pendingSources.set(registry, pending);
    if (registry.getSingleMetric(PENDING)) return;
    new Gauge({
      name: PENDING, help: 'Bytes appended to a log lane and not yet durable (the append queue; refused past its limit).', labelNames: ['lane'] as const, registers: [registry],
      collect() { for (const [lane, bytes] of Object.entries(pendingSources.get(registry)?.() ?? {})) this.set({ lane }, bytes); },
    });
  }

  /** The Metrics an inner log of `lane` writes to: the node's, with consumer lag taken per lane. */
  forLane(lane: Lane): Metrics {
    const lags = new Map<string, number>();
    this.lags.set(lane, lags);
    const consumerLag = {
      set: (labels: { group: string }, value: number): void => {
        lags.set(labels.group, value);
        this.laneLag.set({ group: labels.group, lane }, value);
        let total = 0;
        for (const perLane of this.lags.values()) total += perLane.get(labels.group) ?? 0;
        this.metrics.consumerLag.set({ group: labels.group }, total);
      },
    };
    // The inner logs only ever call consumerLag.set (wal/file-log.ts, jetstream/lag.ts).
    const view = Object.create(this.metrics) as Metrics;
    Object.defineProperty(view, 'consumerLag', { value: consumerLag });
    return view;
  }
}
