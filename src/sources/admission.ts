/**
 * @module Admission at the sources under overload (DESIGN promise 5): while processing lags
 * past `log.shedSnapshotsAtRecords`, snapshots are refused first — counted per tenant, shown
 * in /readyz — and events and telemetry are still taken; past `log.maxLagRecords` every
 * message is slowed down (HTTP 503 + Retry-After, MQTT stops reading). Events are never shed.
 * A shed snapshot is refused, never acknowledged and dropped: the device hears it.
 * The lag compared is the total over the log's lanes (src/log/lanes/): snapshots already
 * waiting count too, so the snapshot lane's backlog stays bounded while events are preferred.
 */
import { Counter } from 'prom-client';
import type { MessageKind, Protocol } from '../core/envelope.js';
import type { Log } from '../log/log.js';
import type { Metrics } from '../observability/metrics.js';

export type Decision = 'accept' | 'shed' | 'slow-down';

export class Admission {
  private readonly shedTotal: Counter<'tenant' | 'protocol'>;
  private lastShedAt = 0;
  /** Snapshots shed per tenant since start, for /readyz (one entry per tenant that was shed). */
  private readonly shedByTenant = new Map<string, number>();

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
    this.shedByTenant.set(tenant, (this.shedByTenant.get(tenant) ?? 0) + n);
    this.lastShedAt = Date.now();
  }

  status(): { ok: boolean; detail: string } {
    const p = this.log.pressure();
    const lag = p.lagRecords;
    const shedding = lag >= this.shedSnapshotsAtRecords;
    // With lanes (src/log/lanes/): how much of the lag is events and how much snapshots.
    const lanes = p.lanes ? ` (${Object.entries(p.lanes).map(([lane, l]) => `${lane} ${l.lagRecords}`).join(', ')})` : '';
    const recently = Date.now() - this.lastShedAt < 60_000 ? '; snapshots shed in the last minute' : '';
    // Per tenant, the most shed first (at most 5 named; all are in fluxgate_snapshots_shed_total).
    const top = [...this.shedByTenant].sort((x, y) => y[1] - x[1]);
    const perTenant = top.length ? `; shed since start: ${top.slice(0, 5).map(([t, n]) => `${t} ${n}`).join(', ')}${top.length > 5 ? `, ${top.length - 5} more tenants` : ''}` : '';
    // Shedding keeps the node useful (events still flow), so it does not make it unready.
    return { ok: true, detail: `${shedding ? `shedding snapshots: lag ${lag}${lanes} ≥ log.shedSnapshotsAtRecords ${this.shedSnapshotsAtRecords}` : `taking everything${recently}`}${perTenant}` };
  }
}
