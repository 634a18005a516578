/**
 * @module MQTT across cluster nodes (log.backend nats://…): deliveries, shared subscriptions,
 * session takeover and persistent-session resume on another node, over NATS JetStream. With the
 * embedded log none of this runs and the broker routes in-process as before.
 *
 * Deliveries. Every routed message (a device publish after its durable append, a command, an
 * application's publish, a will, HTTP telemetry forwarded to MQTT) is published once by the node
 * that routed it to the stream `FLUXGATE_MQTT`, subject `fluxgate.mqtt.r.<tenant>` (topic,
 * payload, QoS, retain, v5 properties, publisher session and origin node in one Buffer, wire.ts).
 * The origin delivers to its own subscribers when JetStream acknowledged the publish (so every
 * local delivery has a stream sequence); every other node reads the stream with one ordered
 * consumer from the position it started at and delivers each message to its local subscribers,
 * skipping its own (never twice, never back to the origin). If the publish fails (NATS down)
 * the origin still delivers locally and the other nodes miss it (counted in the log).
 * Order: one stream, one reader per node, so a subscriber sees each publisher's messages in the
 * order they were routed. HTTP telemetry forwarded to MQTT (`ifSubscribed`) is published only
 * when some other node holds a subscription in its tenant, or a persistent session here does:
 * each node lists its tenants with subscriptions in its `fgmqtt_nodes` entry (written every
 * second) and follows the others', so an HTTP-only tenant costs nothing here.
 *
 * Shared subscriptions: shares.ts (a NATS queue group per tenant, group and filter).
 *
 * Retained messages: every node applies the retained messages it routes or reads from the
 * stream to its own retained store (<dataDir>/mqtt/retained.jsonl), so all running nodes hold
 * the same set; a node that starts (new, or back after being down) first loads them from the
 * bucket `fgmqtt_retained` (retained.ts).
 *
 * Session takeover and handover. The bucket `fgmqtt_sessions` (kv.ts) holds one entry per live
 * session: its owner node (a random instance id per process), subscriptions and expiry. A
 * CONNECT on node B for a client id that another node A holds asks A over NATS
 * (`fluxgate.mqtt.node.<A>.takeover`, request/reply) before CONNACK: A closes its connection
 * (v5 DISCONNECT 0x8E, will rules as on one node) and, for a persistent session resumed without
 * Clean Start, hands over its subscriptions and backlog (in flight and queued) and the stream
 * position from which B replays what A had not delivered yet; B then owns the entry. B writes
 * the entry only if nobody wrote it since B read it; otherwise another node claimed the same
 * client id at the same moment, and B asks that one in turn (which answers once its own CONNECT
 * has attached), so a client id never stays connected on two nodes.
 *
 * Persistent sessions when their node dies (SIGKILL). Each node writes to the bucket
 * `fgmqtt_nodes`, every second, its *watermark*: the lowest stream sequence any of its persistent
 * sessions still needs — the oldest QoS 1/2 message in flight or queued for them (also for
 * offline sessions), else the next message it has not read. When B finds the owner of a session
 * gone (NATS answers "no responders" to the takeover request), it rebuilds the session from its
 * entry and replays the stream of the session's tenant from the dead node's watermark up to
 * where B's own reader is (later messages reach it live), keeping the QoS 1/2 messages matching
 * its subscriptions, up to mqtt.maxOfflineMessages (more are dropped, counted as
 * `offline_queue_full`). So QoS 1/2 messages for such a session are not lost while its node is
 * dead; some may come twice (what was acknowledged in the last second before the death) — at
 * least once, as QoS 1 allows. The stream keeps messages for min(mqtt.maxSessionExpirySeconds,
 * 24 h) and at most 1 GiB (oldest dropped first): a session whose node died longer ago than the
 * stream reaches back resumes with what is left. Not covered: QoS 2 exchanges half-done at the
 * death (the new node does not know their packet ids), messages delivered through shared
 * subscriptions (shares.ts). Entries of sessions whose node died and whose client never comes
 * back expire from the buckets mqtt.maxSessionExpirySeconds + 2 days after their last write;
 * a node rewrites the entries of its own sessions every third of that.
 *
 * Cost of a node death: every persistent session of the dead node that comes back replays its
 * tenant's part of the stream from the watermark; sessions resuming from the same position share
 * one read of it (replay.ts), so a reconnect storm reads the range about once per tenant.
 *
 * Why not a durable consumer per offline session: with hundreds of thousands of persistent
 * device sessions the server would hold as many consumers, and a consumer cannot be created by
 * a node that is already dead; one reader per node plus a per-node watermark costs one KV write
 * per node per second whatever the number of sessions.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { QoS } from 'mqtt-packet';
import { FluxgateError } from '../../../core/errors.js';
import { encodeToken } from '../../../log/jetstream/index.js';
import type { Broker } from '../broker.js';
import type { Connection } from '../connection.js';
import type { RoutedMessage } from '../message.js';
import { Session, type Outgoing } from '../session.js';
import { parseFilter, topicMatches, type ClientIdentity, type ParsedFilter } from '../topics.js';
import type { SubOptions } from '../subscriptions.js';
import { Bucket, isWrongLastSequence } from './kv.js';
import { loadRetained, saveRetained, type RetainedEntry } from './retained.js';
import { StreamPublisher } from './publisher.js';
import { ReplayReader } from './replay.js';
import { SharedSubscriptions } from './shares.js';
import { decodeMessage, encodeMessage, outgoingFromWire, outgoingToWire, type SessionHandover, type SessionRecord } from './wire.js';

export interface MqttClusterOptions {
  /** NATS server URL(s), the log's. */
  servers: string[];
  /** This node's name (cluster.nodeId), shown in session entries. */
  nodeId: string;
  /** Replicas of the stream and buckets when this node creates them (log.replicas). */
  replicas: number;
}

