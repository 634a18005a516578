/**
 * @module How an Envelope travels through JetStream: its subject, its de-duplication id and a
 * compact binary body (fixed header, five length-prefixed strings, then the payload bytes
 * untouched). No JSON and no NATS headers on the hot path: one Buffer per message.
 *
 * Subject: `<prefix>.<slot>.<tenant>.<lane>.<device>`, e.g. `fluxgate.msg.17.t1.event.dev-3`.
 * `slot` is a stable hash of tenant and device over SLOTS (fixed for the life of a stream):
 * a consumer filtering `<prefix>.<slot>.>` sees whole devices, which is how groups can later
 * be spread over nodes without breaking per-device order (see index.ts). `lane` is `snapshot`
 * for snapshots and `event` for everything else, so snapshots can be read or shed apart.
 */
import { MESSAGE_KINDS, type Envelope, type MessageKind, type Protocol } from '../../core/envelope.js';
import { FluxgateError } from '../../core/errors.js';

/** Number of hash slots in subjects; changing it needs a new stream. */
export const SLOTS = 32;

const PROTOCOLS: readonly Protocol[] = ['http', 'mqtt', 'coap', 'ws', 'bridge'];
const VERSION = 1;
const HAS_DEVICE_TIME = 1;
const FIXED = 4 + 8; // version, kind, protocol, flags, receiveTime
const SAFE = /^[A-Za-z0-9_-]+$/;

/**
 * A NATS subject token (or consumer name part) for any string: `[A-Za-z0-9_-]` stay, every
 * other UTF-8 byte becomes `=XX`, the empty string becomes `=`. Injective, so two tenants or
 * devices never share a token.
 */
export function encodeToken(s: string): string {
  if (SAFE.test(s)) return s;
  if (s.length === 0) return '=';
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += (b < 0x80 && SAFE.test(c)) ? c : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** FNV-1a over tenant and device: the device's slot, the same in every process. */
export function slotOf(tenant: string, device: string): number {
  let h = 0x811c9dc5;
  const s = `${tenant}\u0000${device}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % SLOTS;
}

export function laneOf(kind: MessageKind): 'snapshot' | 'event' {
  return kind === 'snapshot' ? 'snapshot' : 'event';
}

export function subjectOf(prefix: string, e: Envelope): string {
  return `${prefix}.${slotOf(e.tenant, e.device)}.${encodeToken(e.tenant)}.${laneOf(e.kind)}.${encodeToken(e.device)}`;
}

/** `Nats-Msg-Id`: a retried publish of the same message within the duplicate window is stored once. */
export function msgIdOf(e: Envelope): string {
  return `${encodeToken(e.tenant)}/${encodeToken(e.device)}/${encodeToken(e.messageId)}`;
}

/**
 * Body layout, big-endian: u8 version (1), u8 kind index, u8 protocol index, u8 flags
 * (bit 0: deviceTime present), f64 receiveTime, [f64 deviceTime], then u16 length + UTF-8 of
 * tenant, project, device, topic, messageId, then the payload to the end.
 */
export function encodeEnvelope(e: Envelope): Buffer {
  const kind = MESSAGE_KINDS.indexOf(e.kind);
  const protocol = PROTOCOLS.indexOf(e.protocol);
  if (kind < 0 || protocol < 0) throw new FluxgateError('BAD_REQUEST', `unknown kind ${e.kind} or protocol ${e.protocol}`);
  const strings = [e.tenant, e.project, e.device, e.topic, e.messageId];
  const hasTime = e.deviceTime !== undefined;
  let size = FIXED + (hasTime ? 8 : 0) + e.payload.byteLength;
  for (const s of strings) size += 2 + Buffer.byteLength(s, 'utf8');
  const buf = Buffer.allocUnsafe(size);
  buf[0] = VERSION;
  buf[1] = kind;
  buf[2] = protocol;
  buf[3] = hasTime ? HAS_DEVICE_TIME : 0;
  buf.writeDoubleBE(e.receiveTime, 4);
  let off = FIXED;
  if (hasTime) { buf.writeDoubleBE(e.deviceTime!, off); off += 8; }
  for (const s of strings) {
    const n = buf.write(s, off + 2, 'utf8');
    if (n > 0xffff) throw new FluxgateError('BAD_REQUEST', `a field of message ${e.messageId} is longer than 65535 bytes`);
    buf.writeUInt16BE(n, off);
    off += 2 + n;
  }
  buf.set(e.payload, off);
  return buf;
}

export function decodeEnvelope(data: Uint8Array): Envelope {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < FIXED || buf[0] !== VERSION) throw new Error(`not a Fluxgate log record (version ${buf[0]}, ${buf.length} bytes)`);
  const kind = MESSAGE_KINDS[buf[1]!];
  const protocol = PROTOCOLS[buf[2]!];
  if (!kind || !protocol) throw new Error(`bad kind ${buf[1]} or protocol ${buf[2]} in log record`);
  const receiveTime = buf.readDoubleBE(4);
  let off = FIXED;
  let deviceTime: number | undefined;
  if (buf[3]! & HAS_DEVICE_TIME) { deviceTime = buf.readDoubleBE(off); off += 8; }
  const strings: string[] = [];
  for (let i = 0; i < 5; i++) {
    const n = buf.readUInt16BE(off);
    if (off + 2 + n > buf.length) throw new Error('log record cut short');
    strings.push(buf.toString('utf8', off + 2, off + 2 + n));
    off += 2 + n;
  }
  const [tenant, project, device, topic, messageId] = strings as [string, string, string, string, string];
  // A copy: the message buffer may be a slice of a larger socket read that we must not pin.
  const payload = new Uint8Array(buf.subarray(off));
  return {
    tenant, project, device, kind, topic, protocol,
    ...(deviceTime !== undefined ? { deviceTime } : {}),
    receiveTime, messageId, payload,
  };
}
