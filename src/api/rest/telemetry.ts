/**
 * @module REST: latest state and history of a device. History is raw (paged, ascending) or,
 * with `interval` and `agg`, bucketed (min, max, avg, sum, count, last). Bucketed history and
 * raw listings over long ranges read the 1-minute or 1-hour roll-ups when they can
 * (./history.ts decides); the answer's `resolution` says which it read (raw, 1m, 1h), and
 * buckets read from roll-ups carry every statistic (count, min, max, avg, sum, first, last).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import type { AggFn, Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { aggValue, resolutionForInterval, resolutionForListing, rollupHistory, type HistoryResolution } from './history.js';
import { After, Time, errors, parseInterval, queryTime, security } from './schemas.js';

const Val = Type.Union([Type.Number(), Type.String(), Type.Boolean()]);
const AGGS = ['min', 'max', 'avg', 'sum', 'count', 'last'] as const;
// Empty buckets are omitted, so the answer is bounded by the data; this only refuses absurd requests.
const MAX_BUCKETS = 1_000_000;

interface HistoryQuery { key?: string; from?: string; to?: string; limit: number; after?: string; interval?: string; agg?: AggFn; resolution?: HistoryResolution }
const RESOLUTIONS = ['raw', '1m', '1h'] as const;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const Stat = Type.Union([Type.Number(), Type.Null()]);

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
        resolution: Type.Optional(Type.Union(RESOLUTIONS.map((r) => Type.Literal(r)), {
          description: 'Force what is read: raw points or the 1m/1h roll-ups. Default: roll-ups when interval is a whole multiple of 1h/1m, raw otherwise; a raw listing of one key over more than 3 days whose points do not fit in one page (limit) answers with 1m buckets (up to 7 days) or 1h buckets.',
        })),
      }),
      response: {
        200: Type.Object({
          device: Type.String(), key: Type.Optional(Type.String()), from: Type.Integer(), to: Type.Integer(),
          interval: Type.Optional(Type.Integer({ description: 'Bucket width, ms.' })), agg: Type.Optional(Type.String()),
          resolution: Type.Union(RESOLUTIONS.map((r) => Type.Literal(r)), { description: 'What the answer was computed from: raw points or the 1m/1h roll-ups.' }),
          items: Type.Optional(Type.Array(Type.Object({ key: Type.String(), ts: Type.Integer(), value: Val }))),
          buckets: Type.Optional(Type.Array(Type.Object({
            ts: Type.Integer(), value: Type.Union([Val, Type.Null()]), count: Type.Integer(),
            min: Type.Optional(Stat), max: Type.Optional(Stat), avg: Type.Optional(Stat), sum: Type.Optional(Stat),
            first: Type.Optional(Val), last: Type.Optional(Val),
          }, { description: 'One bucket; read from roll-ups it also has min/max/avg/sum (numbers only, null without) and first/last (by device time).' }))),
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
    const device = req.params.id;
    const bucketed = q.interval !== undefined || q.agg !== undefined;
    const forced = q.resolution;
    let resolution: HistoryResolution;
    let intervalMs = MINUTE;
    if (bucketed) {
      intervalMs = q.interval !== undefined ? parseInterval(q.interval) : forced === '1h' ? HOUR : MINUTE;
      resolution = resolutionForInterval(intervalMs, forced);
    } else {
      // A listing with a cursor is paging through raw points, and roll-ups are per key: both stay raw.
      resolution = q.after !== undefined || (q.key === undefined && forced === undefined) ? 'raw' : resolutionForListing(from, to, forced);
      if (resolution !== 'raw' && forced === undefined) {
        // Chosen for the range's length: raw points still answer when they fit in one page.
        const page = await store.range({ tenant, device, key: q.key, from, to, limit: q.limit });
        if (page.next === undefined) return { device, key: q.key, from, to, resolution: 'raw' as const, items: page.items.map((p) => ({ key: p.key, ts: p.ts, value: p.value })) };
      }
      if (resolution !== 'raw') intervalMs = resolution === '1h' ? HOUR : MINUTE;
    }
    if (bucketed || resolution !== 'raw') {
      if (!q.key) throw new FluxgateError('BAD_REQUEST', `query parameter "key" is required with ${bucketed ? 'interval/agg' : `resolution ${resolution}`}`);
      if ((to - from) / intervalMs > MAX_BUCKETS) throw new FluxgateError('BAD_REQUEST', `from..to at interval ${q.interval ?? resolution} is more than ${MAX_BUCKETS} buckets: widen the interval or narrow the range`);
      const agg = q.agg ?? 'avg';
      if (resolution === 'raw') {
        const buckets = await store.aggregate({ tenant, device, key: q.key, from, to, intervalMs, agg });
        return { device, key: q.key, from, to, interval: intervalMs, agg, resolution, buckets };
      }
      const rollups = await rollupHistory(store, { tenant, device, key: q.key, from, to, intervalMs, resolution });
      const buckets = rollups.map((r) => ({ ts: r.ts, value: aggValue(r, agg), count: r.count, min: r.min, max: r.max, avg: r.avg, sum: r.sum, first: r.first, last: r.last }));
      return { device, key: q.key, from, to, interval: intervalMs, agg, resolution, buckets };
    }
    const page = await store.range({ tenant, device, key: q.key, from, to, limit: q.limit, after: q.after });
    return { device, key: q.key, from, to, resolution, items: page.items.map((p) => ({ key: p.key, ts: p.ts, value: p.value })), next: page.next };
  });
}