const STREAM = 'FLUXGATE_MQTT';
const PREFIX = 'fluxgate.mqtt.r';
const MAX_STREAM_BYTES = 1024 ** 3;
const MAX_STREAM_AGE_MS = 24 * 3600 * 1000;
const WATERMARK_EVERY_MS = 1000;
const TAKEOVER_TIMEOUT_MS = 2000;

/** A node's entry in `fgmqtt_nodes`: its watermark, and the tenants it holds subscriptions of (interest). */
interface NodeRecord { node: string; w: number; at: number; t?: string[] }
type TakeoverReply = { none: true } | { done: true; handover?: SessionHandover };

function subjectOf(tenant: string): string {
  return `${PREFIX}.${encodeToken(tenant)}`;
}

function keyOf(sessionKey: string): string {
  return createHash('sha1').update(sessionKey).digest('hex');
}

export class MqttCluster {
  readonly instance = randomUUID().replace(/-/g, '');
  readonly shares: SharedSubscriptions;
  /** Stream sequence of the last message the node's reader handled. */
  private lastSeq = 0;
  /** Highest sequence JetStream gave one of this node's own publishes. */
  private lastOwnSeq = 0;
  /** Own publishes not yet acknowledged → a lower bound of their sequence. */
  private readonly pendingOwn = new Map<number, number>();
  private ownId = 0;
  /** Stream sequence of each message delivered here (weakly held: it goes with the message). */
  private readonly seqOf = new WeakMap<RoutedMessage, number>();
  /** When this node last wrote each session's entry (refreshEntries). */
  private readonly writtenAt = new WeakMap<Session, number>();
  /** CONNECTs of this node waiting for their claim (client id takeover) to finish, by session key. */
  private readonly claiming = new Map<string, Promise<void>>();
  /** Sessions handed to another node: their end must not delete the entry the new owner wrote. */
  private readonly moved = new WeakSet<Session>();
  private readonly sessionsKv: Bucket<SessionRecord>;
  private readonly nodesKv: Bucket<NodeRecord>;
  private readonly retainedKv: Bucket<RetainedEntry>;
  private readonly publisher: StreamPublisher;
  readonly replays: ReplayReader;
  private reader?: ConsumerMessages;
  private takeoverSub?: Subscription;
  private timer?: NodeJS.Timeout;
  private lastWatermark = -1;
  private lastWatermarkAt = 0;
  private lastInterest = '';
  /** Tenants with subscriptions, per node (dead nodes' entries included: their sessions may come back). */
  private readonly interest = new Map<string, Set<string>>();
  private interestReader?: ConsumerMessages;
  /** Not following the node entries (the watch failed): every message is published. */
  private interestUnknown = false;
  /** Tenants of this node's persistent sessions with subscriptions, as of the last tick. */
  private persistentTenants = new Set<string>();
  private closed = false;
  /** Counters for /readyz and tests. */
  readonly stats = { published: 0, publishFailed: 0, received: 0, takeovers: 0, handovers: 0, recovered: 0, replayed: 0, notNeeded: 0 };

