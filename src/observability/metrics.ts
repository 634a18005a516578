/**
 * @module Prometheus metrics of one node (prom-client). One Registry per node, so several
 * nodes in one test process never share counters. Modules register their own series on
 * `metrics.registry`; the series every stage shares are defined here. Every series about
 * messages carries a `tenant` label.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The counter `name` of `registry`, created on first use: modules that may be built more than once
 * per node (per route registration, per pipeline) share one series instead of failing on a duplicate name.
 */
export function counterOf<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
}

export class Metrics {
  readonly registry = new Registry();

  /** Messages by protocol and outcome (accepted, unauthenticated, forbidden, bad_request, too_large, overloaded, error). */
  readonly messages = new Counter({ name: 'fluxgate_messages_total', help: 'Device messages by protocol and outcome.', labelNames: ['tenant', 'protocol', 'outcome'] as const, registers: [this.registry] });
  readonly logAppendSeconds = new Histogram({ name: 'fluxgate_log_append_seconds', help: 'Time from append call to durable (fsync done).', buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers: [this.registry] });
  readonly logSyncBatchRecords = new Histogram({ name: 'fluxgate_log_fsync_batch_records', help: 'Records made durable by one fdatasync (group commit size).', buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000], registers: [this.registry] });
  readonly logSyncs = new Counter({ name: 'fluxgate_log_fsyncs_total', help: 'fdatasync calls of the embedded log.', registers: [this.registry] });
  readonly consumerLag = new Gauge({ name: 'fluxgate_consumer_lag_records', help: 'Records appended to the log and not yet committed by the consumer group.', labelNames: ['group'] as const, registers: [this.registry] });
  readonly storeWriteSeconds = new Histogram({ name: 'fluxgate_store_write_seconds', help: 'Time to write one processed batch to the store.', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] });
  readonly pointsStored = new Counter({ name: 'fluxgate_points_stored_total', help: 'Key/value points written to the store.', labelNames: ['tenant'] as const, registers: [this.registry] });
  readonly deadLetters = new Counter({ name: 'fluxgate_dead_letters_total', help: 'Messages processing could not take, by reason.', labelNames: ['tenant', 'reason'] as const, registers: [this.registry] });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fluxgate_process_' });
  }
}
