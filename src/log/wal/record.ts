/**
 * @module WAL record framing: one Envelope per record, binary and compact (payload bytes raw),
 * each frame guarded by a CRC-32 (zlib polynomial, `node:zlib` crc32) over everything in the
 * frame but the CRC itself. The layout is specified byte by byte in docs/format/log.md; this
 * file and that page change together.
 *
 * Encoding happens in `append` (off the writer's critical path); the sequence number and CRC
 * are stamped by the writer when the frame gets its place in the log, so a failed write never
 * burns sequence numbers.
 */
import { crc32 } from 'node:zlib';
import type { Envelope, MessageKind, Protocol } from '../../core/envelope.js';
import { FluxgateError } from '../../core/errors.js';

/** crc32 (4) + body length (4) + sequence (8). */
export const FRAME_HEADER_BYTES = 16;
/** Upper bound of one body; anything larger in a length field is damage, not data. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
export const BODY_VERSION = 1;

const BODY_FIXED_BYTES = 20;
const STRING_FIELDS = 5;
const MAX_STRING_BYTES = 0xffff;
const FLAG_DEVICE_TIME = 1;
const TWO_32 = 0x1_0000_0000;

// Codes are part of the on-disk format: append only, never renumber.
const KIND_CODES: readonly MessageKind[] = ['telemetry', 'event', 'snapshot', 'attributes'];
const PROTOCOL_CODES: readonly Protocol[] = ['http', 'mqtt', 'coap', 'ws', 'bridge'];
const KIND_INDEX = new Map(KIND_CODES.map((k, i) => [k, i]));
const PROTOCOL_INDEX = new Map(PROTOCOL_CODES.map((p, i) => [p, i]));

function stringBytes(s: string, field: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > MAX_STRING_BYTES) throw new FluxgateError('BAD_REQUEST', `envelope ${field} is ${n} bytes; the log stores at most ${MAX_STRING_BYTES}`);
  return n;
}

function bodyBytes(e: Envelope): number {
  return BODY_FIXED_BYTES + 2 * STRING_FIELDS
    + stringBytes(e.tenant, 'tenant') + stringBytes(e.project, 'project') + stringBytes(e.device, 'device')
    + stringBytes(e.topic, 'topic') + stringBytes(e.messageId, 'messageId') + e.payload.byteLength;
}

function writeString(buf: Buffer, off: number, s: string): number {
  const n = buf.write(s, off + 2, 'utf8');
  buf.writeUInt16LE(n, off);
  return off + 2 + n;
}

/**
 * Encodes a batch into one buffer of consecutive frames whose CRC and sequence fields are still
 * zero (see `stampFrames`). Throws BAD_REQUEST for an envelope the format cannot hold.
 */
export function encodeFrames(batch: readonly Envelope[]): Buffer {
  let total = 0;
  for (const e of batch) {
    const n = bodyBytes(e);
    if (n > MAX_BODY_BYTES) throw new FluxgateError('PAYLOAD_TOO_LARGE', `envelope ${e.messageId} is ${n} bytes; the log stores at most ${MAX_BODY_BYTES}`);
    total += FRAME_HEADER_BYTES + n;
  }
  const buf = Buffer.allocUnsafe(total);
  let off = 0;
  for (const e of batch) {
    const kind = KIND_INDEX.get(e.kind);
    const protocol = PROTOCOL_INDEX.get(e.protocol);
    if (kind === undefined) throw new FluxgateError('BAD_REQUEST', `envelope kind ${JSON.stringify(e.kind)} is not one the log knows`);
    if (protocol === undefined) throw new FluxgateError('BAD_REQUEST', `envelope protocol ${JSON.stringify(e.protocol)} is not one the log knows`);
    const frame = off;
    buf.fill(0, frame, frame + FRAME_HEADER_BYTES);
    let p = frame + FRAME_HEADER_BYTES;
    buf[p] = BODY_VERSION;
    buf[p + 1] = kind;
    buf[p + 2] = protocol;
    buf[p + 3] = e.deviceTime === undefined ? 0 : FLAG_DEVICE_TIME;
    buf.writeDoubleLE(e.receiveTime, p + 4);
    buf.writeDoubleLE(e.deviceTime ?? 0, p + 12);
    p += BODY_FIXED_BYTES;
    p = writeString(buf, p, e.tenant);
    p = writeString(buf, p, e.project);
    p = writeString(buf, p, e.device);
    p = writeString(buf, p, e.topic);
    p = writeString(buf, p, e.messageId);
    buf.set(e.payload, p);
    p += e.payload.byteLength;
    buf.writeUInt32LE(p - frame - FRAME_HEADER_BYTES, frame + 4);
    off = p;
  }
  return buf;
}