  private constructor(private readonly broker: Broker, private readonly opts: MqttClusterOptions, private readonly nc: NatsConnection, private readonly js: JetStreamClient, private readonly jsm: JetStreamManager) {
    this.sessionsKv = new Bucket(js, jsm, 'fgmqtt_sessions');
    this.nodesKv = new Bucket(js, jsm, 'fgmqtt_nodes');
    this.retainedKv = new Bucket(js, jsm, 'fgmqtt_retained');
    this.shares = new SharedSubscriptions(nc, broker, subjectOf);
    this.publisher = new StreamPublisher(nc, STREAM, 5000);
    this.replays = new ReplayReader(js, jsm, STREAM, subjectOf);
  }

  static async start(broker: Broker, opts: MqttClusterOptions): Promise<MqttCluster> {
    const nc = await connect({
      servers: opts.servers, name: `fluxgate-mqtt-${opts.nodeId}`, timeout: 5000,
      maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100, pingInterval: 5000, maxPingOut: 3, noAsyncTraces: true,
    }).catch((err: unknown) => {
      throw new FluxgateError('LOG_UNAVAILABLE', `MQTT across cluster nodes cannot connect to NATS at ${opts.servers.join(',')} (the log.backend servers): ${(err as Error).message}`, { cause: err });
    });
    try {
      const c = new MqttCluster(broker, opts, nc, jetstream(nc, { timeout: 5000 }), await jetstreamManager(nc, { timeout: 5000 }));
      await c.open();
      return c;
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw new FluxgateError('LOG_UNAVAILABLE', `MQTT across cluster nodes cannot start on NATS at ${opts.servers.join(',')} (the log.backend servers): ${(err as Error).message}`, { cause: err });
    }
  }

  private async open(): Promise<void> {
    const replicas = this.opts.replicas;
    const maxAge = Math.min(MAX_STREAM_AGE_MS, Math.max(60_000, this.broker.config.maxSessionExpirySeconds * 1000));
    const info = await this.jsm.streams.info(STREAM).catch(() => undefined);
    if (!info) {
      await this.jsm.streams.add({
        name: STREAM, subjects: [`${PREFIX}.>`], retention: RetentionPolicy.Limits, storage: StorageType.File, discard: DiscardPolicy.Old,
        max_age: nanos(maxAge), max_bytes: MAX_STREAM_BYTES, num_replicas: replicas, allow_direct: true, duplicate_window: nanos(60_000),
      }).catch((err: unknown) => { if (!/already in use|exists/i.test(String((err as Error)?.message))) throw err; });
    }
    // Entries outlive the longest session expiry by two days, then go by themselves (those of a
    // dead node's sessions that never come back); a node rewrites its live ones well before.
    const keep = this.entryMaxAgeMs;
    await this.sessionsKv.ensure(replicas, keep);
    await this.nodesKv.ensure(replicas, keep);
    await this.retainedKv.ensure(replicas);
    await this.watchInterest();
    const state = (await this.jsm.streams.info(STREAM)).state;
    this.lastSeq = state.last_seq;
    // The bucket first, then the stream from the position taken before it: nothing retained is applied older over newer.
    const retained = await loadRetained(this.js, this.jsm, this.retainedKv, this.broker.retained);
    // One ordered reader from the next message on: what was routed before this node started is not delivered to it.
    await this.startReader();
    void this.keepReading();
    this.takeoverSub = this.nc.subscribe(`fluxgate.mqtt.node.${this.instance}.takeover`, { callback: (err, m) => { if (!err) this.onTakeover(m); } });
    await this.nc.flush();
    await this.writeWatermark(true);
    this.timer = setInterval(() => {
      this.writeWatermark(false).catch(() => undefined);
      this.refreshEntries(Date.now());
    }, WATERMARK_EVERY_MS);
    this.timer.unref();
    this.broker.logger.info({ node: this.opts.nodeId, instance: this.instance, stream: STREAM, from: state.last_seq + 1, retained }, 'mqtt cluster delivery started');
  }

