/** @module REST: the raw archive, every message as received (any payload shape), by project, device, MQTT topic filter and time. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { FluxgateError } from '../../core/errors.js';
import { parseFilter } from '../../sources/mqtt/topics.js';
import { After, Limit, Time, errors, queryTime, security } from './schemas.js';
import { payloadView } from './payload-view.js';

export async function messageRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { store, apiAuth } = opts;
  app.get<{ Querystring: { project?: string; device?: string; topic?: string; from?: string; to?: string; limit: number; after?: string } }>('/api/v1/messages', {
    schema: {
      tags: ['messages'], summary: 'Raw archive: messages as received, ascending by device time', security,
      querystring: Type.Object({ project: Type.Optional(Type.String()), device: Type.Optional(Type.String()), topic: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'MQTT topic filter: + one level, # this level and all below (e.g. mtic/msg/client/realtime/+/+/dev-1/#).' })), from: Type.Optional(Time), to: Type.Optional(Time), limit: Limit, after: Type.Optional(After) }),
      response: {
        200: Type.Object({
          items: Type.Array(Type.Object({
            project: Type.String(), device: Type.String(), topic: Type.String(), kind: Type.String(), ts: Type.Integer(), receiveTime: Type.Integer(),
            messageId: Type.String(), payload: Type.String(), encoding: Type.String(),
          })),
          next: Type.Optional(Type.String()),
        }),
        ...errors(400, 401, 403),
      },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const q = req.query;
    const to = queryTime(q.to, 'to', Date.now());
    const from = queryTime(q.from, 'from', to - 24 * 3_600_000);
    if (q.topic !== undefined) {
      const parsed = parseFilter(q.topic);
      if (!parsed || parsed.group !== undefined) throw new FluxgateError('BAD_REQUEST', `query parameter "topic" must be an MQTT topic filter (levels split by /, + alone in a level, # alone in the last level), got ${JSON.stringify(q.topic)}`);
    }
    const page = await store.messages({ tenant, project: q.project, device: q.device, topic: q.topic, from, to, limit: q.limit, after: q.after });
    return {
      items: page.items.map((m) => ({ project: m.project, device: m.device, topic: m.topic, kind: m.kind, ts: m.ts, receiveTime: m.receiveTime, messageId: m.messageId, ...payloadView(m.payload) })),
      next: page.next,
    };
  });
}
