/**
 * @module HTTP ingest source: `POST /api/v1/devices/{id}/{kind}` (Bearer device token) and
 * ThingsBoard's `POST /api/v1/{token}/{telemetry|attributes}`. The body is a JSON object or
 * an array of objects (each becomes one Envelope, `ts` and `id` honoured); 202 is sent only
 * after `Log.append` resolved, so an acknowledged message is durable. A refused request
 * appends nothing: validation runs over the whole body before the append.
 * `curl -d` sends `application/x-www-form-urlencoded`; ingest reads such bodies as JSON too,
 * so the shortest curl works. Other content types get 415.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import { generateMessageId } from '../../core/ids.js';
import { nativeTopic, type Envelope, type MessageKind } from '../../core/envelope.js';
import type { Log } from '../../log/log.js';
import type { DeviceAuth, DeviceIdentity } from '../../registry/device-auth.js';
import type { Metrics } from '../../observability/metrics.js';
import { parseDeviceTime } from '../../process/decode.js';
import { bearerToken } from '../../api/auth.js';
import type { Admission } from '../admission.js';
import type { Quotas } from '../quota.js';
import { setTimeout as delay } from 'node:timers/promises';

export interface HttpIngestOptions {
  log: Log;
  auth: DeviceAuth;
  metrics: Metrics;
  bodyLimitBytes: number;
  retryAfterSeconds: number;
  admission: Admission;
  /** Tenant quotas (rate, payload size); absent: none. */
  quotas?: Quotas;
  /** Told what was made durable (the node routes it to MQTT subscribers). */
  onDurable?: (envelopes: Envelope[]) => void;
  /** False while the node is stopping: new messages get 503 SHUTTING_DOWN. */
  accepting: () => boolean;
}

const KIND_BY_PATH: Record<string, MessageKind> = { telemetry: 'telemetry', events: 'event', snapshot: 'snapshot', attributes: 'attributes' };

const Accepted = Type.Object({ accepted: Type.Integer({ description: 'Messages made durable.' }) });
const ErrorReply = Type.Object({ code: Type.String(), message: Type.String() });
const responses = { 202: Accepted, 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 413: ErrorReply, 415: ErrorReply, 429: ErrorReply, 503: ErrorReply };
const BODY_DOC = 'Body: a JSON object of key → value, or an array of them; optional `ts` (epoch ms or ISO 8601) and `id` (message id) in each. Header `Idempotency-Key` gives a message id to a body without `id`. Answers 202 once the log holds the messages durably.';

function outcomeOf(err: unknown): string {
  if (!isFluxgateError(err)) return 'error';
  switch (err.code) {
    case 'UNAUTHENTICATED': return 'unauthenticated';
    case 'FORBIDDEN': case 'DEVICE_DISABLED': case 'DEVICE_MISMATCH': return 'forbidden';
    case 'LOG_OVERLOADED': case 'SHUTTING_DOWN': case 'LOG_UNAVAILABLE': return 'overloaded';
    case 'SNAPSHOT_SHED': return 'shed';
    case 'QUOTA_RATE': case 'QUOTA_PAYLOAD': return 'quota';
    default: return 'bad_request';
  }
}

/** Turns a validated body into Envelopes, or throws BAD_REQUEST naming the element and field. */
export function envelopesOf(body: unknown, who: DeviceIdentity, kind: MessageKind, idempotencyKey: string | undefined, now: number): Envelope[] {
  const items = Array.isArray(body) ? body : [body];
  if (items.length === 0) throw new FluxgateError('BAD_REQUEST', 'the body is an empty array: send at least one object');
  return items.map((item, i) => {
    const where = Array.isArray(body) ? `element ${i}` : 'the body';
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new FluxgateError('BAD_REQUEST', `${where} is not a JSON object`);
    const obj = item as Record<string, unknown>;
    let deviceTime: number | undefined;
    if (obj.ts !== undefined) {
      deviceTime = parseDeviceTime(obj.ts);
      if (deviceTime === undefined) throw new FluxgateError('BAD_REQUEST', `${where}: field "ts" must be epoch milliseconds or an ISO 8601 time, got ${JSON.stringify(obj.ts)}`);
    }
    if (obj.id !== undefined && typeof obj.id !== 'string' && typeof obj.id !== 'number') throw new FluxgateError('BAD_REQUEST', `${where}: field "id" must be a string or a number`);
    const messageId = obj.id !== undefined ? String(obj.id) : idempotencyKey ? (items.length > 1 ? `${idempotencyKey}:${i}` : idempotencyKey) : generateMessageId(now);
    return {
      tenant: who.tenant, project: who.project, device: who.device, kind,
      topic: nativeTopic(who.device, kind), protocol: 'http', deviceTime, receiveTime: now, messageId,
      payload: Buffer.from(JSON.stringify(obj)),
    } satisfies Envelope;
  });
}