  private async startReader(): Promise<void> {
    const consumer = await this.js.consumers.get(STREAM, { filter_subjects: `${PREFIX}.>`, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.lastSeq + 1 });
    this.reader = await consumer.consume({ max_messages: 1000 });
  }

  /** The ordered reader survives reconnects by itself; should it end anyway, a new one goes on after the last message read. */
  private async keepReading(): Promise<void> {
    while (!this.closed) {
      if (this.reader) await this.read(this.reader);
      this.reader = undefined;
      if (this.closed) return;
      await new Promise((r) => setTimeout(r, 500));
      if (this.closed) return;
      await this.startReader().catch((err: unknown) => this.broker.logger.warn({ err }, 'mqtt cluster reader cannot restart yet; retrying'));
    }
  }

  private async read(reader: ConsumerMessages): Promise<void> {
    try {
      for await (const m of reader) {
        this.lastSeq = m.seq;
        let d;
        try {
          d = decodeMessage(m.data);
        } catch (err) {
          this.broker.logger.warn({ err, subject: m.subject, seq: m.seq }, 'ignoring a message on the mqtt cluster stream that Fluxgate did not write');
          continue;
        }
        if (d.origin === this.instance) continue;
        this.stats.received++;
        this.seqOf.set(d.msg, m.seq);
        this.broker.routeLocal(d.tenant, d.msg);
      }
    } catch (err) {
      if (!this.closed) this.broker.logger.warn({ err }, 'mqtt cluster reader stopped; starting a new one');
    }
  }

  /**
   * Routes a message cluster-wide: published once, delivered here once JetStream has it (see the
   * module comment). `ifSubscribed`: a copy that only matters to subscribers (HTTP telemetry
   * forwarded to MQTT) stays on this node when no node holds a subscription of the tenant.
   */
  route(tenant: string, msg: RoutedMessage, ifSubscribed = false): void {
    if (ifSubscribed && !this.interested(tenant)) {
      this.stats.notNeeded++;
      return this.broker.routeLocal(tenant, msg);
    }
    const id = ++this.ownId;
    this.pendingOwn.set(id, this.lastSeq + 1);
    let data: Buffer;
    try {
      data = encodeMessage(this.instance, tenant, msg);
    } catch (err) {
      this.pendingOwn.delete(id);
      this.broker.logger.warn({ err, topic: msg.topic }, 'mqtt message cannot be encoded for the cluster; delivered on this node only');
      return this.broker.routeLocal(tenant, msg);
    }
    this.publisher.publish(subjectOf(tenant), data, (err, seq) => {
      this.pendingOwn.delete(id);
      if (err) {
        this.stats.publishFailed++;
        this.broker.logger.warn({ err, tenant, topic: msg.topic }, 'mqtt message not published to the cluster; delivered on this node only');
      } else {
        this.stats.published++;
        this.seqOf.set(msg, seq);
        if (seq > this.lastOwnSeq) this.lastOwnSeq = seq;
        if (msg.retain) saveRetained(this.retainedKv, tenant, msg).catch((e: unknown) => this.broker.logger.warn({ err: e, topic: msg.topic }, 'retained message not written to the cluster bucket; nodes started later miss it'));
      }
      this.broker.routeLocal(tenant, msg);
    });
  }

