/**
 * @module One retention pass over every tenant: export expiring raw messages to Parquet (when
 * an export directory is set), then delete each tier before each tenant's own cutoff. Raw rows
 * of a tenant are deleted only after their day's file is durable; when its export fails, that
 * tenant's raw rows stay this pass (and the pass reports the error) while other tenants go on.
 *
 * With export on, a tenant's raw cutoff is rounded down to a UTC day boundary, so a file
 * always holds a whole day (raw data lives up to one day longer than the window), and only
 * messages received before the export began are deleted: one that arrives meanwhile with an old
 * device time waits for the next pass and its next part file. Tenants that are not in the
 * registry but have data follow the default raw window, without export.
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../core/logger.js';
import type { RawCutoffs, Store, TenantRecord } from '../stores/store.js';
import { ParquetEncoder } from './parquet-encoder.js';
import { daysWithMessages, dayStartOf, exportDay, type DayExport } from './parquet-export.js';
import { cutoffOf, defaultWindows, windowsOf, type Tier } from './windows.js';

export interface PassOptions {
  store: Store;
  /** The node's tenant defaults (`tenants.*`). */
  config: Pick<Config, 'tenants'>;
  /** Where Parquet files go; undefined: no export. */
  exportDir?: string;
  logger?: Logger;
  now?: number;
}

export interface TenantPassResult {
  /** Raw device-time cutoff applied this pass (ms); absent when kept for ever or its export failed. */
  rawCutoff?: number;
  exports: DayExport[];
  rollupsDeleted: Partial<Record<Tier, number>>;
  error?: string;
}

export interface PassResult {
  startedAt: number;
  finishedAt: number;
  deleted: Record<Tier, number>;
  exportedFiles: number;
  exportedRows: number;
  tenants: Record<string, TenantPassResult>;
  /** Roll-up tiers were skipped because the store keeps no roll-ups. */
  rollupsSkipped: boolean;
  errors: string[];
}

/** Roll-up resolutions (store.ts `Resolution`); stores without roll-ups lack deleteRollupsBefore. */
type Resolution = '1m' | '1h';
type RollupStore = Store & { deleteRollupsBefore(resolution: Resolution, cutoff: number, tenant?: string): Promise<number> };
const hasRollups = (s: Store): s is RollupStore => typeof (s as Partial<RollupStore>).deleteRollupsBefore === 'function';

export async function runPass(opts: PassOptions): Promise<PassResult> {
  const { store, logger } = opts;
  const startedAt = Date.now();
  const now = opts.now ?? startedAt;
  const result: PassResult = { startedAt, finishedAt: 0, deleted: { raw: 0, rollup_1m: 0, rollup_1h: 0 }, exportedFiles: 0, exportedRows: 0, tenants: {}, rollupsSkipped: !hasRollups(store), errors: [] };
  const tenants = await store.listTenants();
  const defaultCut = cutoffOf(defaultWindows(opts.config).rawDays, now);
  const cutoffs: RawCutoffs = { tenants: {}, others: defaultCut === undefined ? undefined : { before: defaultCut } };

  const encoder = new ParquetEncoder();
  try {
    await expireRaw(opts, tenants, now, cutoffs, result, encoder);
  } finally {
    await encoder.close();
  }

  try {
    result.deleted.raw = await store.deleteBefore(cutoffs);
  } catch (err) {
    result.errors.push(`raw deletion failed: ${(err as Error).message}`);
    logger?.error({ err }, 'retention: raw deletion failed');
  }

  if (hasRollups(store)) {
    for (const t of tenants) {
      const w = windowsOf(t, opts.config);
      for (const [tier, res, days] of [['rollup_1m', '1m', w.rollup1mDays], ['rollup_1h', '1h', w.rollup1hDays]] as const) {
        const cut = cutoffOf(days, now);
        if (cut === undefined) continue;
        try {
          const n = await store.deleteRollupsBefore(res, cut, t.id);
          result.deleted[tier] += n;
          result.tenants[t.id].rollupsDeleted[tier] = n;
        } catch (err) {
          result.errors.push(`${tier} deletion for tenant ${t.id} failed: ${(err as Error).message}`);
          logger?.error({ err, tenant: t.id, tier }, 'retention: roll-up deletion failed');
        }
      }
    }
  }
  result.finishedAt = Date.now();
  return result;
}

/** Decides each tenant's raw cutoff, exporting its expiring days first when export is on. */
async function expireRaw(opts: PassOptions, tenants: TenantRecord[], now: number, cutoffs: RawCutoffs, result: PassResult, encoder: ParquetEncoder): Promise<void> {
  const { store, logger } = opts;
  for (const t of tenants) {
    const w = windowsOf(t, opts.config);
    const r: TenantPassResult = { exports: [], rollupsDeleted: {} };
    result.tenants[t.id] = r;
    let before = cutoffOf(w.rawDays, now);
    if (before === undefined) {
      cutoffs.tenants[t.id] = null;
      continue;
    }
    if (!opts.exportDir) {
      cutoffs.tenants[t.id] = { before };
      r.rawCutoff = before;
      continue;
    }
    before = dayStartOf(before);
    const receivedBefore = Date.now();
    try {
      for await (const day of daysWithMessages(store, t.id, before)) {
        const e = await exportDay(store, encoder, opts.exportDir, t.id, day);
        if (e.file) {
          r.exports.push(e);
          result.exportedFiles++;
          result.exportedRows += e.rows;
          logger?.info({ tenant: t.id, file: e.file, rows: e.rows }, 'retention exported raw messages to Parquet');
        }
      }
      cutoffs.tenants[t.id] = { before, receivedBefore };
      r.rawCutoff = before;
    } catch (err) {
      cutoffs.tenants[t.id] = null;
      r.error = (err as Error).message;
      result.errors.push(r.error);
      logger?.error({ err, tenant: t.id }, 'retention export failed; the tenant\'s raw data stays until an export succeeds');
    }
  }
}
