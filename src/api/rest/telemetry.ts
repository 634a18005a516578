/**
 * @module REST: latest state and history of a device. History is raw (paged, ascending) or,
 * with `interval` and `agg`, bucketed (min, max, avg, sum, count, last) by the store.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import type { AggFn, Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { After, Time, errors, parseInterval, queryTime, security } from './schemas.js';

const Val = Type.Union([Type.Number(), Type.String(), Type.Boolean()]);
const AGGS = ['min', 'max', 'avg', 'sum', 'count', 'last'] as const;
// Empty buckets are omitted, so the answer is bounded by the data; this only refuses absurd requests.
const MAX_BUCKETS = 1_000_000;

interface HistoryQuery { key?: string; from?: string; to?: string; limit: number; after?: string; interval?: string; agg?: AggFn }

export async function telemetryRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { store, apiAuth } = opts;
  const tags = ['telemetry'];
  const params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) });

  const mustExist = async (tenant: string, id: string) => {
    if (!(await store.getDevice(tenant, id))) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${id} in tenant ${tenant}: create it with POST /api/v1/devices`);
  };

  app.get<{ Params: { id: string } }>('/api/v1/devices/:id/latest', {
    schema: {
      tags, summary: 'Latest value and device time of every key (last write wins by device time)', security, params,
      response: { 200: Type.Object({
        device: Type.String(), latest: Type.Record(Type.String(), Type.Object({ value: Val, ts: Type.Integer() })),
        lastSeen: Type.Optional(Type.Integer({ description: 'When any message of the device was last received (ms), suppressed and snapshot ones included; absent before its first processed message.' })),
        lastDeviceTime: Type.Optional(Type.Integer({ description: 'Greatest device time of its messages (ms).' })),
      }), ...errors(401, 403, 404) },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    await mustExist(tenant, req.params.id);
    const [values, seen] = await Promise.all([store.latest(tenant, req.params.id), store.deviceSeen(tenant, req.params.id)]);
    return { device: req.params.id, latest: Object.fromEntries(values.map((v) => [v.key, { value: v.value, ts: v.ts }])), lastSeen: seen?.lastSeen, lastDeviceTime: seen?.lastTs };
  });

  app.get<{ Params: { id: string }; Querystring: HistoryQuery }>('/api/v1/devices/:id/telemetry', {
    schema: {
      tags, summary: 'History: raw points (paged) or buckets with interval + agg', security, params,
      querystring: Type.Object({
        key: Type.Optional(Type.String({ minLength: 1, description: 'Key; required with interval.' })),
        from: Type.Optional(Time), to: Type.Optional(Time),
        limit: Type.Integer({ minimum: 1, maximum: 10000, default: 1000 }), after: Type.Optional(After),
        interval: Type.Optional(Type.String({ description: 'Bucket width: 1m, 1h, 1d, 15s…' })),
        agg: Type.Optional(Type.Union(AGGS.map((a) => Type.Literal(a)), { description: 'Aggregate per bucket (default avg).' })),
      }),
      response: {
        200: Type.Object({
          device: Type.String(), key: Type.Optional(Type.String()), from: Type.Integer(), to: Type.Integer(),
          interval: Type.Optional(Type.Integer({ description: 'Bucket width, ms.' })), agg: Type.Optional(Type.String()),
          items: Type.Optional(Type.Array(Type.Object({ key: Type.String(), ts: Type.Integer(), value: Val }))),
          buckets: Type.Optional(Type.Array(Type.Object({ ts: Type.Integer(), value: Type.Union([Val, Type.Null()]), count: Type.Integer() }))),
          next: Type.Optional(Type.String()),
        }),
        ...errors(400, 401, 403, 404),
      },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const q = req.query;
    const now = Date.now();
    const to = queryTime(q.to, 'to', now);
    const from = queryTime(q.from, 'from', to - 24 * 3_600_000);
    if (from > to) throw new FluxgateError('BAD_REQUEST', `query parameter "from" (${from}) is after "to" (${to})`);
    await mustExist(tenant, req.params.id);
    if (q.interval !== undefined || q.agg !== undefined) {
      if (!q.key) throw new FluxgateError('BAD_REQUEST', 'query parameter "key" is required with interval/agg');
      const intervalMs = parseInterval(q.interval ?? '1m');
      if ((to - from) / intervalMs > MAX_BUCKETS) throw new FluxgateError('BAD_REQUEST', `from..to at interval ${q.interval} is more than ${MAX_BUCKETS} buckets: widen the interval or narrow the range`);
      const agg = q.agg ?? 'avg';
      const buckets = await store.aggregate({ tenant, device: req.params.id, key: q.key, from, to, intervalMs, agg });
      return { device: req.params.id, key: q.key, from, to, interval: intervalMs, agg, buckets };
    }
    const page = await store.range({ tenant, device: req.params.id, key: q.key, from, to, limit: q.limit, after: q.after });
    return { device: req.params.id, key: q.key, from, to, items: page.items.map((p) => ({ key: p.key, ts: p.ts, value: p.value })), next: page.next };
  });
}
