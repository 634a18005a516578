/**
 * @module How MQTT state travels between cluster nodes over NATS: a routed message (one Buffer:
 * 4-byte length, a small JSON header with tenant, topic, QoS, retain, expiry, v5 properties,
 * publisher session and origin node, then the payload bytes untouched) and a session handed
 * from one node to another (its record in the session bucket, and its backlog).
 */
import type { QoS } from 'mqtt-packet';
import type { PublishProperties, RoutedMessage } from '../message.js';
import type { Outgoing } from '../session.js';
import type { SubOptions } from '../subscriptions.js';
import type { ClientIdentity } from '../topics.js';

interface Header { o: string; n: string; t: string; q: QoS; r: boolean; x?: number; s?: string; pr?: Record<string, unknown> }

export interface WireMessage { origin: string; tenant: string; msg: RoutedMessage }

function propsToJson(p: PublishProperties): Record<string, unknown> {
  const { correlationData, ...rest } = p;
  return { ...rest, ...(correlationData ? { correlationData: Buffer.from(correlationData).toString('base64') } : {}) };
}

function propsFromJson(j: Record<string, unknown>): PublishProperties {
  const { correlationData, ...rest } = j as PublishProperties & { correlationData?: string };
  return { ...rest, ...(correlationData ? { correlationData: Buffer.from(correlationData, 'base64') } : {}) };
}

export function encodeMessage(origin: string, tenant: string, m: RoutedMessage): Buffer {
  const h: Header = { o: origin, n: tenant, t: m.topic, q: m.qos, r: m.retain };
  if (m.expiresAt !== undefined) h.x = m.expiresAt;
  if (m.origin !== undefined) h.s = m.origin;
  if (m.properties) h.pr = propsToJson(m.properties);
  const head = Buffer.from(JSON.stringify(h));
  const out = Buffer.allocUnsafe(4 + head.length + m.payload.length);
  out.writeUInt32BE(head.length, 0);
  head.copy(out, 4);
  m.payload.copy(out, 4 + head.length);
  return out;
}

/** Throws on anything not written by encodeMessage. */
export function decodeMessage(data: Uint8Array): WireMessage {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const len = buf.readUInt32BE(0);
  if (len + 4 > buf.length) throw new Error('truncated cluster message');
  const h = JSON.parse(buf.subarray(4, 4 + len).toString('utf8')) as Header;
  if (typeof h.o !== 'string' || typeof h.n !== 'string' || typeof h.t !== 'string') throw new Error('not a cluster message');
  // The payload is copied: the NATS client may reuse its read buffer.
  const msg: RoutedMessage = { topic: h.t, payload: Buffer.from(buf.subarray(4 + len)), qos: h.q, retain: h.r };
  if (h.x !== undefined) msg.expiresAt = h.x;
  if (h.s !== undefined) msg.origin = h.s;
  if (h.pr) msg.properties = propsFromJson(h.pr);
  return { origin: h.o, tenant: h.n, msg };
}

/** A session's entry in the cluster's session bucket: who holds it and what it subscribed to. */
export interface SessionRecord {
  /** Broker session key (tenant, identity, client id). */
  k: string;
  c: string;
  i: ClientIdentity;
  /** Session expiry, seconds (0: ends with its connection). */
  e: number;
  sub: Array<[string, SubOptions]>;
  /** Instance id of the node holding it, and that node's name. */
  node: string;
  name: string;
  /** Connected right now (as its node last wrote); when not, since `at` (ms). */
  on: boolean;
  at?: number;
}

interface WireOutgoing { t: string; p: string; q: QoS; r: boolean; x?: number; s?: string; pr?: Record<string, unknown>; oq: QoS; or: boolean; ids?: number[] }

/** What a node hands over with a persistent session: the record, its backlog, and the log position to replay from. */
export interface SessionHandover { rec: SessionRecord; backlog: WireOutgoing[]; from: number }

export function outgoingToWire(o: Outgoing): WireOutgoing {
  const m = o.msg;
  const w: WireOutgoing = { t: m.topic, p: m.payload.toString('base64'), q: m.qos, r: m.retain, oq: o.qos, or: o.retain };
  if (m.expiresAt !== undefined) w.x = m.expiresAt;
  if (m.origin !== undefined) w.s = m.origin;
  if (m.properties) w.pr = propsToJson(m.properties);
  if (o.subIds) w.ids = o.subIds;
  return w;
}

export function outgoingFromWire(w: WireOutgoing): Outgoing {
  const msg: RoutedMessage = { topic: w.t, payload: Buffer.from(w.p, 'base64'), qos: w.q, retain: w.r };
  if (w.x !== undefined) msg.expiresAt = w.x;
  if (w.s !== undefined) msg.origin = w.s;
  if (w.pr) msg.properties = propsFromJson(w.pr);
  return { msg, qos: w.oq, retain: w.or, subIds: w.ids, packetId: 0, released: false };
}