/** Number of frames in an encoded buffer (the writer counts records for metrics). */
export function countFrames(buf: Buffer): number {
  let n = 0;
  for (let off = 0; off < buf.length; off += FRAME_HEADER_BYTES + buf.readUInt32LE(off + 4)) n++;
  return n;
}

/** Gives every frame in `buf` its sequence number, starting at `firstSeq`, and its CRC; returns the next sequence. */
export function stampFrames(buf: Buffer, firstSeq: number): number {
  let seq = firstSeq;
  for (let off = 0; off < buf.length;) {
    const end = off + FRAME_HEADER_BYTES + buf.readUInt32LE(off + 4);
    writeSeq(buf, off + 8, seq++);
    buf.writeUInt32LE(crc32(buf.subarray(off + 4, end)), off);
    off = end;
  }
  return seq;
}

// Sequences are JS numbers inside the WAL (exact to 2^53: centuries at a million records a
// second) so the hot path never allocates a bigint; the Log API hands out bigints.
function writeSeq(buf: Buffer, off: number, seq: number): void {
  buf.writeUInt32LE(seq % TWO_32, off);
  buf.writeUInt32LE(Math.floor(seq / TWO_32), off + 4);
}

export function readSeq(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO_32;
}

/** What a frame at some position is: whole and sound, cut short by the end of data, or damaged. */
export type FrameCheck = 'ok' | 'short' | 'bad-length' | 'bad-crc';

/** Checks the frame at `off` of `buf` (valid bytes up to `end`) without decoding it. */
export function checkFrame(buf: Buffer, off: number, end: number, verifyCrc: boolean): FrameCheck {
  if (off + FRAME_HEADER_BYTES > end) return 'short';
  const len = buf.readUInt32LE(off + 4);
  if (len > MAX_BODY_BYTES || len < BODY_FIXED_BYTES + 2 * STRING_FIELDS) return 'bad-length';
  if (off + FRAME_HEADER_BYTES + len > end) return 'short';
  if (verifyCrc && crc32(buf.subarray(off + 4, off + FRAME_HEADER_BYTES + len)) !== buf.readUInt32LE(off)) return 'bad-crc';
  return 'ok';
}

export function frameBytes(buf: Buffer, off: number): number {
  return FRAME_HEADER_BYTES + buf.readUInt32LE(off + 4);
}

function readString(buf: Buffer, p: number): [string, number] {
  const n = buf.readUInt16LE(p);
  return [buf.toString('utf8', p + 2, p + 2 + n), p + 2 + n];
}

/**
 * Decodes the body of a checked frame. The payload is a plain Uint8Array view into `buf`
 * (no copy): callers get the bytes exactly as appended, like a JetStream message's data.
 */
export function decodeFrame(buf: Buffer, off: number): Envelope {
  const len = buf.readUInt32LE(off + 4);
  const start = off + FRAME_HEADER_BYTES;
  const end = start + len;
  if (buf[start] !== BODY_VERSION) throw new Error(`unknown record body version ${buf[start]}`);
  const kind = KIND_CODES[buf[start + 1]!];
  const protocol = PROTOCOL_CODES[buf[start + 2]!];
  if (kind === undefined || protocol === undefined) throw new Error('unknown kind or protocol code');
  const hasDeviceTime = (buf[start + 3]! & FLAG_DEVICE_TIME) !== 0;
  const receiveTime = buf.readDoubleLE(start + 4);
  const deviceTime = buf.readDoubleLE(start + 12);
  let p = start + BODY_FIXED_BYTES;
  let tenant: string, project: string, device: string, topic: string, messageId: string;
  [tenant, p] = readString(buf, p);
  [project, p] = readString(buf, p);
  [device, p] = readString(buf, p);
  [topic, p] = readString(buf, p);
  [messageId, p] = readString(buf, p);
  if (p > end) throw new Error('record strings overrun the record');
  const payload = new Uint8Array(buf.buffer, buf.byteOffset + p, end - p);
  const env: Envelope = { tenant, project, device, kind, topic, protocol, receiveTime, messageId, payload };
  if (hasDeviceTime) env.deviceTime = deviceTime;
  return env;
}
