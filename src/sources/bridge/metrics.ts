/**
 * @module Prometheus series of the bridges (`fluxgate_bridge_*{bridge=…}`), registered once on
 * the node's registry. Gauges (connected, lag) are read from the running bridges at scrape time.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Metrics } from '../../observability/metrics.js';

function reuse<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** What a bridge reports to the gauges. */
export interface BridgeGaugeSource {
  name: string;
  connected(): boolean;
  lag(): number;
}

export class BridgeMetrics {
  /** Messages by outcome: logged, redelivered (a DUP the journal recognised, logged again under its first id), refused, qos0. */
  readonly messages: Counter<'bridge' | 'outcome'>;
  /** Messages acknowledged to the external broker without being logged, by reason (policy refusals). */
  readonly refused: Counter<'bridge' | 'reason'>;
  readonly connects: Counter<'bridge' | 'outcome'>;
  readonly appendFailures: Counter<'bridge'>;

  constructor(shared: Metrics, sources: () => BridgeGaugeSource[]) {
    const r = shared.registry;
    const registers = [r];
    this.messages = reuse(r, 'fluxgate_bridge_messages_total', () => new Counter({ name: 'fluxgate_bridge_messages_total', help: 'Messages a bridge took from its external broker, by outcome (logged, redelivered, refused, qos0).', labelNames: ['bridge', 'outcome'] as const, registers }));
    this.refused = reuse(r, 'fluxgate_bridge_refused_total', () => new Counter({ name: 'fluxgate_bridge_refused_total', help: 'Messages a bridge acknowledged without logging them, by reason (unmatched topic, unknown tenant, unknown device without autoProvision, disabled device…).', labelNames: ['bridge', 'reason'] as const, registers }));
    this.connects = reuse(r, 'fluxgate_bridge_connects_total', () => new Counter({ name: 'fluxgate_bridge_connects_total', help: 'Connection attempts of a bridge to its external broker, by outcome (connected, refused, failed).', labelNames: ['bridge', 'outcome'] as const, registers }));
    this.appendFailures = reuse(r, 'fluxgate_bridge_append_failures_total', () => new Counter({ name: 'fluxgate_bridge_append_failures_total', help: 'Batches the log refused; their messages stay unacknowledged and the external broker redelivers them.', labelNames: ['bridge'] as const, registers }));
    // Read at scrape time from whatever bridges run now (deleted ones disappear).
    reuse(r, 'fluxgate_bridge_connected', () => new Gauge({
      name: 'fluxgate_bridge_connected', help: '1 while the bridge is connected to its external broker.', labelNames: ['bridge'] as const, registers,
      collect(this: Gauge<'bridge'>) { this.reset(); for (const b of sources()) this.set({ bridge: b.name }, b.connected() ? 1 : 0); },
    }));
    reuse(r, 'fluxgate_bridge_lag_messages', () => new Gauge({
      name: 'fluxgate_bridge_lag_messages', help: 'Messages received from the external broker and not yet acknowledged to it.', labelNames: ['bridge'] as const, registers,
      collect(this: Gauge<'bridge'>) { this.reset(); for (const b of sources()) this.set({ bridge: b.name }, b.lag()); },
    }));
  }
}