export async function httpIngestRoutes(app: FastifyInstance, opts: HttpIngestOptions): Promise<void> {
  const { log, auth, metrics } = opts;
  // curl -d defaults to form encoding; text/plain is what many small firmwares send.
  const asJson = (_req: FastifyRequest, body: string, done: (err: Error | null, value?: unknown) => void) => {
    try { done(null, JSON.parse(body)); } catch (err) { done(new FluxgateError('BAD_JSON', `the body is not valid JSON: ${(err as Error).message}`)); }
  };
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string', bodyLimit: opts.bodyLimitBytes }, asJson);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: opts.bodyLimitBytes }, asJson);

  // Authentication runs first (onRequest), so a stranger's request is refused before its body is read.
  const identities = new WeakMap<FastifyRequest, DeviceIdentity>();
  const refuse = (err: unknown, tenant = 'unknown') => {
    metrics.messages.inc({ tenant, protocol: 'http', outcome: outcomeOf(err) });
    return err;
  };
  const authenticate = (tokenOf: (req: FastifyRequest) => string | undefined, deviceOf: (req: FastifyRequest) => string | undefined) =>
    async (req: FastifyRequest) => {
      try {
        if (!opts.accepting()) throw new FluxgateError('SHUTTING_DOWN', 'the node is stopping: retry shortly');
        identities.set(req, await auth.authenticate(tokenOf(req), deviceOf(req)));
      } catch (err) {
        throw refuse(err);
      }
    };

  async function ingest(req: FastifyRequest, reply: FastifyReply, kind: MessageKind) {
    const who = identities.get(req);
    if (!who) throw new FluxgateError('UNAUTHENTICATED', 'no device token');
    try {
      const key = req.headers['idempotency-key'];
      const envelopes = envelopesOf(req.body, who, kind, typeof key === 'string' ? key : undefined, Date.now());
      const decision = opts.admission.decide(kind);
      if (decision === 'slow-down') {
        throw new FluxgateError('LOG_OVERLOADED', 'processing is behind past log.maxLagRecords: retry after the Retry-After seconds', { details: { retryAfterSeconds: opts.retryAfterSeconds } });
      }
      if (decision === 'shed') {
        opts.admission.shed(who.tenant, 'http', envelopes.length);
        throw new FluxgateError('SNAPSHOT_SHED', 'processing is behind: this snapshot was not taken (events and telemetry still are); the next periodic snapshot will be');
      }
      // Tenant quotas: the whole body passes or none of it (429 + Retry-After, or 413), counted per tenant.
      const over = opts.quotas?.check(who.tenant, envelopes.length, envelopes.reduce((m, e) => Math.max(m, e.payload.length), 0));
      if (over) {
        // An over-rate client waits for its answer (a timer, no CPU), so a flood cannot crowd out other tenants' requests.
        if (over.code === 'QUOTA_RATE' && opts.quotas!.refusalDelayMs > 0) await delay(opts.quotas!.refusalDelayMs);
        throw over;
      }
      const end = metrics.logAppendSeconds.startTimer();
      await log.append(envelopes);
      end();
      opts.onDurable?.(envelopes);
      metrics.messages.inc({ tenant: who.tenant, protocol: 'http', outcome: 'accepted' }, envelopes.length);
      return reply.status(202).send({ accepted: envelopes.length });
    } catch (err) {
      throw refuse(err, who.tenant);
    }
  }

  const kinds = Object.keys(KIND_BY_PATH);
  app.post<{ Params: { id: string; kind: string } }>('/api/v1/devices/:id/:kind', {
    bodyLimit: opts.bodyLimitBytes,
    onRequest: authenticate(bearerToken, (req) => (req.params as { id: string }).id),
    schema: {
      tags: ['ingest'], summary: 'Send telemetry, events, a snapshot or attributes of a device (Bearer device token)',
      description: BODY_DOC,
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }), kind: Type.Union(kinds.map((k) => Type.Literal(k))) }),
      response: responses, security: [{ bearer: [] }],
    },
  }, (req, reply) => ingest(req, reply, KIND_BY_PATH[req.params.kind]));

  app.post<{ Params: { token: string; kind: string } }>('/api/v1/:token/:kind', {
    bodyLimit: opts.bodyLimitBytes,
    onRequest: authenticate((req) => (req.params as { token: string }).token, () => undefined),
    schema: {
      tags: ['ingest'], summary: 'ThingsBoard-compatible ingest: the device token in the path',
      description: BODY_DOC,
      params: Type.Object({ token: Type.String({ minLength: 1 }), kind: Type.Union([Type.Literal('telemetry'), Type.Literal('attributes')]) }),
      response: responses,
    },
  }, (req, reply) => ingest(req, reply, KIND_BY_PATH[req.params.kind]));
}
