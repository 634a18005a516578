/**
 * @module The shape a write batch takes between the main thread and the store's worker.
 * Points go column by column (typed arrays that are transferred, names once per batch as a
 * string table) because cloning 5,000 small objects cost more than writing them; payloads go
 * packed in one transferred buffer. Nothing the caller passed in is detached or changed.
 * A point SQLite could not store faithfully (NaN, null, an object) is refused as BAD_REQUEST
 * here, before anything is written.
 */
import { FluxgateError } from '../../core/errors.js';
import type { DeadLetter, RawMessage, SnapshotCut, TelemetryPoint, WriteBatch } from '../store.js';

export const VALUE_NUMBER = 0;
export const VALUE_BOOLEAN = 1;
export const VALUE_STRING = 2;

/** Points of one batch by column. */
export interface PointColumns {
  n: number;
  /** Distinct tenant, project, device and key names of the batch. */
  strings: string[];
  /** Four indexes into `strings` per point: tenant, project, device, key. */
  refs: Uint32Array;
  ts: Float64Array;
  /** The number, or 1/0 for a boolean. */
  num: Float64Array;
  type: Uint8Array;
  /** String values, in the order of their points. */
  text: string[];
  messageIds: string[];
}

export interface WireBatch {
  points: PointColumns;
  messages: Array<Omit<RawMessage, 'payload'>>;
  deadLetters: Array<Omit<DeadLetter, 'payload'>>;
  snapshots?: SnapshotCut[];
  /** Payloads of messages, then dead letters, back to back. */
  payloads: ArrayBuffer;
  /** Byte offset where each payload ends. */
  ends: Uint32Array;
}

/** Encodes a batch; `transfer` lists the buffers to move rather than copy. */
export function encodeBatch(batch: WriteBatch): { wire: WireBatch; transfer: ArrayBuffer[] } {
  const pts = batch.points;
  const n = pts.length;
  const index = new Map<string, number>();
  const strings: string[] = [];
  const ref = (s: string): number => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  const refs = new Uint32Array(n * 4);
  const ts = new Float64Array(n);
  const num = new Float64Array(n);
  const type = new Uint8Array(n);
  const text: string[] = [];
  const messageIds: string[] = new Array(n);
  // Consecutive points mostly share tenant, project and device: skip the map for repeats.
  let lastTenant = '', lastProject = '', lastDevice = '';
  let tenantRef = -1, projectRef = -1, deviceRef = -1;
  for (let i = 0; i < n; i++) {
    const p = pts[i];
    if (p.tenant !== lastTenant || tenantRef < 0) { lastTenant = p.tenant; tenantRef = ref(p.tenant); }
    if (p.project !== lastProject || projectRef < 0) { lastProject = p.project; projectRef = ref(p.project); }
    if (p.device !== lastDevice || deviceRef < 0) { lastDevice = p.device; deviceRef = ref(p.device); }
    const o = i * 4;
    refs[o] = tenantRef; refs[o + 1] = projectRef; refs[o + 2] = deviceRef; refs[o + 3] = ref(p.key);
    ts[i] = p.ts;
    messageIds[i] = p.messageId;
    const v = p.value;
    if (typeof v === 'number' && !Number.isNaN(v)) num[i] = v;
    else if (typeof v === 'boolean') { type[i] = VALUE_BOOLEAN; num[i] = v ? 1 : 0; }
    else if (typeof v === 'string') { type[i] = VALUE_STRING; text.push(v); }
    else throw invalid(p, 'value must be a number, a string or a boolean');
    if (!Number.isFinite(p.ts)) throw invalid(p, 'ts must be a finite number of ms');
    if (typeof p.messageId !== 'string') throw invalid(p, 'messageId must be a string');
  }

  let size = 0;
  for (const m of batch.messages) size += m.payload.byteLength;
  for (const d of batch.deadLetters) size += d.payload.byteLength;
  const payloads = new ArrayBuffer(size);
  const bytes = new Uint8Array(payloads);
  const ends = new Uint32Array(batch.messages.length + batch.deadLetters.length);
  let at = 0;
  let e = 0;
  const strip = <T extends { payload: Uint8Array }>(r: T): Omit<T, 'payload'> => {
    bytes.set(r.payload, at);
    at += r.payload.byteLength;
    ends[e++] = at;
    const { payload: _, ...rest } = r;
    return rest;
  };
  const wire: WireBatch = {
    points: { n, strings, refs, ts, num, type, text, messageIds },
    messages: batch.messages.map(strip), deadLetters: batch.deadLetters.map(strip), payloads, ends, snapshots: batch.snapshots,
  };
  return { wire, transfer: [payloads, ends.buffer as ArrayBuffer, refs.buffer as ArrayBuffer, ts.buffer as ArrayBuffer, num.buffer as ArrayBuffer, type.buffer as ArrayBuffer] };
}

/** The messages and dead letters of a wire batch with their payloads as views (no copy). */
export function decodeRecords(w: WireBatch): { messages: RawMessage[]; deadLetters: DeadLetter[] } {
  let at = 0;
  let i = 0;
  const next = () => {
    const end = w.ends[i++];
    const view = Buffer.from(w.payloads, at, end - at);
    at = end;
    return view;
  };
  const messages: RawMessage[] = w.messages.map((m) => ({ ...m, payload: next() }));
  const deadLetters: DeadLetter[] = w.deadLetters.map((d) => ({ ...d, payload: next() }));
  return { messages, deadLetters };
}

function invalid(p: TelemetryPoint, why: string): FluxgateError {
  return new FluxgateError('BAD_REQUEST', `point ${p.tenant}/${p.device}/${p.key}@${p.ts}: ${why}`);
}
