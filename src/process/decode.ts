/**
 * @module Decode: one logged Envelope → key/value points and a raw archive row.
 * JSON payloads: an object of key → value (numbers, strings, booleans; nested objects
 * flattened to dotted keys; arrays kept as their JSON text), an array of such objects, or
 * ThingsBoard's `{ "ts": …, "values": { … } }`. `ts` (ms) is the device time, else the
 * envelope's, else the receive time; `id` is the message id. A payload that is not JSON is
 * archived and also returned as a dead letter with the reason; `{}`, scalars and empty
 * payloads are archived only (nothing to store as points, nothing wrong either).
 * With a project's `kindField` (./settings.ts), that top-level field of an object payload (or
 * of the first element of an array) names the message's kind and is not stored as a point.
 */
import type { Envelope } from '../core/envelope.js';
import type { DeadLetter, RawMessage, TelemetryPoint, Value } from '../stores/store.js';
import { kindFromField, type ProjectSettings } from './settings.js';

export interface Decoded {
  points: TelemetryPoint[];
  message: RawMessage;
  deadLetter?: DeadLetter;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_DEPTH = 8;

function flatten(obj: Record<string, unknown>, prefix: string, out: Array<[string, Value]>, depth: number): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number') { if (Number.isFinite(v)) out.push([key, v]); }
    else if (typeof v === 'string' || typeof v === 'boolean') out.push([key, v]);
    else if (Array.isArray(v)) out.push([key, JSON.stringify(v)]);
    else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_DEPTH) out.push([key, JSON.stringify(v)]);
      else flatten(v as Record<string, unknown>, key, out, depth + 1);
    }
  }
}

/** Device time of a JSON `ts`: epoch ms as a number or numeric string, or an ISO 8601 string. */
export function parseDeviceTime(ts: unknown): number | undefined {
  if (typeof ts === 'number' && Number.isFinite(ts)) return Math.trunc(ts);
  if (typeof ts === 'string' && ts !== '') {
    const n = Number(ts);
    if (Number.isFinite(n)) return Math.trunc(n);
    const d = Date.parse(ts);
    if (Number.isFinite(d)) return d;
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Points of one JSON object; `index` distinguishes elements of an array payload. */
function pointsOf(env: Envelope, obj: Record<string, unknown>, index: number | undefined, out: TelemetryPoint[], skip?: string): number {
  const ts = parseDeviceTime(obj.ts) ?? env.deviceTime ?? env.receiveTime;
  const clientId = typeof obj.id === 'string' || typeof obj.id === 'number' ? String(obj.id) : undefined;
  const messageId = clientId ?? (index === undefined ? env.messageId : `${env.messageId}:${index}`);
  const body = isObject(obj.values) && obj.ts !== undefined ? obj.values : obj;
  const pairs: Array<[string, Value]> = [];
  flatten(body, '', pairs, 0);
  for (const [key, value] of pairs) {
    if (body === obj && (key === 'ts' || key === 'id' || key === skip)) continue;
    out.push({ tenant: env.tenant, project: env.project, device: env.device, key, ts, value, messageId });
  }
  return ts;
}

export function decodeEnvelope(env: Envelope, settings: ProjectSettings = {}): Decoded {
  const message: RawMessage = {
    tenant: env.tenant, project: env.project, device: env.device, topic: env.topic, kind: env.kind,
    ts: env.deviceTime ?? env.receiveTime, receiveTime: env.receiveTime, messageId: env.messageId, payload: env.payload,
  };
  const points: TelemetryPoint[] = [];
  if (env.payload.byteLength === 0) return { points, message };
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(env.payload));
  } catch (err) {
    const reason = err instanceof TypeError ? 'payload is not valid UTF-8 text' : `payload is not valid JSON: ${(err as Error).message}`;
    return { points, message, deadLetter: deadLetterOf(env, reason) };
  }
  const skip = settings.kindField;
  if (skip !== undefined) {
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    const kind = isObject(first) ? kindFromField(settings, first[skip]) : undefined;
    if (kind) message.kind = kind;
  }
  if (isObject(parsed)) {
    message.ts = pointsOf(env, parsed, undefined, points, skip);
    // The client's `id` is the message's identity (retries carry it), not the id the source generated.
    if (typeof parsed.id === 'string' || typeof parsed.id === 'number') message.messageId = String(parsed.id);
  } else if (Array.isArray(parsed)) {
    parsed.forEach((el, i) => { if (isObject(el)) pointsOf(env, el, parsed.length === 1 ? undefined : i, points, skip); });
  }
  return { points, message };
}

/** The dead letter of a logged message (an Envelope) or of a decoded one (its raw archive row), with its reason. */
export function deadLetterOf(m: Pick<RawMessage, 'tenant' | 'project' | 'device' | 'topic' | 'messageId' | 'receiveTime' | 'payload' | 'kind'>, reason: string): DeadLetter {
  return {
    tenant: m.tenant, project: m.project, device: m.device, topic: m.topic,
    messageId: m.messageId, receiveTime: m.receiveTime, reason, payload: m.payload, kind: m.kind,
  };
}
