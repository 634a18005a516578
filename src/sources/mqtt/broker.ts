/**
 * @module The broker core, shared by every connection: authentication, sessions (start,
 * resume, takeover, expiry), subscriptions per tenant (tenants never see each other's
 * topics), routing after the durable append, retained messages, wills and log backpressure.
 */
import type { Admission } from '../admission.js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { QoS } from 'mqtt-packet';
import type { Config } from '../../config/schema.js';
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Log } from '../../log/log.js';
import type { Metrics } from '../../observability/metrics.js';
import type { DeviceAuth } from '../../registry/device-auth.js';
import type { TemplateRegistry } from '../../templates/index.js';
import { Connection } from './connection.js';
import { acceptPublish, type PublishWaiter } from './accept.js';
import { IngestBatcher } from './ingest.js';
import type { RoutedMessage } from './message.js';
import { MqttMetrics } from './metrics.js';
import { RetainedStore } from './retained.js';
import { Session, type Outgoing } from './session.js';
import { SessionStore } from './session-store.js';
import { SubscriptionTree, type SubOptions } from './subscriptions.js';
import { classifyPublish, maySubscribe, parseFilter, topicMatches, type ClientIdentity, type ParsedFilter, type PublishRoute } from './topics.js';
import { scheduleWill } from './will.js';
import { startMqttCluster, type MqttCluster, type MqttClusterOptions } from './cluster/index.js';
import type { Quotas } from '../quota.js';

/** Authenticates application clients (API keys); arrives with the tenancy work. Returns undefined for "not an application credential". */
export interface AppAuthenticator {
  authenticate(username: string | undefined, password: Buffer | undefined): Promise<{ tenant: string; project?: string; name: string } | undefined>;
}

export type { PublishWaiter };

export interface BrokerOptions {
  config: Config['mqtt'];
  dataDir: string;
  log: Log;
  auth: DeviceAuth;
  metrics: Metrics;
  logger: Logger;
  /** Application clients (API keys) that may subscribe across their tenant. */
  apps?: AppAuthenticator;
  /** Snapshots are refused first while processing lags (v5 PUBACK 0x97; 3.1.1 acknowledged and dropped), counted. */
  admission?: Admission;
  /** Tenant quotas (rate, payload size): device data over them is refused (v5 0x97; 3.1.1 acknowledged and dropped), counted (src/sources/quota.ts). */
  quotas?: Quotas;
  /** Topic templates: other topic layouts taken as device data, from devices for themselves and gateways (API keys) for their tenant (accept.ts). */
  templates?: TemplateRegistry;
  /** Cluster mode (log.backend nats://…): deliveries, shared subscriptions and sessions across nodes (cluster/index.ts). */
  cluster?: MqttClusterOptions;
}

/** An in-process subscriber (command replies, live fan-out): called for every routed message matching its filter. */
export type LocalHandler = (msg: RoutedMessage, tenant: string) => void;

export class Broker {
  readonly config: Config['mqtt'];
  readonly logger: Logger;
  readonly metrics: MqttMetrics;
  readonly connections = new Set<Connection>();
  readonly sessions = new Map<string, Session>();
  readonly retained: RetainedStore;
  readonly ingest: IngestBatcher;
  paused = false;
  stopping = false;
  /** Set in cluster mode once open() connected it. */
  cluster?: MqttCluster;
  private readonly trees = new Map<string, SubscriptionTree>();
  private readonly store: SessionStore;
  private readonly local: Array<{ tenant: string; filter: string; handler: LocalHandler }> = [];
  private pausedSince = 0;
  private lastCompaction = Date.now();
  private sweepTimer?: NodeJS.Timeout;
  private pressureTimer?: NodeJS.Timeout;

  constructor(readonly opts: BrokerOptions) {
    this.config = opts.config;
    this.logger = opts.logger;
    this.metrics = new MqttMetrics(opts.metrics);
    const dir = join(opts.dataDir, 'mqtt');
    this.retained = new RetainedStore(dir);
    this.store = new SessionStore(dir);
    this.ingest = new IngestBatcher(opts.log, 4096, () => this.checkPressure(), opts.metrics.registry);
  }

