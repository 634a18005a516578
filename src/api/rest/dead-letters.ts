/**
 * @module REST: the dead-letter queue. A dead letter is a message processing could not take
 * (undecodable payload, refused by the store, or a store write that kept failing after
 * process.retryMaxAttempts), kept with its reason, tenant, kind and original bytes.
 *
 * List, replay and discard take the same selection: `ids`, or a filter (reason substring,
 * device, failed from/to), or nothing for all of the tenant's. Replay appends the originals to
 * the log again (durably: same message id, kind, topic and receive time, so history lands
 * where it belonged and de-duplication keeps a replay from storing anything twice), then
 * removes from the queue only the letters that did not fail again meanwhile: a cause that is
 * not fixed yet dead-letters them anew, with the new reason. Counted in
 * fluxgate_dead_letters_replayed_total and fluxgate_dead_letters_discarded_total.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Envelope } from '../../core/envelope.js';
import type { Log } from '../../log/log.js';
import { counterOf, type Metrics } from '../../observability/metrics.js';
import type { DeadLetterFilter, Store, StoredDeadLetter } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { After, Limit, Time, errors, queryTime, security } from './schemas.js';
import { payloadView } from './payload-view.js';

const PAGE = 1000;
/** Envelopes appended to the log per call while replaying. */
const APPEND_CHUNK = 500;

const FilterFields = {
  reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500, description: 'Only dead letters whose reason contains this text, e.g. "not valid JSON", "store refused", "store write failed".' })),
  device: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Only this device\'s.' })),
  from: Type.Optional(Time),
  to: Type.Optional(Type.String({ description: 'Epoch milliseconds or ISO 8601; with from: failed from ≤ failedAt < to.' })),
};
const Selection = Type.Object({
  ids: Type.Optional(Type.Array(Type.String(), { maxItems: 10000, description: 'Dead letters to act on; omit (and give no filter) for all.' })),
  ...FilterFields,
}, { additionalProperties: false });
type SelectionBody = Static<typeof Selection>;

const Item = Type.Object({
  id: Type.String(), project: Type.String(), device: Type.String(), topic: Type.String(), kind: Type.String(), messageId: Type.String(),
  receiveTime: Type.Integer(), failedAt: Type.Integer(), reason: Type.String(), payload: Type.String(), encoding: Type.String(),
});


function filterOf(q: { reason?: string; device?: string; from?: string; to?: string }): DeadLetterFilter {
  return {
    reason: q.reason, device: q.device,
    from: q.from === undefined ? undefined : queryTime(q.from, 'from', 0),
    to: q.to === undefined ? undefined : queryTime(q.to, 'to', Number.MAX_SAFE_INTEGER),
  };
}

export async function deadLetterRoutes(app: FastifyInstance, opts: { store: Store; log: Log; apiAuth: ApiAuth; metrics?: Metrics }): Promise<void> {
  const { store, log, apiAuth } = opts;
  const tags = ['dead-letters'];
  const replayed = opts.metrics && counterOf(opts.metrics.registry, 'fluxgate_dead_letters_replayed_total', 'Dead letters appended to the log again by a replay (REST).', ['tenant']);
  const discarded = opts.metrics && counterOf(opts.metrics.registry, 'fluxgate_dead_letters_discarded_total', 'Dead letters discarded (REST).', ['tenant']);

  app.get<{ Querystring: { limit: number; after?: string; reason?: string; device?: string; from?: string; to?: string } }>('/api/v1/dead-letters', {
    schema: {
      tags, summary: 'Messages processing could not take, with their reason (filter by reason text, device, failed from/to)', security,
      querystring: Type.Object({ limit: Limit, after: Type.Optional(After), ...FilterFields }),
      response: { 200: Type.Object({ items: Type.Array(Item), next: Type.Optional(Type.String()) }), ...errors(400, 401, 403) },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const page = await store.deadLetters(tenant, req.query.limit, req.query.after, filterOf(req.query));
    return {
      items: page.items.map((d) => ({ id: d.id, project: d.project, device: d.device, topic: d.topic, kind: d.kind ?? 'telemetry', messageId: d.messageId, receiveTime: d.receiveTime, failedAt: d.failedAt, reason: d.reason, ...payloadView(d.payload) })),
      next: page.next,
    };
  });

  /** The tenant's dead letters that the selection names (ids and filter together narrow; nothing: all). */
  async function select(tenant: string, body: SelectionBody | undefined): Promise<StoredDeadLetter[]> {
    const out: StoredDeadLetter[] = [];
    const wanted = body?.ids ? new Set(body.ids) : undefined;
    const filter = filterOf(body ?? {});
    let after: string | undefined;
    do {
      const page = await store.deadLetters(tenant, PAGE, after, filter);
      for (const d of page.items) if (!wanted || wanted.has(d.id)) out.push(d);
      after = page.next;
    } while (after);
    return out;
  }

  app.post<{ Body: SelectionBody }>('/api/v1/dead-letters/replay', {
    schema: { tags, summary: 'Put dead letters (by ids, a filter, or all) back through the log; those that do not fail again leave the queue', security, body: Selection, response: { 200: Type.Object({ replayed: Type.Integer() }), ...errors(400, 401, 403, 503) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req, 'write');
    const letters = await select(tenant, req.body);
    if (letters.length === 0) return { replayed: 0 };
    const started = Date.now();
    for (let i = 0; i < letters.length; i += APPEND_CHUNK) {
      const envelopes: Envelope[] = letters.slice(i, i + APPEND_CHUNK).map((d) => ({
        tenant, project: d.project, device: d.device, kind: d.kind ?? 'telemetry', topic: d.topic, protocol: 'http',
        receiveTime: d.receiveTime, messageId: d.messageId, payload: d.payload,
      }));
      await log.append(envelopes);
    }
    // A letter that failed again since the replay began is a new failure: it stays.
    await store.deleteDeadLetters(tenant, letters.map((d) => d.id), started);
    replayed?.inc({ tenant }, letters.length);
    return { replayed: letters.length };
  });

  app.delete<{ Body: SelectionBody }>('/api/v1/dead-letters', {
    schema: { tags, summary: 'Discard dead letters (by ids, a filter, or all)', security, body: Selection, response: { 200: Type.Object({ discarded: Type.Integer() }), ...errors(400, 401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req, 'write');
    const ids = (await select(tenant, req.body)).map((d) => d.id);
    const n = ids.length ? await store.deleteDeadLetters(tenant, ids) : 0;
    discarded?.inc({ tenant }, n);
    return { discarded: n };
  });
}
