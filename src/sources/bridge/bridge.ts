/**
 * @module One bridge: an mqtt.js client subscribed to an external broker with a persistent
 * session, whose QoS 1/2 messages are acknowledged (PUBACK / PUBREC) only after `Log.append`
 * resolved, so the external broker keeps every message Fluxgate does not hold durably.
 *
 * Manual acknowledgement. mqtt.js handles one packet at a time and sends the acknowledgement
 * from inside its packet pump, so waiting for the log there would cost one fsync per message.
 * Instead the bridge installs `options.customHandleAcks` (it is honoured for QoS 1 and 2 on
 * both protocol versions once set on the client) and answers it with a sentinel error: mqtt.js
 * then sends no acknowledgement, does not emit 'message', and moves to the next packet. The
 * bridge groups what arrived in one event-loop turn into one journal sync + one log append and
 * writes the PUBACK/PUBREC itself, in arrival order, on the connection the message came in on
 * (a message whose connection is gone is not acknowledged: the broker redelivers it). For
 * QoS 2 the later PUBREL finds nothing in mqtt.js's incoming store, so mqtt.js answers PUBCOMP
 * at once — the message was logged at PUBREC time (QoS 2 "method B": store, then PUBREC).
 *
 * Exactly once across a crash. Each logged message gets a fresh unique message id (and its
 * receive time) recorded per packet id in the redelivery journal (./journal.ts: a file on the
 * embedded node; ./journal-jetstream.ts: JetStream in a cluster, so the next lease holder has
 * it after a crash), durable before the append. A PUBLISH is taken as a redelivery of the journal's entry for its packet id when
 * the topic+payload hash matches AND (it carries DUP, or the entry dates from before this start,
 * or we have not acknowledged the entry yet). A redelivery reuses the first copy's message id
 * and receive time, so it decodes to identical points and raw-archive row and the stores' keys
 * and the de-dup window drop it (the log may hold it twice; nothing is stored twice).
 * Residual risk, honestly: the broker may reuse a packet id only after our acknowledgement
 * reached it. If Fluxgate stops after such an acknowledgement and, on the next start, the
 * first message the broker sends under that packet id is byte-identical (same topic and
 * payload) to the previous one, it is taken for a redelivery and dropped. That needs a device
 * repeating an identical payload AND the broker reusing exactly that packet id as the first
 * use after a restart; a publisher that sends an `id` (JSON field or MQTT 5 user property
 * `id`) or a `ts` in its payload is never affected. Within one run a non-DUP publish after our
 * acknowledgement is always a new message (the spec requires DUP on redeliveries).
 * MQTT 5 user property `id`, when present, is the message id (like the MQTT source).
 *
 * Reconnects: exponential back-off with jitter (reconnect.initialMs doubling up to maxMs, each
 * delay drawn from [d/2, d]; it starts over once a connection held for 10 s); a fresh client per attempt (mqtt.js's own reconnect has a fixed
 * period). Subscriptions are made when the broker has no session for us, and always on MQTT 5
 * with retain-handling 1 (retained messages only for a new subscription).
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import type { Envelope } from '../../core/envelope.js';
import { generateMessageId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Log } from '../../log/log.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Store } from '../../stores/store.js';
import type { CompiledTemplate } from '../../templates/template.js';
import { clientIdOf, shownUrl, type BridgeDefinition } from './definition.js';
import { messageHash, type Journal, type JournalEntry } from './journal.js';
import { TopicMapper, type DeviceAdmitter, type Mapping } from './mapping.js';
import type { BridgeMetrics } from './metrics.js';

/** connected: subscribed and receiving (subscribing: CONNACK seen, SUBACK not yet). */
export type BridgeState = 'starting' | 'connecting' | 'subscribing' | 'connected' | 'waiting' | 'stopped';

export interface BridgeStatus {
  name: string;
  state: BridgeState;
  connected: boolean;
  url: string;
  clientId: string;
  topics: string[];
  /** Messages received and not yet acknowledged to the external broker. */
  lag: number;
  connectedSince?: number;
  lastError?: string;
  lastErrorAt?: number;
  lastRefusal?: string;
  nextAttemptAt?: number;
  counters: { received: number; logged: number; redelivered: number; refused: number; acknowledged: number; qos0: number; connects: number; appendFailures: number };
}

