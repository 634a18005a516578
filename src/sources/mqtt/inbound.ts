/**
 * @module Packets from a connected client: PUBLISH (QoS 0/1/2, §4.3) with topic aliases and
 * the device ACL, PUBREL, SUBSCRIBE and UNSUBSCRIBE. A device message is acknowledged
 * (PUBACK / PUBREC) only after the log made it durable; a QoS 2 packet id retried before
 * PUBREL is logged once [MQTT-4.3.3-9]. Routing to subscribers happens after the append.
 */
import type { IPublishPacket, IPubrelPacket, ISubscribePacket, IUnsubscribePacket } from 'mqtt-packet';
import type { PublishWaiter } from './broker.js';
import type { Connection } from './connection.js';
import type { PublishOutcome } from './metrics.js';
import type { Session } from './session.js';
import { toRouted, type RoutedMessage } from './message.js';
import { classifyPublish, parseFilter, validTopicName } from './topics.js';

function userPropertyId(p: IPublishPacket): string | undefined {
  const id = p.properties?.userProperties?.id;
  const v = Array.isArray(id) ? id[0] : id;
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

export function handlePublish(conn: Connection, p: IPublishPacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const identity = conn.identity!;
  let topic = p.topic;

  // Topic aliases (§3.3.2.3.4): a known alias may stand for the topic; an alias beyond our maximum is an error.
  const alias = conn.v5 ? p.properties?.topicAlias : undefined;
  if (alias !== undefined) {
    if (alias === 0 || alias > broker.config.topicAliasMaximum) return conn.close(0x94, 'protocol', `topic alias ${alias}`);
    if (topic === '') {
      const known = conn.inAliases.get(alias);
      if (known === undefined) return conn.close(0x82, 'protocol', `unknown topic alias ${alias}`);
      topic = known;
    } else {
      conn.inAliases.set(alias, topic);
    }
  }
  // [MQTT-3.3.2-2] no wildcards in a topic name.
  if (!validTopicName(topic)) return conn.close(0x90, 'protocol', `invalid topic name ${JSON.stringify(topic)}`);

  const qos = p.qos;
  const id = p.messageId ?? 0;
  if (qos > 0) {
    // QoS 2 retried before PUBREL: answer again, never log twice [MQTT-4.3.3-9].
    if (qos === 2) {
      const state = session.incomingQos2.get(id);
      if (state === 'stored') return conn.sendAck('pubrec', id);
      if (state === 'appending') {
        session.retriedWhileAppending.add(id);
        return;
      }
    }
    conn.inboundInflight++;
    // [MQTT-3.3.4-7] more unacknowledged QoS > 0 publishes than our Receive Maximum.
    if (conn.v5 && conn.inboundInflight > broker.config.receiveMaximum) return conn.close(0x93, 'protocol', 'receive maximum exceeded');
  }
  const received = Date.now();
  const msg = toRouted(p, topic, session.key, received);
  let route = conn.routes.get(topic);
  if (!route) {
    if (conn.routes.size >= 64) conn.routes.clear();
    conn.routes.set(topic, (route = classifyPublish(identity, topic)));
  }
  if (qos === 2) session.incomingQos2.set(id, 'appending');
  conn.pendingAppends++;
  conn.updateReading();
  broker.accept(identity, msg, userPropertyId(p), new PendingPublish(conn, session, msg, qos, id, received), route);
}

/** One client PUBLISH on its way to the log; `done` answers it once the outcome is known. */
class PendingPublish implements PublishWaiter {
  constructor(readonly conn: Connection, readonly session: Session, readonly msg: RoutedMessage, readonly qos: number, readonly id: number, readonly received: number) {}

  /** The log holds it (or failed): route it, then answer. One object per message does both. */
  durable(err?: Error): void {
    if (err) return this.done('error', err);
    this.conn.broker.route(this.session.tenant, this.msg);
    this.done('accepted');
  }

  done(outcome: PublishOutcome, err?: Error): void {
    const { conn, session, qos, id } = this;
    const broker = conn.broker;
    conn.pendingAppends--;
    broker.metrics.publish(session.tenant, qos, outcome);
    if (outcome === 'error') {
      // Nothing was acknowledged: the client resends after reconnecting.
      if (qos === 2) session.incomingQos2.delete(id);
      broker.logger.warn({ err, client: session.clientId }, 'mqtt publish not logged');
      return conn.close((err as { code?: string } | undefined)?.code === 'LOG_OVERLOADED' ? 0x89 : 0x80, 'error');
    }
    // A refused publish: v5 answers 0x87 (not allowed) or 0x97 (snapshot shed under overload, or tenant over its quota);
    // v3.1.1 has no refusal code, so it is acknowledged and dropped (counted).
    const reasonCode = !conn.v5 ? 0 : outcome === 'forbidden' ? 0x87 : outcome === 'shed' || outcome === 'quota' ? 0x97 : 0;
    if (qos === 2) {
      // The session remembers the id even if this connection is gone: a retry on the next one gets PUBREC, not a second append.
      if (reasonCode >= 0x80) session.incomingQos2.delete(id);
      else session.incomingQos2.set(id, 'stored');
    }
    // The answer goes to the connection the client now uses for this session (a retry may have arrived there).
    const retried = session.retriedWhileAppending.delete(id);
    const target = session.conn as Connection | undefined;
    if (!target || target.state !== 'open') return;
    if (target !== conn && !retried) return;
    if (qos === 1) {
      target.inboundInflight = Math.max(0, target.inboundInflight - 1);
      if (reasonCode) target.send({ cmd: 'puback', messageId: id, reasonCode });
      else target.sendAck('puback', id);
    } else if (qos === 2) {
      if (reasonCode) {
        target.inboundInflight = Math.max(0, target.inboundInflight - 1);
        target.send({ cmd: 'pubrec', messageId: id, reasonCode });
      } else target.sendAck('pubrec', id);
    }
    if (qos > 0) broker.metrics.ackLatency((Date.now() - this.received) / 1000);
    conn.updateReading();
  }
}

export function handlePubrel(conn: Connection, p: IPubrelPacket): void {
  const session = conn.session!;
  const id = p.messageId ?? 0;
  const known = session.incomingQos2.get(id) === 'stored';
  if (known) {
    session.incomingQos2.delete(id);
    conn.inboundInflight = Math.max(0, conn.inboundInflight - 1);
  }
  // [MQTT-4.3.3-11] PUBCOMP with the same packet id; v5 0x92 when the id is unknown.
  if (conn.v5 && !known) conn.send({ cmd: 'pubcomp', messageId: id, reasonCode: 0x92 });
  else conn.sendAck('pubcomp', id);
}

export function handleSubscribe(conn: Connection, p: ISubscribePacket): void {
  const broker = conn.broker;
  const session = conn.session!;
  const subId = conn.v5 ? p.properties?.subscriptionIdentifier : undefined;
  const granted: number[] = [];
  const retainedToSend: Array<() => void> = [];
  for (const sub of p.subscriptions) {
    const parsed = parseFilter(sub.topic);
    if (!parsed) {
      granted.push(conn.v5 ? 0x8f : 0x80);
      continue;
    }
    // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
    if (parsed.group !== undefined && sub.nl) return conn.close(0x82, 'protocol', 'no local on a shared subscription');
    const result = broker.subscribe(session, sub.topic, parsed, { qos: sub.qos, nl: !!sub.nl, rap: !!sub.rap, rh: sub.rh ?? 0, ...(subId !== undefined ? { id: subId } : {}) });
    if (result === 'forbidden') {
      granted.push(conn.v5 ? 0x87 : 0x80);
      continue;
    }
    granted.push(sub.qos);
    // Retained messages (§3.3.1.3): Retain Handling 0 always, 1 only for a new subscription, 2 never; never for shared ones.
    const rh = sub.rh ?? 0;
    if (parsed.group === undefined && (rh === 0 || (rh === 1 && result === 'new'))) {
      retainedToSend.push(() => broker.sendRetained(session, parsed.filter, sub.qos, subId));
    }
  }
  conn.send({ cmd: 'suback', messageId: p.messageId, granted });
  for (const send of retainedToSend) send();
}

export function handleUnsubscribe(conn: Connection, p: IUnsubscribePacket): void {
  const session = conn.session!;
  const granted: number[] = [];
  for (const raw of p.unsubscriptions) {
    const parsed = parseFilter(raw);
    const removed = parsed ? conn.broker.unsubscribe(session, raw, parsed) : false;
    // v5 UNSUBACK: 0x00 success, 0x11 no subscription existed, 0x8F invalid filter.
    granted.push(!parsed ? 0x8f : removed ? 0x00 : 0x11);
  }
  conn.send(conn.v5 ? { cmd: 'unsuback', messageId: p.messageId, granted } : { cmd: 'unsuback', messageId: p.messageId, granted: [] });
}
