/**
 * @module One client connection: the per-client state machine over any Duplex (TCP, TLS,
 * WebSocket, in-memory pair). It parses with mqtt-packet, enforces the packet size limit,
 * dispatches packets, writes replies (corked per turn) and delivers messages to its session
 * within the client's Receive Maximum and the socket's buffer. A bad packet closes only it.
 */
import type { Duplex } from 'node:stream';
import { generate, parser as createParser, type Packet, type IPublishPacket, type IPubackPacket } from 'mqtt-packet';
import type { Broker } from './broker.js';
import { handleConnect } from './connect.js';
import { handlePublish, handlePubrel, handleSubscribe, handleUnsubscribe } from './inbound.js';
import type { RoutedMessage } from './message.js';
import type { Outgoing, Session, SessionConnection } from './session.js';
import type { ClientIdentity, PublishRoute } from './topics.js';

export type ConnectionState = 'new' | 'connecting' | 'open' | 'closed';

/** A will message as CONNECT gave it (§3.1.3.2); published when the connection ends abnormally. */
export interface Will { msg: RoutedMessage; delaySeconds: number; expirySeconds?: number }

type Parser = ReturnType<typeof createParser> & { packet?: { length: number } };

type AckCmd = 'puback' | 'pubrec' | 'pubrel' | 'pubcomp';
/**
 * Successful acks are the same bytes in 3.1.1 and 5.0 (reason 0 and no properties are omitted,
 * §3.4.2.1); each is generated once by mqtt-packet per packet id and shared by every connection.
 */
const ackCache: Record<AckCmd, Array<Buffer | undefined>> = { puback: [], pubrec: [], pubrel: [], pubcomp: [] };

/** Bytes of outgoing data a connection may buffer before deliveries wait in the session queue. */
const SOCKET_BUFFER_BYTES = 1024 * 1024;

/** Fixed header size of a packet with this remaining length. */
const headerBytes = (len: number) => 1 + (len < 128 ? 1 : len < 16384 ? 2 : len < 2097152 ? 3 : 4);

export class Connection implements SessionConnection {
  state: ConnectionState = 'new';
  version: 3 | 4 | 5 = 4;
  identity?: ClientIdentity;
  session?: Session;
  will?: Will;
  readonly createdAt = Date.now();
  lastSeen = this.createdAt;
  keepaliveMs = 0;
  /** What the client told us in CONNECT (v5). */
  clientReceiveMaximum = 65535;
  clientMaxPacket = 0;
  clientAliasMax = 0;
  readonly inAliases = new Map<number, string>();
  /** What this client's recent topics classify as (a device publishes to a handful of topics). */
  readonly routes = new Map<string, PublishRoute>();
  private readonly outAliases = new Map<string, number>();
  /** QoS 1/2 PUBLISHes received and not yet answered with PUBACK/PUBCOMP (v5 Receive Maximum). */
  inboundInflight = 0;
  /** Device messages waiting for the log; reading pauses when this reaches mqtt.receiveMaximum. */
  pendingAppends = 0;
  /** Packets that arrived while CONNECT was being authenticated. */
  readonly early: Packet[] = [];
  private readonly parser: Parser;
  private corked = false;
  private readingPaused = false;

  constructor(readonly broker: Broker, readonly stream: Duplex, readonly overLimit: boolean) {
    this.parser = createParser() as Parser;
    this.parser.on('packet', (p: Packet) => this.onPacket(p));
    this.parser.on('error', (err: Error) => this.close(0x81, 'malformed', err.message));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('drain', () => this.pump());
    stream.on('end', () => this.close(undefined, 'client_closed'));
    stream.on('error', () => this.close(undefined, 'error'));
    stream.on('close', () => this.close(undefined, 'client_closed'));
    const sock = stream as Duplex & { setNoDelay?: (v: boolean) => void };
    sock.setNoDelay?.(true);
  }

  get v5(): boolean {
    return this.version === 5;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastSeen = Date.now();
    this.parser.parse(chunk);
    // A packet announcing more than the limit is refused before its body arrives [MQTT-3.2.2-15].
    const len = this.parser.packet?.length ?? -1;
    if (len > 0 && len + headerBytes(len) > this.broker.config.maxPacketBytes) this.close(0x95, 'too_large', `packet of ${len} bytes`);
  }

  private onPacket(p: Packet): void {
    if (this.state === 'closed') return;
    this.broker.metrics.packetIn(p.cmd);
    const len = p.length ?? 0;
    if (len + headerBytes(len) > this.broker.config.maxPacketBytes) return this.close(0x95, 'too_large', `packet of ${len} bytes`);
    if (this.state === 'new') {
      // [MQTT-3.1.0-1] the first packet must be CONNECT.
      if (p.cmd !== 'connect') return this.close(undefined, 'protocol', `first packet was ${p.cmd}`);
      void handleConnect(this, p).catch((err: unknown) => this.fail(err));
      return;
    }
    if (this.state === 'connecting') {
      this.early.push(p);
      return;
    }
    this.dispatch(p);
  }

