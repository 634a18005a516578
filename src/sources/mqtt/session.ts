/**
 * @module One MQTT session (§4.1): subscriptions, QoS 1/2 messages in flight towards the
 * client, messages queued behind them, and QoS 2 packet ids received and not yet released.
 * A session outlives its connection when it is persistent (v5 Session Expiry > 0, v3.1.1
 * CleanSession = 0) and is then kept in <dataDir>/mqtt/sessions.jsonl (see session-store.ts).
 */
import type { QoS } from 'mqtt-packet';
import type { RoutedMessage } from './message.js';
import type { SubOptions } from './subscriptions.js';
import type { ClientIdentity } from './topics.js';

/** One message on its way to this session's client. */
export interface Outgoing {
  msg: RoutedMessage;
  qos: QoS;
  retain: boolean;
  subIds?: number[];
  /** Packet id while in flight (QoS 1/2), else 0. */
  packetId: number;
  /** QoS 2: PUBREC received and PUBREL sent; only PUBCOMP is awaited [MQTT-4.3.3]. */
  released: boolean;
}

/** Largest session expiry: 0xFFFFFFFF means "never expires" (§3.1.2.11.2); we cap it by configuration. */
export const NEVER_EXPIRES = 0xffffffff;

export class Session {
  /** Raw filter (as subscribed, with any `$share/group/` prefix) → options. */
  readonly subscriptions = new Map<string, SubOptions>();
  /** Packet id → message sent and not yet acknowledged [MQTT-4.4.0-1]. */
  readonly inflight = new Map<number, Outgoing>();
  /** Messages waiting for room in the client's receive window or socket. */
  queue: Outgoing[] = [];
  /** QoS 2 packet ids received (logged or in flight to the log) and not yet released by PUBREL (§4.3.3). */
  readonly incomingQos2 = new Map<number, 'appending' | 'stored'>();
  /** QoS 2 ids the client sent again (maybe on a new connection) while the first copy was being appended. */
  readonly retriedWhileAppending = new Set<number>();
  /** Session expiry in seconds after the connection closes; 0 ends it with the connection. */
  expirySeconds = 0;
  /** The live connection (undefined while offline). Typed loosely to avoid an import cycle. */
  conn?: SessionConnection;
  disconnectedAt?: number;
  expiryTimer?: NodeJS.Timeout;
  willTimer?: NodeJS.Timeout;
  /** Publishes the will still waiting for its delay (called if the session ends first). */
  pendingWill?: () => void;
  /** Whether the session store holds a record of this session. */
  stored = false;
  private lastPacketId = 0;

  constructor(readonly key: string, readonly clientId: string, readonly identity: ClientIdentity) {}

  get tenant(): string {
    return this.identity.tenant;
  }

  get persistent(): boolean {
    return this.expirySeconds > 0;
  }

  /** A packet id not in use by a message in flight [MQTT-2.2.1-3]; 0 when all 65535 are taken. */
  nextPacketId(): number {
    for (let i = 0; i < 65535; i++) {
      this.lastPacketId = (this.lastPacketId % 65535) + 1;
      if (!this.inflight.has(this.lastPacketId)) return this.lastPacketId;
    }
    return 0;
  }

  /** Everything still owed to the client, in order: in-flight first, then queued. */
  backlog(): Outgoing[] {
    return [...this.inflight.values(), ...this.queue];
  }

  clearTimers(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.willTimer) clearTimeout(this.willTimer);
    this.expiryTimer = undefined;
    this.willTimer = undefined;
    this.pendingWill = undefined;
  }
}

/** What a session needs from its connection. */
export interface SessionConnection {
  /** Sends `out` or queues it; a queue past mqtt.maxQueuedMessages disconnects the client. */
  deliver(out: Outgoing): void;
}