export interface BridgeDeps {
  log: Log;
  store: Store;
  metrics: Metrics;
  bridgeMetrics: BridgeMetrics;
  logger: Logger;
  /** The bridge's redelivery journal (opened by start(), closed by stop()). */
  journal: Journal;
  /** The bridge's compiled template (inline, or looked up in the template registry each time). */
  template: () => CompiledTemplate;
  /** The template registry's device admission. */
  admitter: DeviceAdmitter;
  /** Told what was made durable (the node routes it to MQTT subscribers). */
  onDurable?: (envelopes: Envelope[]) => void;
}

/** A connection that lasted this long resets the reconnect back-off. */
const STABLE_MS = 10_000;

/** The answer to customHandleAcks that makes mqtt.js send no acknowledgement. */
const DEFERRED = new Error('acknowledged by the bridge once logged');

interface Connection {
  client: MqttClient;
  stream: { write(b: Buffer): boolean; destroyed?: boolean };
  /** QoS 1/2 messages in arrival order, acknowledged from the head once done. */
  queue: Item[];
  closed: boolean;
}

interface Item {
  conn: Connection;
  qos: number;
  packetId: number;
  messageId: string;
  done: boolean;
}

interface Pending { item: Item; envelope: Envelope; journal?: { packetId: number } & JournalEntry }

export class Bridge {
  readonly name: string;
  /** The broker URL as shown (password masked). */
  private readonly url: string;
  private state: BridgeState = 'starting';
  private conn?: Connection;
  private stopping = false;
  private attempt = 0;
  private timer?: NodeJS.Timeout;
  private readonly journal: Journal;
  private readonly mapper: TopicMapper;
  /** Mapping runs in arrival order, so appends keep each device's order. */
  private chain: Promise<void> = Promise.resolve();
  private pending: Pending[] = [];
  private flushScheduled = false;
  private inflight = 0;
  private lagCount = 0;
  private idle: Array<() => void> = [];
  private readonly counters = { received: 0, logged: 0, redelivered: 0, refused: 0, acknowledged: 0, qos0: 0, connects: 0, appendFailures: 0 };
  private connectedSince?: number;
  private lastError?: string;
  private lastErrorAt?: number;
  private lastRefusal?: string;
  private nextAttemptAt?: number;

  constructor(readonly def: BridgeDefinition, private readonly deps: BridgeDeps) {
    this.name = def.name;
    this.url = shownUrl(def.url);
    this.journal = deps.journal;
    this.mapper = new TopicMapper(deps.store, deps.template, deps.admitter);
  }

  async start(): Promise<void> {
    await this.journal.open();
    this.connect();
  }

  connected(): boolean {
    return this.state === 'connected';
  }

  lag(): number {
    return this.lagCount;
  }

  status(): BridgeStatus {
    return {
      name: this.name, state: this.state, connected: this.connected(), url: this.url, clientId: clientIdOf(this.def), topics: this.def.topics,
      lag: this.lagCount, connectedSince: this.connectedSince, lastError: this.lastError, lastErrorAt: this.lastErrorAt, lastRefusal: this.lastRefusal,
      nextAttemptAt: this.state === 'waiting' ? this.nextAttemptAt : undefined, counters: { ...this.counters },
    };
  }

  /**
   * /readyz component. Always ok: a bridge whose external broker is away does not make the node
   * unready — the node still serves its own devices and API, the external broker keeps the
   * session's messages, and an unready node is taken out of its load balancer (every node at
   * once, for an outage outside Fluxgate). The state is in the detail and in fluxgate_bridge_connected.
   */
  component(): { ok: boolean; detail: string } {
    const s = this.status();
    if (s.connected) return { ok: true, detail: `connected to ${s.url} since ${new Date(s.connectedSince!).toISOString()}; lag ${s.lag}${s.lastRefusal ? `; last refused: ${s.lastRefusal}` : ''}` };
    const next = s.nextAttemptAt ? `; next attempt in ${Math.max(0, Math.round((s.nextAttemptAt - Date.now()) / 100) / 10)} s` : '';
    return { ok: true, detail: `${s.state === 'stopped' ? 'stopped' : 'disconnected'} from ${s.url}${s.lastError ? `: ${s.lastError}` : ''}${next}; lag ${s.lag} (the external broker keeps the session's messages)` };
  }

