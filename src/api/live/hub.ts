/**
 * @module Live updates inside one node: processing publishes what it stored, per tenant and
 * device; SSE and WebSocket subscribers receive it. Subscriptions are always scoped by tenant.
 * A subscriber that cannot keep up (its socket buffer over the limit) is dropped and counted,
 * never slows processing. In a cluster a relay (./nats-relay.ts) carries every update to
 * every node, so a subscriber sees updates whatever node processed them.
 */
import { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../../observability/metrics.js';
import type { TelemetryPoint, Value } from '../../stores/store.js';

export interface LiveUpdate {
  device: string;
  project: string;
  /** Latest value and device time per key in this update. */
  values: Record<string, { value: Value; ts: number }>;
}

export type LiveListener = (update: LiveUpdate) => void;
/** Carries updates to every node (which then call `deliver`); absent on a single node. */
export type LiveRelay = (tenant: string, update: LiveUpdate) => void;

/** `device` is a device id or `*` for every device of the tenant. */
const keyOf = (tenant: string, device: string) => `${tenant}\u0000${device}`;

export class LiveHub {
  private readonly listeners = new Map<string, Set<LiveListener>>();
  private readonly delivered: Counter<'tenant'>;
  readonly dropped: Counter<'reason'>;
  private readonly subscribers: Gauge;
  private relay?: LiveRelay;

  constructor(metrics: Metrics) {
    this.delivered = new Counter({ name: 'fluxgate_live_updates_total', help: 'Live updates delivered to subscribers.', labelNames: ['tenant'] as const, registers: [metrics.registry] });
    this.dropped = new Counter({ name: 'fluxgate_live_subscribers_dropped_total', help: 'Live subscribers disconnected because they could not keep up.', labelNames: ['reason'] as const, registers: [metrics.registry] });
    this.subscribers = new Gauge({ name: 'fluxgate_live_subscribers', help: 'Live subscriptions open on this node.', registers: [metrics.registry] });
  }

  subscribe(tenant: string, device: string, listener: LiveListener): () => void {
    const k = keyOf(tenant, device);
    let set = this.listeners.get(k);
    if (!set) this.listeners.set(k, (set = new Set()));
    set.add(listener);
    this.subscribers.inc();
    return () => {
      if (set!.delete(listener)) this.subscribers.dec();
      if (set!.size === 0) this.listeners.delete(k);
    };
  }

  /** From now on updates go through `relay` instead of straight to local subscribers. */
  useRelay(relay: LiveRelay | undefined): void {
    this.relay = relay;
  }

  /** Publishes stored points, one update per device (newest value per key). */
  publishPoints(points: TelemetryPoint[]): void {
    if ((this.listeners.size === 0 && !this.relay) || points.length === 0) return;
    const byDevice = new Map<string, { tenant: string; update: LiveUpdate }>();
    for (const p of points) {
      if (!this.relay && !this.listeners.has(keyOf(p.tenant, p.device)) && !this.listeners.has(keyOf(p.tenant, '*'))) continue;
      const k = keyOf(p.tenant, p.device);
      let entry = byDevice.get(k);
      if (!entry) byDevice.set(k, (entry = { tenant: p.tenant, update: { device: p.device, project: p.project, values: {} } }));
      const prev = entry.update.values[p.key];
      if (!prev || prev.ts <= p.ts) entry.update.values[p.key] = { value: p.value, ts: p.ts };
    }
    for (const { tenant, update } of byDevice.values()) {
      if (this.relay) this.relay(tenant, update);
      else this.deliver(tenant, update);
    }
  }

  /** Hands one update to this node's subscribers of the device and of `*`. */
  deliver(tenant: string, update: LiveUpdate): void {
    for (const set of [this.listeners.get(keyOf(tenant, update.device)), this.listeners.get(keyOf(tenant, '*'))]) {
      if (!set) continue;
      for (const listener of set) {
        listener(update);
        this.delivered.inc({ tenant });
      }
    }
  }
}
