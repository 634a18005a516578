/**
 * @module Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2) across cluster nodes:
 * each message goes to exactly one member cluster-wide. Every node that has members of
 * (tenant, group, filter) subscribes to the tenant's message subject in one NATS queue group
 * named after that triple; NATS hands each message to one subscriber of the queue group, and
 * that node gives it to one of its members (round-robin, online sessions first, as the
 * single-node broker does). A node whose last member leaves unsubscribes.
 *
 * The queue subscription receives the same publish that the message stream stores (the origin
 * publishes once), so a share needs no extra traffic. Delivery to the chosen node is core NATS,
 * at most once: a message in flight to a node that dies is lost for the group, and a message
 * queued for an offline persistent member is not replayed when its node dies (the replay of
 * cluster/index.ts covers ordinary subscriptions only). Said in docs/cluster.md.
 */
import { createHash } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { QoS } from 'mqtt-packet';
import type { Broker } from '../broker.js';
import type { Session } from '../session.js';
import type { SubOptions } from '../subscriptions.js';
import { topicMatches, type ParsedFilter } from '../topics.js';
import { decodeMessage } from './wire.js';

interface Share { tenant: string; group: string; filter: string; members: Map<string, SubOptions>; cursor: number; sub: Subscription }

export class SharedSubscriptions {
  private readonly shares = new Map<string, Share>();
  /** Messages this node delivered to a shared member (for tests and /readyz). */
  delivered = 0;

  constructor(private readonly nc: NatsConnection, private readonly broker: Broker, private readonly subjectOf: (tenant: string) => string) {}

  private id(tenant: string, f: ParsedFilter): string {
    return `${tenant}\u0000${f.group}\u0000${f.filter}`;
  }

  /** Adds (or replaces) a member; returns true when it is new. */
  add(s: Session, f: ParsedFilter, opts: SubOptions): boolean {
    const id = this.id(s.tenant, f);
    let share = this.shares.get(id);
    if (!share) {
      const queue = `fgs_${createHash('sha1').update(id).digest('hex')}`;
      const created: Share = { tenant: s.tenant, group: f.group!, filter: f.filter, members: new Map(), cursor: 0, sub: undefined as unknown as Subscription };
      created.sub = this.nc.subscribe(this.subjectOf(s.tenant), { queue, callback: (err, m) => { if (!err) this.onMessage(created, m.data); } });
      this.shares.set(id, (share = created));
    }
    const isNew = !share.members.has(s.key);
    share.members.set(s.key, opts);
    return isNew;
  }

  remove(s: Session, f: ParsedFilter): boolean {
    const id = this.id(s.tenant, f);
    const share = this.shares.get(id);
    if (!share) return false;
    const removed = share.members.delete(s.key);
    if (share.members.size === 0) {
      share.sub.unsubscribe();
      this.shares.delete(id);
    }
    return removed;
  }

  get count(): number {
    return this.shares.size;
  }

  private onMessage(share: Share, data: Uint8Array): void {
    let decoded;
    try {
      decoded = decodeMessage(data);
    } catch {
      return; // not ours: someone published on the subject by hand
    }
    const { msg } = decoded;
    if (!topicMatches(share.filter, msg.topic)) return;
    const keys = [...share.members.keys()];
    if (keys.length === 0) return;
    let pick: string | undefined;
    for (let n = 0; n < keys.length && pick === undefined; n++) {
      const k = keys[(share.cursor + n) % keys.length]!;
      if (this.broker.sessions.get(k)?.conn) pick = k;
    }
    pick ??= keys[share.cursor % keys.length]!;
    share.cursor = (keys.indexOf(pick) + 1) % keys.length;
    const session = this.broker.sessions.get(pick);
    const o = share.members.get(pick)!;
    if (!session) return;
    this.delivered++;
    // [MQTT-3.3.1-9] RETAIN cleared unless Retain As Published.
    this.broker.deliver(session, { msg, qos: Math.min(msg.qos, o.qos) as QoS, retain: o.rap && msg.retain, subIds: o.id !== undefined ? [o.id] : undefined, packetId: 0, released: false });
  }

  close(): void {
    for (const s of this.shares.values()) s.sub.unsubscribe();
    this.shares.clear();
  }
}
