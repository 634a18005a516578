/**
 * @module REST: the dead-letter queue. Listing shows each message with its reason and
 * original bytes; replay appends the originals to the log again (durably, then removes them
 * from the queue), so a fixed cause lets them through and an unfixed one dead-letters them anew.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Envelope } from '../../core/envelope.js';
import type { Log } from '../../log/log.js';
import type { Store, StoredDeadLetter } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { After, Limit, errors, security } from './schemas.js';
import { payloadView } from './payload-view.js';

const REPLAY_PAGE = 1000;

export async function deadLetterRoutes(app: FastifyInstance, opts: { store: Store; log: Log; apiAuth: ApiAuth }): Promise<void> {
  const { store, log, apiAuth } = opts;
  const tags = ['dead-letters'];
  const Ids = Type.Object({ ids: Type.Optional(Type.Array(Type.String(), { maxItems: 10000, description: 'Dead letters to act on; omit for all.' })) });

  app.get<{ Querystring: { limit: number; after?: string } }>('/api/v1/dead-letters', {
    schema: {
      tags, summary: 'Messages processing could not take, with their reason', security,
      querystring: Type.Object({ limit: Limit, after: Type.Optional(After) }),
      response: {
        200: Type.Object({
          items: Type.Array(Type.Object({
            id: Type.String(), project: Type.String(), device: Type.String(), topic: Type.String(), messageId: Type.String(),
            receiveTime: Type.Integer(), failedAt: Type.Integer(), reason: Type.String(), payload: Type.String(), encoding: Type.String(),
          })),
          next: Type.Optional(Type.String()),
        }),
        ...errors(400, 401, 403),
      },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const page = await store.deadLetters(tenant, req.query.limit, req.query.after);
    return {
      items: page.items.map((d) => ({ id: d.id, project: d.project, device: d.device, topic: d.topic, messageId: d.messageId, receiveTime: d.receiveTime, failedAt: d.failedAt, reason: d.reason, ...payloadView(d.payload) })),
      next: page.next,
    };
  });

  /** Every dead letter of the tenant, or those named. */
  async function select(tenant: string, ids?: string[]): Promise<StoredDeadLetter[]> {
    const out: StoredDeadLetter[] = [];
    const wanted = ids ? new Set(ids) : undefined;
    let after: string | undefined;
    do {
      const page = await store.deadLetters(tenant, REPLAY_PAGE, after);
      for (const d of page.items) if (!wanted || wanted.has(d.id)) out.push(d);
      after = page.next;
    } while (after);
    return out;
  }

  app.post<{ Body: { ids?: string[] } }>('/api/v1/dead-letters/replay', {
    schema: { tags, summary: 'Append dead letters to the log again and remove them from the queue', security, body: Ids, response: { 200: Type.Object({ replayed: Type.Integer() }), ...errors(400, 401, 403, 503) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const letters = await select(tenant, req.body?.ids);
    if (letters.length === 0) return { replayed: 0 };
    const now = Date.now();
    const envelopes: Envelope[] = letters.map((d) => ({
      tenant, project: d.project, device: d.device, kind: 'telemetry', topic: d.topic, protocol: 'http',
      receiveTime: now, messageId: d.messageId, payload: d.payload,
    }));
    await log.append(envelopes);
    await store.deleteDeadLetters(tenant, letters.map((d) => d.id));
    return { replayed: letters.length };
  });

  app.delete<{ Body: { ids?: string[] } }>('/api/v1/dead-letters', {
    schema: { tags, summary: 'Discard dead letters (the named ones, or all)', security, body: Ids, response: { 200: Type.Object({ discarded: Type.Integer() }), ...errors(400, 401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const ids = req.body?.ids ?? (await select(tenant)).map((d) => d.id);
    return { discarded: ids.length ? await store.deleteDeadLetters(tenant, ids) : 0 };
  });
}
