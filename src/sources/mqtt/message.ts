/**
 * @module The broker's routed message (what subscribers, retained storage and offline
 * session queues hold) and its JSON form for the files under <dataDir>/mqtt/.
 */
import type { IPublishPacket, QoS } from 'mqtt-packet';

export type PublishProperties = NonNullable<IPublishPacket['properties']>;

export interface RoutedMessage {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  /** v5 properties to pass through (user properties, response topic, correlation data, content type…), without alias or subscription ids. */
  properties?: PublishProperties;
  /** Absolute ms when the message expires (v5 Message Expiry Interval), if any. */
  expiresAt?: number;
  /** Session key of the publisher, for No Local. */
  origin?: string;
}

/** Builds the routed form of a received PUBLISH: drops per-connection properties, turns expiry into an absolute time. */
export function toRouted(packet: IPublishPacket, topic: string, origin: string | undefined, now: number): RoutedMessage {
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  const msg: RoutedMessage = { topic, payload, qos: packet.qos, retain: packet.retain, origin };
  const p = packet.properties;
  if (p) {
    const { topicAlias: _a, subscriptionIdentifier: _s, messageExpiryInterval, ...rest } = p;
    if (Object.keys(rest).length > 0) msg.properties = rest;
    // [MQTT-3.3.2-5] a message whose expiry passed is not delivered.
    if (messageExpiryInterval !== undefined) msg.expiresAt = now + messageExpiryInterval * 1000;
  }
  return msg;
}

interface JsonMessage { t: string; p: string; q: QoS; r: boolean; o?: string; x?: number; pr?: Record<string, unknown> }

export function messageToJson(m: RoutedMessage): JsonMessage {
  const j: JsonMessage = { t: m.topic, p: m.payload.toString('base64'), q: m.qos, r: m.retain };
  if (m.origin !== undefined) j.o = m.origin;
  if (m.expiresAt !== undefined) j.x = m.expiresAt;
  if (m.properties) {
    const { correlationData, ...rest } = m.properties;
    j.pr = { ...rest, ...(correlationData ? { correlationData: correlationData.toString('base64') } : {}) };
  }
  return j;
}

export function messageFromJson(j: JsonMessage): RoutedMessage {
  const m: RoutedMessage = { topic: j.t, payload: Buffer.from(j.p, 'base64'), qos: j.q, retain: j.r };
  if (j.o !== undefined) m.origin = j.o;
  if (j.x !== undefined) m.expiresAt = j.x;
  if (j.pr) {
    const { correlationData, ...rest } = j.pr as PublishProperties & { correlationData?: string };
    m.properties = { ...rest, ...(correlationData ? { correlationData: Buffer.from(correlationData, 'base64') } : {}) };
  }
  return m;
}