  /** The lowest stream sequence a persistent session on this node still needs (module comment). */
  watermark(): number {
    let w = this.lastSeq + 1;
    for (const b of this.pendingOwn.values()) if (b < w) w = b;
    for (const s of this.broker.sessions.values()) {
      if (!s.persistent || this.moved.has(s)) continue;
      for (const o of s.inflight.values()) w = this.lower(w, o);
      for (const o of s.queue) w = this.lower(w, o);
    }
    return w;
  }

  private lower(w: number, o: Outgoing): number {
    if (o.qos === 0) return w;
    const seq = this.seqOf.get(o.msg);
    return seq !== undefined && seq < w ? seq : w;
  }

  private async writeWatermark(force: boolean): Promise<void> {
    if (this.closed && !force) return;
    const w = this.watermark();
    const t = this.localTenants();
    this.persistentTenants = new Set([...this.broker.sessions.values()].filter((s) => s.persistent && s.subscriptions.size > 0).map((s) => s.tenant));
    const joined = t.join('\u0000');
    const now = Date.now();
    if (!force && w === this.lastWatermark && joined === this.lastInterest && now - this.lastWatermarkAt < 10_000) return;
    await this.nodesKv.put(this.instance, { node: this.opts.nodeId, w, at: now, t });
    this.lastWatermark = w;
    this.lastInterest = joined;
    this.lastWatermarkAt = now;
  }

  /** Tenants of this node's sessions that hold subscriptions (offline persistent ones too). */
  private localTenants(): string[] {
    const t = new Set<string>();
    for (const s of this.broker.sessions.values()) if (s.subscriptions.size > 0 && !this.moved.has(s)) t.add(s.tenant);
    return [...t].sort();
  }

  /**
   * Whether a copy of a message of `tenant` is needed in the stream: another node holds a
   * subscription of the tenant (as the nodes last wrote, about a second behind), or a persistent
   * session here does (should this node die, its replay reads the stream). Subscribers on this
   * node get the message from routeLocal either way.
   */
  interested(tenant: string): boolean {
    if (this.interestUnknown || this.persistentTenants.has(tenant)) return true;
    for (const [node, tenants] of this.interest) if (node !== this.instance && tenants.has(tenant)) return true;
    return false;
  }

  /** Follows every node's entry in `fgmqtt_nodes` (the last one of each, then every change). */
  private async watchInterest(): Promise<void> {
    const consumer = await this.js.consumers.get(this.nodesKv.stream, { deliver_policy: DeliverPolicy.LastPerSubject });
    this.interestReader = await consumer.consume({ max_messages: 100 });
    void (async () => {
      try {
        for await (const m of this.interestReader!) {
          const node = m.subject.slice(m.subject.lastIndexOf('.') + 1);
          try {
            const rec = m.data.length > 0 ? (m.json() as NodeRecord) : undefined;
            if (rec?.t?.length) this.interest.set(node, new Set(rec.t));
            else this.interest.delete(node);
          } catch {
            // not ours
          }
        }
      } catch (err) {
        if (!this.closed) this.broker.logger.warn({ err }, 'mqtt cluster stopped following the node entries; HTTP telemetry is forwarded to every node meanwhile');
        this.interestUnknown = true;
      }
    })();
  }

  // ---- sessions ----

  private get entryMaxAgeMs(): number {
    return (this.broker.config.maxSessionExpirySeconds + 2 * 86_400) * 1000;
  }

