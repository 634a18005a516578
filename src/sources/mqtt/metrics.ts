/**
 * @module Prometheus series of the MQTT broker (`fluxgate_mqtt_*`), registered on the node's
 * registry. A broker restarted in the same process (tests) reuses the series it registered.
 * Label children are cached so the hot path does no label lookup per message.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Metrics } from '../../observability/metrics.js';

function reuse<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

const OUTCOMES = ['accepted', 'routed', 'forbidden', 'invalid', 'too_large', 'error', 'duplicate', 'shed', 'quota'] as const;
export type PublishOutcome = (typeof OUTCOMES)[number];
const OUTCOME_INDEX = Object.fromEntries(OUTCOMES.map((o, i) => [o, i])) as Record<PublishOutcome, number>;

export class MqttMetrics {
  readonly connections: Gauge<string>;
  readonly connects: Counter<'outcome'>;
  readonly packetsIn: Counter<'type'>;
  readonly packetsOut: Counter<'type'>;
  readonly publishes: Counter<'tenant' | 'qos' | 'outcome'>;
  readonly pubackSeconds: Histogram<string>;
  readonly backpressureSeconds: Counter<string>;
  readonly slowSubscribers: Counter<string>;
  readonly dropped: Counter<'tenant' | 'reason'>;
  readonly closed: Counter<'reason'>;
  private readonly inChildren = new Map<string, { inc(n?: number): void }>();
  private readonly outChildren = new Map<string, { inc(n?: number): void }>();
  private readonly pubChildren = new Map<string, { inc(n?: number): void }>();
  private readonly msgChildren = new Map<string, { inc(n?: number): void }>();
  /** Per tenant: counts by outcome × QoS, not yet handed to prom-client. */
  private readonly pending = new Map<string, number[]>();
  private latencies: number[] = [];
  private flushScheduled = false;

  constructor(private readonly shared: Metrics) {
    const r = shared.registry;
    const registers = [r];
    this.connections = reuse(r, 'fluxgate_mqtt_connections', () => new Gauge({ name: 'fluxgate_mqtt_connections', help: 'Open MQTT connections (TCP, TLS and WebSocket).', registers }));
    this.connects = reuse(r, 'fluxgate_mqtt_connects_total', () => new Counter({ name: 'fluxgate_mqtt_connects_total', help: 'MQTT CONNECT attempts by outcome (accepted, unauthenticated, forbidden, refused, protocol).', labelNames: ['outcome'] as const, registers }));
    this.packetsIn = reuse(r, 'fluxgate_mqtt_packets_received_total', () => new Counter({ name: 'fluxgate_mqtt_packets_received_total', help: 'MQTT packets received by type.', labelNames: ['type'] as const, registers }));
    this.packetsOut = reuse(r, 'fluxgate_mqtt_packets_sent_total', () => new Counter({ name: 'fluxgate_mqtt_packets_sent_total', help: 'MQTT packets sent by type.', labelNames: ['type'] as const, registers }));
    this.publishes = reuse(r, 'fluxgate_mqtt_publishes_total', () => new Counter({ name: 'fluxgate_mqtt_publishes_total', help: 'PUBLISH packets from clients by tenant, QoS and outcome (accepted = logged durably, routed = delivered without logging, forbidden, invalid, too_large, error, duplicate, shed, quota = over a tenant quota).', labelNames: ['tenant', 'qos', 'outcome'] as const, registers }));
    this.pubackSeconds = reuse(r, 'fluxgate_mqtt_puback_seconds', () => new Histogram({ name: 'fluxgate_mqtt_puback_seconds', help: 'Time from a QoS 1/2 PUBLISH received to its PUBACK/PUBREC sent (includes the durable log append).', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers }));
    this.backpressureSeconds = reuse(r, 'fluxgate_mqtt_backpressure_seconds_total', () => new Counter({ name: 'fluxgate_mqtt_backpressure_seconds_total', help: 'Seconds the broker stopped reading sockets because the log was over its limit.', registers }));
    this.slowSubscribers = reuse(r, 'fluxgate_mqtt_slow_subscribers_total', () => new Counter({ name: 'fluxgate_mqtt_slow_subscribers_total', help: 'Subscribers disconnected because their queue passed mqtt.maxQueuedMessages.', registers }));
    this.dropped = reuse(r, 'fluxgate_mqtt_messages_dropped_total', () => new Counter({ name: 'fluxgate_mqtt_messages_dropped_total', help: 'Messages not delivered to a subscriber, by tenant and reason (expired, too_large, offline_queue_full, offline_qos0).', labelNames: ['tenant', 'reason'] as const, registers }));
    this.closed = reuse(r, 'fluxgate_mqtt_disconnects_total', () => new Counter({ name: 'fluxgate_mqtt_disconnects_total', help: 'Connections closed by the broker, by reason (malformed, too_large, protocol, keepalive, connect_timeout, slow, takeover, shutdown, error).', labelNames: ['reason'] as const, registers }));
  }

  packetIn(type: string): void {
    let c = this.inChildren.get(type);
    if (!c) this.inChildren.set(type, (c = this.packetsIn.labels(type)));
    c.inc();
  }

  packetOut(type: string): void {
    let c = this.outChildren.get(type);
    if (!c) this.outChildren.set(type, (c = this.packetsOut.labels(type)));
    c.inc();
  }

  /**
   * Counts a client PUBLISH; accepted device messages also count in `fluxgate_messages_total{protocol="mqtt"}`.
   * Counts gather in plain numbers and reach prom-client once per event-loop turn (the hot path stays cheap).
   */
  publish(tenant: string, qos: number, outcome: PublishOutcome, n = 1): void {
    let counts = this.pending.get(tenant);
    if (!counts) this.pending.set(tenant, (counts = new Array<number>(OUTCOMES.length * 3).fill(0)));
    counts[OUTCOME_INDEX[outcome] * 3 + qos] += n;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const latencies = this.latencies;
    this.latencies = [];
    for (const l of latencies) this.pubackSeconds.observe(l);
    for (const [tenant, counts] of this.pending) {
      for (let i = 0; i < counts.length; i++) {
        const n = counts[i];
        if (n === 0) continue;
        counts[i] = 0;
        const outcome = OUTCOMES[Math.floor(i / 3)];
        const qos = i % 3;
        const k = `${tenant}\u0000${outcome}\u0000${qos}`;
        let c = this.pubChildren.get(k);
        if (!c) this.pubChildren.set(k, (c = this.publishes.labels(tenant, String(qos), outcome)));
        c.inc(n);
        const shared = outcome === 'accepted' || outcome === 'forbidden' || outcome === 'too_large' || outcome === 'error' ? outcome : undefined;
        if (shared) {
          const mk = `${tenant}\u0000${shared}`;
          let m = this.msgChildren.get(mk);
          if (!m) this.msgChildren.set(mk, (m = this.shared.messages.labels(tenant, 'mqtt', shared)));
          m.inc(n);
        }
      }
    }
  }

  /** PUBACK/PUBREC latency, gathered per turn like the counters. */
  ackLatency(seconds: number): void {
    this.latencies.push(seconds);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }
}