  /** Loads retained messages and persistent sessions from <dataDir>/mqtt/. */
  async open(): Promise<void> {
    try {
      await mkdir(join(this.opts.dataDir, 'mqtt'), { recursive: true });
    } catch (err) {
      throw new FluxgateError('DATA_DIR_UNUSABLE', `cannot create ${join(this.opts.dataDir, 'mqtt')}: ${(err as Error).message}`, { cause: err });
    }
    await this.retained.open();
    const restored = await this.store.open();
    // In a cluster the session bucket is the record of sessions: a restarted node does not revive its own copies.
    if (this.opts.cluster) this.cluster = await startMqttCluster(this, this.opts.cluster);
    else for (const s of restored) {
      this.sessions.set(s.key, s);
      for (const [raw, o] of s.subscriptions) {
        const parsed = parseFilter(raw);
        if (parsed) this.tree(s.tenant).add(s.key, parsed, o);
      }
      this.scheduleExpiry(s);
    }
    const every = Math.min(1000, Math.max(50, Math.floor(this.config.connectTimeoutMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  handle(stream: Duplex): void {
    const conn = new Connection(this, stream, this.connections.size >= this.config.maxConnections);
    this.connections.add(conn);
    this.metrics.connections.inc();
    if (this.paused) conn.updateReading();
  }

  /** username = device token; or username = device id and password = token; else an application credential. */
  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<ClientIdentity> {
    const pw = password && password.length > 0 ? password.toString('utf8') : undefined;
    try {
      const d = pw !== undefined ? await this.opts.auth.authenticate(pw, username) : await this.opts.auth.authenticate(username);
      return { kind: 'device', tenant: d.tenant, project: d.project, id: d.device };
    } catch (err) {
      if (!this.opts.apps || !isFluxgateError(err, 'UNAUTHENTICATED')) throw err;
      const app = await this.opts.apps.authenticate(username, password);
      if (!app) throw err;
      return { kind: 'app', tenant: app.tenant, project: app.project ?? '', id: app.name };
    }
  }

  private tree(tenant: string): SubscriptionTree {
    let t = this.trees.get(tenant);
    if (!t) this.trees.set(tenant, (t = new SubscriptionTree()));
    return t;
  }

  /** Sessions are keyed by tenant and identity too: one device can never resume another's session. */
  sessionKey(identity: ClientIdentity, clientId: string): string {
    return `${identity.tenant}\u0000${identity.kind}:${identity.id}\u0000${clientId}`;
  }

  /** Cluster mode, before attach: takes the client id over from the node holding it, bringing a persistent session here. */
  async claim(identity: ClientIdentity, clientId: string, cleanStart: boolean): Promise<void> {
    await this.cluster?.claim(this.sessionKey(identity, clientId), identity, clientId, cleanStart);
  }

  /** Cluster mode: a session handed over by (or rebuilt from) another node joins this broker, offline until attach. */
  adopt(s: Session): void {
    const old = this.sessions.get(s.key);
    if (old) this.endSession(old, false);
    this.sessions.set(s.key, s);
    for (const [raw, o] of s.subscriptions) {
      const parsed = parseFilter(raw);
      if (parsed) this.addSubscription(s, parsed, o);
    }
    this.scheduleExpiry(s);
  }

  private addSubscription(s: Session, parsed: ParsedFilter, o: SubOptions): boolean {
    // In a cluster a shared subscription is a NATS queue group, not a local tree entry (cluster/shares.ts).
    if (parsed.group !== undefined && this.cluster) return this.cluster.shares.add(s, parsed, o);
    return this.tree(s.tenant).add(s.key, parsed, o);
  }

  private removeSubscription(s: Session, parsed: ParsedFilter): void {
    if (parsed.group !== undefined && this.cluster) this.cluster.shares.remove(s, parsed);
    else this.trees.get(s.tenant)?.remove(s.key, parsed);
  }

  /** Starts or resumes the session of (tenant, identity, client id); an existing connection is taken over [MQTT-3.1.4-3]. */
  attach(conn: Connection, identity: ClientIdentity, clientId: string, cleanStart: boolean, expirySeconds: number): { sessionPresent: boolean } {
    const key = this.sessionKey(identity, clientId);
    let session = this.sessions.get(key);
    if (session?.conn) (session.conn as Connection).close(0x8e, 'takeover');
    session = this.sessions.get(key);
    if (session && cleanStart) this.endSession(session, true);
    let sessionPresent = false;
    if (session && !cleanStart) {
      sessionPresent = true;
      // [MQTT-3.1.3-9] a resumed session cancels a delayed will.
      session.clearTimers();
    } else {
      session = new Session(key, clientId, identity);
      this.sessions.set(key, session);
    }
    session.expirySeconds = expirySeconds;
    session.conn = conn;
    session.disconnectedAt = undefined;
    conn.session = session;
    conn.identity = identity;
    if (session.persistent) this.store.saveSession(session);
    else if (session.stored) this.store.deleteSession(session);
    if (session.persistent) this.cluster?.changed(session);
    return { sessionPresent };
  }

  /** The connection is gone: publish or schedule the will, keep or end the session. */
  detach(conn: Connection, withWill: boolean): void {
    if (this.connections.delete(conn)) this.metrics.connections.dec();
    const session = conn.session;
    if (!session || session.conn !== conn) return;
    session.conn = undefined;
    session.disconnectedAt = Date.now();
    if (withWill && conn.will) scheduleWill(this, session, conn.will);
    if (!session.persistent) {
      this.endSession(session, true);
      return;
    }
    this.store.saveOffline(session);
    this.cluster?.changed(session);
    this.scheduleExpiry(session);
  }

  private scheduleExpiry(s: Session): void {
    if (s.expiryTimer) clearTimeout(s.expiryTimer);
    const left = (s.disconnectedAt ?? Date.now()) + s.expirySeconds * 1000 - Date.now();
    s.expiryTimer = setTimeout(() => {
      if (!s.conn && this.sessions.get(s.key) === s) this.endSession(s, true);
    }, Math.max(0, Math.min(left, 2 ** 31 - 1)));
    s.expiryTimer.unref();
  }

  /** Ends a session: its subscriptions go; a will still pending is published at session end [MQTT-3.1.3-9]. */
  endSession(s: Session, fireWill: boolean): void {
    const pendingWill = s.pendingWill;
    s.clearTimers();
    if (fireWill) pendingWill?.();
    for (const raw of s.subscriptions.keys()) {
      const parsed = parseFilter(raw);
      if (parsed) this.removeSubscription(s, parsed);
    }
    s.subscriptions.clear();
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    this.store.deleteSession(s);
    this.cluster?.ended(s);
  }

  subscribe(s: Session, raw: string, parsed: ParsedFilter, opts: SubOptions): 'new' | 'replaced' | 'forbidden' {
    if (!maySubscribe(s.identity, parsed.filter)) return 'forbidden';
    s.subscriptions.set(raw, opts);
    const isNew = this.addSubscription(s, parsed, opts);
    if (s.persistent) this.store.saveSession(s);
    if (s.persistent) this.cluster?.changed(s);
    return isNew ? 'new' : 'replaced';
  }

  unsubscribe(s: Session, raw: string, parsed: ParsedFilter): boolean {
    if (!s.subscriptions.delete(raw)) return false;
    this.removeSubscription(s, parsed);
    if (s.persistent) this.store.saveSession(s);
    if (s.persistent) this.cluster?.changed(s);
    return true;
  }

  /** Sends the retained messages matching a new subscription, with RETAIN set [MQTT-3.3.1-8]. */
  sendRetained(s: Session, filter: string, qos: QoS, subId: number | undefined): void {
    for (const msg of this.retained.match(s.tenant, filter)) {
      this.deliver(s, { msg, qos: Math.min(msg.qos, qos) as QoS, retain: true, subIds: subId !== undefined ? [subId] : undefined, packetId: 0, released: false });
    }
  }

  /** Takes a client's (or a will's) PUBLISH: logged and then routed, only routed, or refused (accept.ts). */
  accept(who: ClientIdentity, msg: RoutedMessage, messageId: string | undefined, waiter: PublishWaiter, route: PublishRoute = classifyPublish(who, msg.topic)): void {
    acceptPublish(this, who, msg, messageId, waiter, route);
  }

  /** Delivers a message to every matching subscription of its tenant, on every node in a cluster (cluster/index.ts). */
  route(tenant: string, msg: RoutedMessage): void {
    if (this.cluster) return this.cluster.route(tenant, msg);
    this.routeLocal(tenant, msg);
  }

  /** Delivers a message to every matching subscription of its tenant on this node (one copy per session, §4.5). */
  routeLocal(tenant: string, msg: RoutedMessage): void {
    if (msg.retain) this.retained.set(tenant, msg);
    for (const l of this.local) if (l.tenant === tenant && topicMatches(l.filter, msg.topic)) l.handler(msg, tenant);
    const tree = this.trees.get(tenant);
    if (!tree || tree.count === 0) return;
    const targets = new Map<string, { qos: QoS; rap: boolean; ids?: number[] }>();
    tree.match(msg.topic, (key, o) => {
      // [MQTT-3.8.3-3] No Local: not back to the publisher.
      if (o.nl && key === msg.origin) return;
      const t = targets.get(key);
      if (!t) targets.set(key, { qos: o.qos, rap: o.rap, ids: o.id !== undefined ? [o.id] : undefined });
      else {
        if (o.qos > t.qos) t.qos = o.qos;
        t.rap ||= o.rap;
        if (o.id !== undefined) (t.ids ??= []).push(o.id);
      }
    }, (key) => this.sessions.get(key)?.conn !== undefined);
    for (const [key, t] of targets) {
      const s = this.sessions.get(key);
      if (!s) continue;
      // [MQTT-3.3.1-9] RETAIN is cleared when forwarding, unless Retain As Published [MQTT-3.3.1-13].
      this.deliver(s, { msg, qos: Math.min(msg.qos, t.qos) as QoS, retain: t.rap && msg.retain, subIds: t.ids, packetId: 0, released: false });
    }
  }

  /** To the live connection, or into an offline persistent session's bounded queue (QoS 1/2 only). */
  deliver(s: Session, out: Outgoing): void {
    if (s.conn) return s.conn.deliver(out);
    if (!s.persistent || out.qos === 0) return void this.metrics.dropped.labels(s.tenant, 'offline_qos0').inc();
    if (s.queue.length >= this.config.maxOfflineMessages) return void this.metrics.dropped.labels(s.tenant, 'offline_queue_full').inc();
    s.queue.push(out);
    this.store.saveQueued(s, out);
  }

  /**
   * Publishes a message from the node itself (a device command, for example); it is routed, not
   * logged. `ifSubscribed` (HTTP telemetry forwarded to MQTT): in a cluster, other nodes get it
   * only when one of them holds a subscription of the tenant (cluster/index.ts).
   */
  publish(tenant: string, msg: { topic: string; payload: Buffer | string; qos?: QoS; retain?: boolean; properties?: RoutedMessage['properties'] }, opts: { ifSubscribed?: boolean } = {}): void {
    const payload = typeof msg.payload === 'string' ? Buffer.from(msg.payload) : msg.payload;
    const routed: RoutedMessage = { topic: msg.topic, payload, qos: msg.qos ?? 1, retain: msg.retain ?? false, properties: msg.properties };
    if (this.cluster) this.cluster.route(tenant, routed, opts.ifSubscribed);
    else this.routeLocal(tenant, routed);
  }

  /** Registers an in-process subscriber; returns the function that removes it. */
  onMessage(tenant: string, filter: string, handler: LocalHandler): () => void {
    const entry = { tenant, filter, handler };
    this.local.push(entry);
    return () => {
      const i = this.local.indexOf(entry);
      if (i >= 0) this.local.splice(i, 1);
    };
  }

  /** Stops reading every socket while the log is over its limit (promise 5), and counts the time. */
  checkPressure(): void {
    const over = this.opts.log.pressure().overLimit;
    if (over === this.paused) return;
    this.paused = over;
    const now = Date.now();
    if (over) {
      this.pausedSince = now;
      this.pressureTimer = setInterval(() => this.checkPressure(), 20);
      this.pressureTimer.unref();
    } else {
      clearInterval(this.pressureTimer);
      this.metrics.backpressureSeconds.inc((now - this.pausedSince) / 1000);
    }
    for (const c of this.connections) {
      if (!over) c.lastSeen = now;
      c.updateReading();
    }
  }

  /** Closes connections without CONNECT in time and those silent past 1.5 × keepalive [MQTT-3.1.2-24]. */
  private sweep(): void {
    const now = Date.now();
    if (now - this.lastCompaction > 10_000) {
      this.lastCompaction = now;
      const fail = (err: unknown) => this.logger.error({ err }, 'mqtt state compaction failed');
      this.retained.compact().catch(fail);
      this.store.compact(this.sessions.values()).catch(fail);
    }
    for (const c of this.connections) {
      if (c.state === 'new' || c.state === 'connecting') {
        if (now - c.createdAt > this.config.connectTimeoutMs) c.close(undefined, 'connect_timeout');
      } else if (c.state === 'open' && !this.paused && c.keepaliveMs > 0 && now - c.lastSeen > c.keepaliveMs * 1.5) {
        c.close(0x8d, 'keepalive');
      }
    }
  }

  /** Stops reading, waits for in-flight appends (their acks go out), then DISCONNECT 0x8B to v5 clients. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    this.paused = true;
    clearInterval(this.sweepTimer);
    clearInterval(this.pressureTimer);
    for (const c of this.connections) c.updateReading();
    await this.ingest.drain();
    for (const c of [...this.connections]) c.close(0x8b, 'shutdown');
    for (const s of this.sessions.values()) s.clearTimers();
    await this.cluster?.close();
    await Promise.all([this.retained.close(), this.store.close()]);
  }
}