  /** Handles a packet of an open connection. */
  dispatch(p: Packet): void {
    if (this.state !== 'open') return;
    switch (p.cmd) {
      case 'publish': return handlePublish(this, p);
      case 'puback': return this.onPuback(p);
      case 'pubrec': return this.onPubrec(p);
      case 'pubcomp': return this.onPuback(p);
      case 'pubrel': return handlePubrel(this, p);
      case 'subscribe': return handleSubscribe(this, p);
      case 'unsubscribe': return handleUnsubscribe(this, p);
      case 'pingreq': return this.send({ cmd: 'pingresp' });
      case 'disconnect': return this.onDisconnect(p.reasonCode ?? 0, p.properties?.sessionExpiryInterval);
      // [MQTT-3.1.0-2] a second CONNECT is a protocol error; we offer no enhanced authentication (AUTH).
      default: return this.close(0x82, 'protocol', `unexpected ${p.cmd}`);
    }
  }

  private onDisconnect(reason: number, expiry: number | undefined): void {
    const s = this.session;
    if (expiry !== undefined && s) {
      // [MQTT-3.14.2-2] a session that expired at close cannot be given an expiry in DISCONNECT.
      if (s.expirySeconds === 0 && expiry > 0) return this.close(0x82, 'protocol', 'session expiry set at DISCONNECT');
      s.expirySeconds = Math.min(expiry, this.broker.config.maxSessionExpirySeconds);
    }
    // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; v5 reason 0x04 asks for it.
    if (reason !== 0x04) this.will = undefined;
    this.close(undefined, 'client_disconnect');
  }

  // ---- outbound: messages to the client ----

  deliver(out: Outgoing): void {
    const s = this.session!;
    if (s.queue.length > 0 || !this.trySend(out)) {
      s.queue.push(out);
      if (s.queue.length > this.broker.config.maxQueuedMessages) {
        // A subscriber that cannot keep up is cut off; it never slows ingest.
        this.broker.metrics.slowSubscribers.inc();
        this.close(0x97, 'slow', `more than ${this.broker.config.maxQueuedMessages} messages queued`);
      }
    }
  }

  /** Sends queued messages while the receive window and the socket allow. */
  pump(): void {
    const s = this.session;
    if (!s || this.state !== 'open') return;
    let i = 0;
    while (i < s.queue.length && this.trySend(s.queue[i])) i++;
    if (i > 0) s.queue.splice(0, i);
  }

  private trySend(out: Outgoing): boolean {
    const s = this.session!;
    // Up to 1 MiB may wait in the socket's buffer; beyond that messages wait in the session's bounded queue.
    if (this.stream.writableLength > SOCKET_BUFFER_BYTES) return false;
    // [MQTT-3.3.4-9] no more QoS 1/2 in flight than the client's Receive Maximum.
    if (out.qos > 0 && s.inflight.size >= this.clientReceiveMaximum) return false;
    if (out.msg.expiresAt !== undefined && out.msg.expiresAt <= Date.now()) {
      this.broker.metrics.dropped.labels(s.tenant, 'expired').inc();
      return true;
    }
    if (out.qos > 0) {
      const id = s.nextPacketId();
      if (id === 0) return false;
      out.packetId = id;
      s.inflight.set(id, out);
    }
    if (!this.writePublish(out, false) && out.qos > 0) s.inflight.delete(out.packetId);
    return true;
  }

  /** Writes a PUBLISH; returns false when it exceeds the client's Maximum Packet Size and was dropped [MQTT-3.1.2-25]. */
  writePublish(out: Outgoing, dup: boolean): boolean {
    const m = out.msg;
    const packet: IPublishPacket = { cmd: 'publish', topic: m.topic, payload: m.payload, qos: out.qos, retain: out.retain, dup };
    if (out.qos > 0) packet.messageId = out.packetId;
    let newAlias: number | undefined;
    if (this.v5) {
      const props: NonNullable<IPublishPacket['properties']> = m.properties ? { ...m.properties } : {};
      // [MQTT-3.3.2-6] the expiry sent is what remains of it.
      if (m.expiresAt !== undefined) props.messageExpiryInterval = Math.max(1, Math.ceil((m.expiresAt - Date.now()) / 1000));
      if (out.subIds?.length) props.subscriptionIdentifier = out.subIds.length === 1 ? out.subIds[0] : out.subIds;
      if (this.clientAliasMax > 0) {
        const alias = this.outAliases.get(m.topic);
        if (alias !== undefined) {
          props.topicAlias = alias;
          packet.topic = '';
        } else if (this.outAliases.size < this.clientAliasMax) {
          newAlias = this.outAliases.size + 1;
          props.topicAlias = newAlias;
        }
      }
      if (Object.keys(props).length > 0) packet.properties = props;
    }
    const buf = generate(packet, { protocolVersion: this.version });
    if (this.clientMaxPacket > 0 && buf.length > this.clientMaxPacket) {
      this.broker.metrics.dropped.labels(this.session?.tenant ?? '', 'too_large').inc();
      return false;
    }
    if (newAlias !== undefined) this.outAliases.set(m.topic, newAlias);
    this.write(buf, 'publish');
    return true;
  }