  /** Rewrites entries of this node's sessions written more than a third of their max age ago (at most 500 a second). */
  private refreshEntries(now: number): void {
    const every = this.entryMaxAgeMs / 3;
    let budget = 500;
    for (const s of this.broker.sessions.values()) {
      if (budget === 0) return;
      if (this.moved.has(s)) continue;
      const at = this.writtenAt.get(s);
      if (at === undefined) { this.writtenAt.set(s, now); continue; }
      if (now - at < every) continue;
      budget--;
      this.writtenAt.set(s, now);
      this.sessionsKv.put(keyOf(s.key), this.record(s)).catch(() => this.writtenAt.set(s, at));
    }
  }

  private record(s: Session): SessionRecord {
    return { k: s.key, c: s.clientId, i: s.identity, e: s.expirySeconds, sub: [...s.subscriptions], node: this.instance, name: this.opts.nodeId, on: s.conn !== undefined, ...(s.conn ? {} : { at: s.disconnectedAt ?? Date.now() }) };
  }

  /**
   * Before CONNACK: takes the client id over from whichever node holds it and, for a persistent
   * session resumed without Clean Start, brings the session here (handed over by its live node,
   * or rebuilt and replayed when its node died). Afterwards this node owns the session's entry.
   */
  async claim(key: string, identity: ClientIdentity, clientId: string, cleanStart: boolean): Promise<void> {
    if (this.broker.sessions.has(key)) return; // held here: the broker takes it over locally
    const running = this.claimFromCluster(key, identity, clientId, cleanStart);
    this.claiming.set(key, running);
    try {
      await running;
    } finally {
      if (this.claiming.get(key) === running) this.claiming.delete(key);
    }
  }

