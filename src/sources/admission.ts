/**
 * @module Admission at the sources under overload (DESIGN promise 5): while processing lags
 * past `log.shedSnapshotsAtRecords`, snapshots are refused first — counted per tenant, shown
 * in /readyz — and events and telemetry are still taken; past `log.maxLagRecords` every
 * message is slowed down (HTTP 503 + Retry-After, MQTT stops reading). Events are never shed.
 * A shed snapshot is refused, never acknowledged and dropped: the device hears it.
 */
import { Counter } from 'prom-client';
import type { MessageKind, Protocol } from '../core/envelope.js';
import type { Log } from '../log/log.js';
import type { Metrics } from '../observability/metrics.js';

export type Decision = 'accept' | 'shed' | 'slow-down';

export class Admission {
  private readonly shedTotal: Counter<'tenant' | 'protocol'>;
  private lastShedAt = 0;

  constructor(private readonly log: Log, private readonly shedSnapshotsAtRecords: number, metrics: Metrics) {
    this.shedTotal = new Counter({ name: 'fluxgate_snapshots_shed_total', help: 'Snapshots refused at the source because processing lagged past log.shedSnapshotsAtRecords.', labelNames: ['tenant', 'protocol'] as const, registers: [metrics.registry] });
  }

  decide(kind: MessageKind): Decision {
    const p = this.log.pressure();
    if (p.overLimit) return 'slow-down';
    if (kind === 'snapshot' && p.lagRecords >= this.shedSnapshotsAtRecords) return 'shed';
    return 'accept';
  }

  /** Counts `n` shed snapshots of a tenant. */
  shed(tenant: string, protocol: Protocol, n = 1): void {
    this.shedTotal.inc({ tenant, protocol }, n);
    this.lastShedAt = Date.now();
  }

  status(): { ok: boolean; detail: string } {
    const lag = this.log.pressure().lagRecords;
    const shedding = lag >= this.shedSnapshotsAtRecords;
    const recently = Date.now() - this.lastShedAt < 60_000 ? '; snapshots shed in the last minute' : '';
    // Shedding keeps the node useful (events still flow), so it does not make it unready.
    return { ok: true, detail: shedding ? `shedding snapshots: lag ${lag} ≥ log.shedSnapshotsAtRecords ${this.shedSnapshotsAtRecords}` : `taking everything${recently}` };
  }
}
