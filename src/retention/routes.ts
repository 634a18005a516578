/**
 * @module REST: retention. `GET /api/v1/retention` shows the caller's tenant its effective
 * windows (days per tier, 0 = for ever), the device-time cutoffs they give now, whether raw data
 * is exported to Parquet first, and the last pass (when, how long, and this tenant's own exports
 * and roll-up deletions; totals over all tenants are for /metrics and /readyz only).
 * `POST /api/v1/retention/run` (platform admin) runs a pass now and answers when it is done.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ApiAuth } from '../api/auth.js';
import { errors, security } from '../api/rest/schemas.js';
import type { Store } from '../stores/store.js';
import type { RetentionScheduler } from './scheduler.js';
import { dayStartOf } from './parquet-export.js';
import { cutoffOf, windowsOf } from './windows.js';

/** The raw cutoff a pass would apply now: whole UTC days when exporting (./pass.ts). */
function rawCutoff(days: number, now: number, exporting: boolean): number | undefined {
  const c = cutoffOf(days, now);
  return c !== undefined && exporting ? dayStartOf(c) : c;
}

const Tiers = Type.Object({ raw: Type.Number(), rollup1m: Type.Number(), rollup1h: Type.Number() });
const Cutoffs = Type.Object({ raw: Type.Optional(Type.Integer()), rollup1m: Type.Optional(Type.Integer()), rollup1h: Type.Optional(Type.Integer()) });
const Export = Type.Object({ tenant: Type.String(), day: Type.String(), file: Type.Optional(Type.String()), rows: Type.Integer() });
const LastPass = Type.Object({
  startedAt: Type.Integer(), finishedAt: Type.Integer(), durationMs: Type.Integer(), ok: Type.Boolean(),
  rawCutoff: Type.Optional(Type.Integer()), exports: Type.Array(Export), rollupsDeleted: Type.Record(Type.String(), Type.Integer()),
  error: Type.Optional(Type.String()),
});

export async function retentionRoutes(app: FastifyInstance, opts: { retention: RetentionScheduler; store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { retention, store, apiAuth } = opts;
  const tags = ['retention'];

  app.get('/api/v1/retention', {
    schema: {
      tags, summary: 'The tenant\'s retention windows, current cutoffs, Parquet export and last pass', security,
      response: {
        200: Type.Object({
          tenant: Type.String(), days: Tiers, cutoffs: Cutoffs, exportsToParquet: Type.Boolean(), intervalMs: Type.Integer(),
          lastPass: Type.Optional(LastPass),
        }),
        ...errors(401, 403, 404),
      },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const w = windowsOf(await store.getTenant(tenant), retention.config);
    const now = Date.now();
    const last = retention.lastPass;
    const mine = last?.tenants[tenant];
    return {
      tenant,
      days: { raw: w.rawDays, rollup1m: w.rollup1mDays, rollup1h: w.rollup1hDays },
      cutoffs: { raw: rawCutoff(w.rawDays, now, retention.exportDir !== undefined), rollup1m: cutoffOf(w.rollup1mDays, now), rollup1h: cutoffOf(w.rollup1hDays, now) },
      exportsToParquet: retention.exportDir !== undefined,
      intervalMs: retention.intervalMs,
      lastPass: last && {
        startedAt: last.startedAt, finishedAt: last.finishedAt, durationMs: last.finishedAt - last.startedAt, ok: !mine?.error,
        rawCutoff: mine?.rawCutoff, exports: mine?.exports ?? [], rollupsDeleted: mine?.rollupsDeleted ?? {}, error: mine?.error,
      },
    };
  });

  app.post('/api/v1/retention/run', {
    schema: {
      tags, summary: 'Run a retention pass now (platform admin); answers when it is done', security,
      response: {
        200: Type.Object({
          startedAt: Type.Integer(), finishedAt: Type.Integer(),
          deleted: Type.Object({ raw: Type.Integer(), rollup_1m: Type.Integer(), rollup_1h: Type.Integer() }),
          exportedFiles: Type.Integer(), exportedRows: Type.Integer(), rollupsSkipped: Type.Boolean(), errors: Type.Array(Type.String()),
        }),
        ...errors(401, 403, 404, 503),
      },
    },
  }, async (req) => {
    await apiAuth.principalOf(req, 'platform');
    const r = await retention.runNow();
    return { startedAt: r.startedAt, finishedAt: r.finishedAt, deleted: r.deleted, exportedFiles: r.exportedFiles, exportedRows: r.exportedRows, rollupsSkipped: r.rollupsSkipped, errors: r.errors };
  });
}