  /**
   * The entry is written only if nobody wrote it since it was read: a CONNECT with the same client
   * id on another node at the same moment makes one of the two ask the other in turn (the later
   * writer wins, as a later CONNECT would), so the client id is never left connected twice.
   */
  private async claimFromCluster(key: string, identity: ClientIdentity, clientId: string, cleanStart: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const entry = await this.sessionsKv.lookup(keyOf(key));
      const rec = entry.value;
      if (rec && rec.node !== this.instance) {
        const reply = await this.askOwner(rec.node, key, cleanStart);
        if (reply === 'gone') {
          if (!cleanStart && rec.e > 0 && !this.broker.sessions.has(key)) await this.recover(rec);
        } else if ('done' in reply) {
          this.stats.takeovers++;
          // A session already brought here by an earlier attempt stays (the other node's is the newer, empty one).
          if (reply.handover && !cleanStart && !this.broker.sessions.has(key)) await this.adoptHandover(reply.handover);
        }
      }
      const s = this.broker.sessions.get(key);
      const value: SessionRecord = s ? this.record(s) : { k: key, c: clientId, i: identity, e: 0, sub: [], node: this.instance, name: this.opts.nodeId, on: true };
      value.on = true;
      delete value.at;
      try {
        await this.sessionsKv.put(keyOf(key), value, attempt < 3 ? entry.seq : undefined);
        return;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        this.broker.logger.debug({ client: clientId, attempt }, 'mqtt client id claimed on another node at the same moment; asking it in turn');
      }
    }
  }

  private async askOwner(node: string, key: string, clean: boolean): Promise<'gone' | TakeoverReply> {
    try {
      const m = await this.nc.request(`fluxgate.mqtt.node.${node}.takeover`, JSON.stringify({ key, clean }), { timeout: TAKEOVER_TIMEOUT_MS });
      return m.json<TakeoverReply>();
    } catch (err) {
      // No responders: that node's process is gone. A timeout: it hangs; this node goes ahead.
      this.broker.logger.info({ node, reason: (err as Error).message }, 'mqtt session owner did not answer; taking the session over from its last state');
      return 'gone';
    }
  }

  /** Another node takes one of ours: close the connection, hand the session over. */
  private onTakeover(m: Msg): void {
    let req: { key: string; clean: boolean };
    try {
      req = m.json();
      if (typeof req?.key !== 'string') return;
    } catch {
      return;
    }
    // Being claimed here right now: answer once that CONNECT has attached (or failed).
    const pending = this.claiming.get(req.key);
    if (pending && !this.broker.sessions.has(req.key)) {
      void pending.catch(() => undefined).then(() => setImmediate(() => this.takeOver(m, req)));
      return;
    }
    this.takeOver(m, req);
  }

  private takeOver(m: Msg, req: { key: string; clean: boolean }): void {
    const s = this.broker.sessions.get(req.key);
    if (!s) return void m.respond(JSON.stringify({ none: true } satisfies TakeoverReply));
    this.moved.add(s);
    // [MQTT-3.1.4-3] DISCONNECT 0x8E to the existing client; its will follows the usual rules.
    if (s.conn) (s.conn as Connection).close(0x8e, 'takeover');
    let handover: SessionHandover | undefined;
    if (this.broker.sessions.get(req.key) === s) {
      if (!req.clean && s.persistent) {
        const from = this.replayFrom();
        handover = { rec: this.record(s), backlog: s.backlog().filter((o) => o.qos > 0).map(outgoingToWire), from };
        this.stats.handovers++;
      }
      // Resumed elsewhere: a pending delayed will is dropped (as on resume); a clean start ends the session, will included.
      this.broker.endSession(s, req.clean);
    }
    m.respond(JSON.stringify({ done: true, ...(handover ? { handover } : {}) } satisfies TakeoverReply));
  }

  /** Where the new owner replays from: past everything this node read, but not past its own unacknowledged publishes. */
  private replayFrom(): number {
    let w = this.lastSeq + 1;
    for (const b of this.pendingOwn.values()) if (b < w) w = b;
    return w;
  }

  private sessionFrom(rec: SessionRecord): Session {
    const s = new Session(rec.k, rec.c, rec.i);
    s.expirySeconds = rec.e;
    for (const [raw, o] of rec.sub) s.subscriptions.set(raw, o);
    return s;
  }

  private async adoptHandover(h: SessionHandover): Promise<void> {
    const s = this.sessionFrom(h.rec);
    s.disconnectedAt = Date.now();
    s.queue = h.backlog.map(outgoingFromWire);
    await this.adoptAndReplay(s, h.from);
  }

  /** The owner died: rebuild the session from its entry and replay from the dead node's watermark. */
  private async recover(rec: SessionRecord): Promise<void> {
    const dead = await this.nodesKv.get(rec.node);
    const lastAlive = rec.on ? (dead?.value.at ?? Date.now()) : (rec.at ?? dead?.value.at ?? Date.now());
    if (lastAlive + rec.e * 1000 <= Date.now()) return; // expired while nobody held it
    const s = this.sessionFrom(rec);
    s.disconnectedAt = lastAlive;
    this.stats.recovered++;
    if (!dead) this.broker.logger.warn({ client: rec.c, node: rec.name }, 'mqtt session resumed from a dead node without its position: messages queued for it meanwhile are not replayed');
    await this.adoptAndReplay(s, dead ? dead.value.w : undefined);
  }

  private async adoptAndReplay(s: Session, from: number | undefined): Promise<void> {
    this.broker.adopt(s);
    if (from === undefined) return;
    // Everything after `upper` reaches the session live (it is in the broker's tree now).
    const upper = Math.max(this.lastSeq, this.lastOwnSeq);
    const handed = s.queue.splice(0);
    const replayed = from <= upper ? await this.replay(s, from, upper) : [];
    // Order: what the old node had, then the replay, then what arrived live meanwhile.
    const all = [...handed, ...replayed, ...s.queue.splice(0)];
    const max = this.broker.config.maxOfflineMessages;
    if (all.length > max) this.broker.metrics.dropped.labels(s.tenant, 'offline_queue_full').inc(all.length - max);
    s.queue = all.slice(0, max);
  }

  /** The QoS 1/2 messages of s's tenant in [from, upper] that match s's (non-shared) subscriptions, in order. */
  private async replay(s: Session, from: number, upper: number): Promise<Outgoing[]> {
    const subs: Array<{ f: ParsedFilter; o: SubOptions }> = [];
    for (const [raw, o] of s.subscriptions) {
      const f = parseFilter(raw);
      if (f && f.group === undefined) subs.push({ f, o });
    }
    const out: Outgoing[] = [];
    if (subs.length === 0) return out;
    const max = this.broker.config.maxOfflineMessages;
    let dropped = 0;
    for (const { seq, msg } of await this.replays.read(s.tenant, from, upper)) {
      const target = this.match(s, subs, msg);
      if (!target) continue;
      if (out.length >= max) { dropped++; continue; }
      this.seqOf.set(msg, seq);
      out.push({ msg, ...target, packetId: 0, released: false });
    }
    this.stats.replayed += out.length;
    if (dropped > 0) this.broker.metrics.dropped.labels(s.tenant, 'offline_queue_full').inc(dropped);
    return out;
  }

  private match(s: Session, subs: Array<{ f: ParsedFilter; o: SubOptions }>, msg: RoutedMessage): { qos: QoS; retain: boolean; subIds?: number[] } | undefined {
    let qos = -1;
    let rap = false;
    let ids: number[] | undefined;
    for (const { f, o } of subs) {
      if (!topicMatches(f.filter, msg.topic)) continue;
      if (o.nl && msg.origin === s.key) continue;
      qos = Math.max(qos, o.qos);
      rap ||= o.rap;
      if (o.id !== undefined) (ids ??= []).push(o.id);
    }
    const q = Math.min(msg.qos, qos);
    if (q <= 0) return undefined; // QoS 0 is not kept for offline sessions
    return { qos: q as QoS, retain: rap && msg.retain, subIds: ids };
  }

  /** A persistent session's subscriptions or connection changed: its entry follows. */
  changed(s: Session): void {
    if (this.closed || this.moved.has(s)) return;
    this.sessionsKv.put(keyOf(s.key), this.record(s)).catch((err: unknown) => this.broker.logger.warn({ err, client: s.clientId }, 'mqtt session entry not written'));
    // A session brought here may need older messages than the last watermark written.
    if (s.persistent) void this.writeWatermark(false).catch(() => undefined);
  }

  /**
   * The session ended here: its entry goes, unless another node owns it by now. Not while the
   * node stops: the entries of its sessions then name a node that no longer answers, which the
   * next CONNECT handles like a death (no round trips for every client at shutdown).
   */
  ended(s: Session): void {
    if (this.closed || this.moved.has(s) || this.broker.stopping) return;
    const k = keyOf(s.key);
    void (async () => {
      const e = await this.sessionsKv.get(k);
      if (e && e.value.node === this.instance) await this.sessionsKv.delete(k, e.seq);
    })().catch(() => undefined);
  }

  describe(): string {
    const st = this.stats;
    return `cluster: ${st.published} published, ${st.received} received from other nodes, ${st.notNeeded} forwarded telemetry kept here (no subscriber elsewhere), ${this.shares.count} shared groups, ${st.takeovers} takeovers, ${st.recovered} sessions recovered, ${this.replays.stats.reads} replays read (${this.replays.stats.shared} shared)`;
  }

  /** Stops reading; writes the final watermark (offline sessions here resume elsewhere from it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.takeoverSub?.unsubscribe();
    this.shares.close();
    await Promise.race([this.drainPending(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.publisher.close();
    this.replays.close();
    await this.writeWatermark(true).catch(() => undefined);
    this.reader?.stop();
    this.interestReader?.stop();
    await this.nc.drain().catch(() => undefined);
  }

  private async drainPending(): Promise<void> {
    while (this.pendingOwn.size > 0) await new Promise((r) => setTimeout(r, 5));
  }
}

export function startMqttCluster(broker: Broker, opts: MqttClusterOptions): Promise<MqttCluster> {
  return MqttCluster.start(broker, opts);
}