  /** Stops taking messages, lets in-flight appends finish and acknowledges them, then disconnects (the session stays on the broker). */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.timer);
    await this.drain(10_000);
    const conn = this.conn;
    this.state = 'stopped';
    if (conn && !conn.closed) {
      conn.closed = true;
      await Promise.race([conn.client.endAsync(false).catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
      conn.client.end(true);
    }
    await this.journal.close();
  }

  /** Stops and deletes the redelivery journal (the bridge was deleted). */
  async remove(): Promise<void> {
    await this.stop();
    await this.journal.remove();
  }

  private async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.inflight > 0 || this.pending.length > 0 || this.lagCount > 0) && Date.now() < deadline) {
      this.flush();
      await Promise.race([new Promise<void>((r) => this.idle.push(r)), new Promise((r) => setTimeout(r, 50).unref())]);
    }
  }

  private clientOptions(): IClientOptions {
    const d = this.def;
    const tls = d.tls;
    const file = (f?: string) => (f ? readFileSync(f) : undefined);
    return {
      clientId: clientIdOf(d), username: d.username, password: d.password,
      clean: false, protocolVersion: d.protocolVersion, keepalive: d.keepaliveSeconds, connectTimeout: d.connectTimeoutMs,
      reconnectPeriod: 0, resubscribe: false,
      properties: d.protocolVersion === 5 ? { sessionExpiryInterval: d.sessionExpirySeconds, receiveMaximum: d.receiveMaximum } : undefined,
      ...(tls ? {
        ca: tls.ca ?? file(tls.caFile), cert: tls.cert ?? file(tls.certFile), key: tls.key ?? file(tls.keyFile),
        rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername,
      } : {}),
    };
  }

  private connect(): void {
    if (this.stopping) return;
    this.state = 'connecting';
    this.nextAttemptAt = undefined;
    let client: MqttClient;
    try {
      client = mqtt.connect(this.def.url, this.clientOptions());
    } catch (err) {
      this.fail(`cannot connect to ${this.url}: ${(err as Error).message}`, 'failed');
      this.scheduleReconnect();
      return;
    }
    const conn: Connection = { client, stream: client.stream as unknown as Connection['stream'], queue: [], closed: false };
    this.conn = conn;
    let connackSeen = false;
    // Set after construction so it applies to MQTT 3.1.1 too (mqtt.js keeps the option only for v5).
    (client.options as { customHandleAcks?: unknown }).customHandleAcks = (_topic: string, _payload: Buffer, packet: mqttPacket.IPublishPacket, done: (err: Error | null, code?: number) => void) => {
      this.onPublish(conn, packet);
      done(DEFERRED);
    };
    client.on('message', (_topic, _payload, packet) => {
      if (packet.qos === 0) this.onPublish(conn, packet);
    });
    client.on('connect', (connack) => {
      connackSeen = true;
      this.connectedSince = Date.now();
      this.counters.connects++;
      this.deps.bridgeMetrics.connects.inc({ bridge: this.name, outcome: 'connected' });
      this.deps.logger.info({ url: this.url, sessionPresent: connack.sessionPresent }, 'bridge connected');
      if (!connack.sessionPresent || this.def.protocolVersion === 5) {
        this.state = 'subscribing';
        this.subscribe(conn);
      } else {
        this.state = 'connected';
      }
    });
    client.on('error', (err: Error & { code?: number | string }) => {
      if (err === DEFERRED) return;
      if (!connackSeen && typeof err.code === 'number') {
        this.fail(`the broker refused the connection: ${err.message} (reason ${err.code}); check username, password and clientId of bridge ${this.name}`, 'refused');
      } else if (!connackSeen) {
        this.fail(`cannot reach ${this.url}: ${err.message}`, 'failed');
      } else {
        this.fail(`connection error: ${err.message}`);
      }
    });
    client.on('close', () => {
      if (conn.closed && this.conn !== conn) return;
      const wasConnected = (this.state === 'connected' || this.state === 'subscribing') && this.conn === conn;
      // Back-off starts over only after a connection that held (a broker that accepts and then drops us at once is not hammered).
      if (wasConnected && Date.now() - (this.connectedSince ?? 0) >= STABLE_MS) this.attempt = 0;
      conn.closed = true;
      client.end(true);
      if (this.stopping || this.conn !== conn) return;
      if (!connackSeen && !this.lastError) this.fail(`no CONNACK from ${this.url} within ${this.def.connectTimeoutMs} ms`, 'failed');
      else if (wasConnected && !this.lastErrorAtOrAfter(this.connectedSince ?? 0)) this.fail(`the connection to ${this.url} closed`);
      this.deps.logger.warn({ err: this.lastError }, 'bridge disconnected; reconnecting with back-off');
      this.scheduleReconnect();
    });
  }

  private lastErrorAtOrAfter(t: number): boolean {
    return this.lastErrorAt !== undefined && this.lastErrorAt >= t;
  }

  private fail(message: string, outcome?: 'refused' | 'failed'): void {
    this.lastError = message;
    this.lastErrorAt = Date.now();
    if (outcome) this.deps.bridgeMetrics.connects.inc({ bridge: this.name, outcome });
  }

  private subscribe(conn: Connection): void {
    const opts = this.def.protocolVersion === 5 ? { qos: this.def.qos, rh: 1 } : { qos: this.def.qos };
    const map = Object.fromEntries(this.def.topics.map((t) => [t, opts])) as Record<string, { qos: 0 | 1 | 2 }>;
    conn.client.subscribe(map, (err, granted) => {
      if (this.conn === conn && !conn.closed && this.state === 'subscribing') this.state = 'connected';
      if (err) { this.fail(`subscribe failed: ${err.message}`); return; }
      const refused = (granted ?? []).filter((g) => g.qos >= 0x80).map((g) => g.topic);
      if (refused.length) this.fail(`the broker refused the subscription to ${refused.join(', ')} (not authorized, or a bad filter)`);
    });
  }

  private scheduleReconnect(): void {
    if (this.stopping) return;
    this.state = 'waiting';
    this.connectedSince = undefined;
    const { initialMs, maxMs } = this.def.reconnect;
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this.nextAttemptAt = Date.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private onPublish(conn: Connection, packet: mqttPacket.IPublishPacket): void {
    // Stopping: not acknowledged, so the broker keeps it for the next start.
    if (this.stopping || conn.closed) return;
    const now = Date.now();
    const topic = packet.topic;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    this.counters.received++;
    this.lagCount++;
    const item: Item = { conn, qos: packet.qos, packetId: packet.messageId ?? 0, messageId: '', done: false };
    let receiveTime = now;
    let journal: Pending['journal'];
    if (packet.qos > 0) {
      conn.queue.push(item);
      const hash = messageHash(topic, payload);
      const entry = this.journal.get(item.packetId);
      const redelivery = entry !== undefined && entry.hash === hash && (packet.dup || entry.previousRun || !entry.acked);
      if (redelivery) {
        item.messageId = entry.messageId;
        receiveTime = entry.receiveTime;
        this.counters.redelivered++;
        this.deps.bridgeMetrics.messages.inc({ bridge: this.name, outcome: 'redelivered' });
      } else {
        item.messageId = generateMessageId(now);
      }
      journal = { packetId: item.packetId, hash, messageId: item.messageId, receiveTime };
      this.journal.assign(item.packetId, journal);
    } else {
      item.messageId = generateMessageId(now);
      this.counters.qos0++;
      this.deps.bridgeMetrics.messages.inc({ bridge: this.name, outcome: 'qos0' });
    }
    const userId = packet.properties?.userProperties?.id;
    const messageId = (Array.isArray(userId) ? userId[0] : userId) || item.messageId;
    this.chain = this.chain.then(() => this.mapper.map(topic)).then(
      (mapping: Mapping) => this.mapped(item, mapping, { topic, payload, receiveTime, messageId }, journal),
      (err: unknown) => this.mapped(item, { ok: false, reason: 'registry_error', detail: (err as Error).message }, { topic, payload, receiveTime, messageId }, journal),
    );
  }

  private mapped(item: Item, mapping: Mapping, m: { topic: string; payload: Buffer; receiveTime: number; messageId: string }, journal: Pending['journal']): void {
    if (!mapping.ok) {
      this.counters.refused++;
      this.lastRefusal = `${mapping.reason}: ${mapping.detail}`;
      this.deps.bridgeMetrics.refused.inc({ bridge: this.name, reason: mapping.reason });
      this.deps.bridgeMetrics.messages.inc({ bridge: this.name, outcome: 'refused' });
      this.complete(item);
      return;
    }
    const envelope: Envelope = {
      tenant: mapping.tenant, project: mapping.project, device: mapping.device, kind: mapping.kind,
      topic: m.topic, protocol: 'bridge', receiveTime: m.receiveTime, messageId: m.messageId, payload: m.payload,
    };
    this.pending.push({ item, envelope, journal });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.inflight++;
    void this.append(batch).finally(() => {
      this.inflight--;
      if (this.inflight === 0 && this.pending.length === 0) for (const w of this.idle.splice(0)) w();
    });
  }

  private async append(batch: Pending[]): Promise<void> {
    const { log, metrics, bridgeMetrics } = this.deps;
    try {
      await this.journal.persist(batch.flatMap((p) => (p.journal ? [p.journal] : [])));
      // Past log.maxLagRecords the bridge holds its batch (the broker's in-flight window then stops it) instead of failing.
      for (let waited = 0; log.pressure().overLimit && !log.pressure().unavailable && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
      const end = metrics.logAppendSeconds.startTimer();
      await log.append(batch.map((p) => p.envelope));
      end();
    } catch (err) {
      this.counters.appendFailures++;
      bridgeMetrics.appendFailures.inc({ bridge: this.name });
      this.fail(`the log refused a batch of ${batch.length} (${(err as Error).message}); reconnecting so the broker redelivers it`);
      this.deps.logger.warn({ err }, 'bridge batch not logged; dropping the connection so the external broker redelivers it');
      // Nothing of the batch may be acknowledged: close the connections it came in on first.
      for (const p of batch) if (!p.item.conn.closed) { p.item.conn.closed = true; p.item.conn.client.end(true); }
      for (const p of batch) this.complete(p.item);
      return;
    }
    this.counters.logged += batch.length;
    bridgeMetrics.messages.inc({ bridge: this.name, outcome: 'logged' }, batch.length);
    const perTenant = new Map<string, number>();
    for (const p of batch) perTenant.set(p.envelope.tenant, (perTenant.get(p.envelope.tenant) ?? 0) + 1);
    for (const [tenant, n] of perTenant) metrics.messages.inc({ tenant, protocol: 'bridge', outcome: 'accepted' }, n);
    for (const p of batch) this.complete(p.item);
    try { this.deps.onDurable?.(batch.map((p) => p.envelope)); } catch (err) { this.deps.logger.warn({ err }, 'routing bridged messages to subscribers failed'); }
  }

  /** Marks a message done and acknowledges, in arrival order, what is done at the head of its connection's queue. */
  private complete(item: Item): void {
    item.done = true;
    this.lagCount--;
    if (item.qos === 0) return;
    const conn = item.conn;
    while (conn.queue.length > 0 && conn.queue[0].done) {
      const head = conn.queue.shift()!;
      if (conn.closed || conn.stream.destroyed) continue;
      const ack = mqttPacket.generate({ cmd: head.qos === 1 ? 'puback' : 'pubrec', messageId: head.packetId } as mqttPacket.Packet, { protocolVersion: this.def.protocolVersion });
      conn.stream.write(ack);
      this.journal.acked(head.packetId, head.messageId);
      this.counters.acknowledged++;
    }
    if (this.lagCount === 0 && this.inflight === 0) for (const w of this.idle.splice(0)) w();
  }
}