  private onPuback(p: IPubackPacket | { cmd: 'pubcomp'; messageId?: number }): void {
    const s = this.session!;
    const out = s.inflight.get(p.messageId ?? 0);
    if (!out) return;
    s.inflight.delete(p.messageId!);
    this.pump();
  }

  private onPubrec(p: { messageId?: number; reasonCode?: number }): void {
    const s = this.session!;
    const id = p.messageId ?? 0;
    const out = s.inflight.get(id);
    if (!out) return this.send({ cmd: 'pubrel', messageId: id, ...(this.v5 ? { reasonCode: 0x92 } : {}) });
    // §4.3.3: a PUBREC with a reason code of 0x80 or more ends the exchange.
    if (this.v5 && (p.reasonCode ?? 0) >= 0x80) {
      s.inflight.delete(id);
      return this.pump();
    }
    out.released = true;
    this.sendAck('pubrel', id);
  }

  /** After CONNACK of a resumed session: resend what was in flight with DUP [MQTT-4.4.0-1], then the queue. */
  resume(): void {
    const s = this.session!;
    for (const out of s.inflight.values()) {
      if (out.released) this.sendAck('pubrel', out.packetId);
      else this.writePublish(out, true);
    }
    this.pump();
  }

  // ---- writing and closing ----

  /** PUBACK / PUBREC / PUBREL / PUBCOMP with reason 0, from the shared cache. */
  sendAck(cmd: AckCmd, messageId: number): void {
    if (this.state === 'closed') return;
    const cache = ackCache[cmd];
    let buf = cache[messageId];
    if (!buf) cache[messageId] = buf = generate({ cmd, messageId } as Packet, { protocolVersion: 4 });
    this.write(buf, cmd);
  }

  send(packet: Packet): void {
    if (this.state === 'closed') return;
    this.write(generate(packet, { protocolVersion: this.version }), packet.cmd);
  }

  /** Writes a pre-encoded packet; writes of one event-loop turn leave in one syscall. */
  write(buf: Buffer, type: string): void {
    if (this.state === 'closed' || this.stream.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    this.stream.write(buf);
    this.broker.metrics.packetOut(type);
  }

  /** Pauses or resumes reading: while authenticating, under log backpressure, or with too many appends pending. */
  updateReading(): void {
    if (this.state === 'closed') return;
    const want = this.state !== 'connecting' && !this.broker.paused && this.pendingAppends < this.broker.config.receiveMaximum;
    if (want && this.readingPaused) {
      this.readingPaused = false;
      this.stream.resume();
    } else if (!want && !this.readingPaused) {
      this.readingPaused = true;
      this.stream.pause();
    }
  }

  private fail(err: unknown): void {
    this.broker.logger.error({ err }, 'mqtt connection failed');
    this.close(0x80, 'error');
  }

  /**
   * Closes this connection only. With a v5 reason code on an open connection, DISCONNECT
   * with it goes first [MQTT-4.13.1-1]. The will is published unless the client sent DISCONNECT,
   * the node is shutting down or the device was revoked.
   */
  close(reasonCode: number | undefined, reason: string, detail?: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    if (reasonCode !== undefined && wasOpen && this.v5) this.send({ cmd: 'disconnect', reasonCode });
    if (reason !== 'client_closed' && reason !== 'client_disconnect') this.broker.metrics.closed.labels(reason).inc();
    if (detail) this.broker.logger.debug({ reason, detail, client: this.session?.clientId }, 'mqtt connection closed');
    this.state = 'closed';
    // No will at node shutdown, nor for a device whose credentials were just revoked.
    this.broker.detach(this, reason !== 'shutdown' && reason !== 'revoked');
    this.stream.end();
    // Keep reading (and discarding) until the peer closes too: a paused socket would never see its FIN.
    this.stream.resume();
    setTimeout(() => this.stream.destroy(), 1000).unref();
  }
}
