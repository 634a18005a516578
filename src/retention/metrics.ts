/** @module Retention's Prometheus metrics, registered on the node's registry. */
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../observability/metrics.js';

export class RetentionMetrics {
  readonly deleted;
  readonly exportedRows;
  readonly exportedFiles;
  readonly lastRun;
  readonly lastDuration;
  readonly lastOk;

  constructor(m: Metrics) {
    const registers = [m.registry];
    this.deleted = new Counter({ name: 'fluxgate_retention_deleted_total', help: 'Rows retention deleted, by tier (raw = points and raw messages; rollup_1m, rollup_1h = roll-up buckets).', labelNames: ['tier'] as const, registers });
    this.exportedRows = new Counter({ name: 'fluxgate_retention_exported_rows_total', help: 'Raw messages written to Parquet files before they expired.', registers });
    this.exportedFiles = new Counter({ name: 'fluxgate_retention_exported_files_total', help: 'Parquet files written by retention (one per tenant, day and part).', registers });
    this.lastRun = new Gauge({ name: 'fluxgate_retention_last_run_timestamp_seconds', help: 'When the last retention pass ended (Unix time, s).', registers });
    this.lastDuration = new Gauge({ name: 'fluxgate_retention_last_run_duration_seconds', help: 'How long the last retention pass took, s.', registers });
    this.lastOk = new Gauge({ name: 'fluxgate_retention_last_run_success', help: '1 when the last retention pass finished without error, else 0.', registers });
  }
}
