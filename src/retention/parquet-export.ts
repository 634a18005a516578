/**
 * @module The Parquet cold tier: one tenant's raw archive for one UTC day, written to
 * `<exportDir>/<tenant>/<YYYY-MM-DD>.parquet` before retention deletes those rows. Columns:
 * time, tenant, project, device, topic, kind, payload (bytes as received), receive_time,
 * message_id; readable by DuckDB (`SELECT * FROM 'exports/acme/2026-11-24.parquet'`) or pandas.
 * Points are not exported: every message is in the raw archive and its payload holds them.
 *
 * Promises: a file appears only complete (written to a temp file, fsynced, linked under its
 * name, which never replaces an existing file, then the directory fsynced); an existing file is
 * never rewritten (a second run finds its rows already exported and writes nothing); rows of a
 * day that arrive after its file was written (late device times, or a crash between export and
 * delete) go to the next part, `<YYYY-MM-DD>.1.parquet`, … so
 * `'exports/acme/2026-11-24*.parquet'` reads the whole day.
 *
 * Encoding, fsync and reading parts back run in a worker thread (./parquet-worker.ts), so a day
 * of messages never holds the main thread where ingest is acknowledged; this module reads pages
 * from the store and hands them over, resting between pages (EXPORT_SHARE).
 *
 * Library: hyparquet-writer (MIT, pure JS, one dependency — hyparquet, its reader by the same
 * maintainers —, types included, released monthly, incremental row-group writing). Rejected:
 * @dsnp/parquetjs (thirteen dependencies including the AWS S3 SDK, Thrift and WASM codecs) and
 * parquet-wasm (a WASM build of arrow-rs whose API takes Arrow tables, so it would bring
 * apache-arrow as well).
 */
import { link, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FluxgateError } from '../core/errors.js';
import type { RawMessage, Store } from '../stores/store.js';
import type { ParquetEncoder } from './parquet-encoder.js';

export const DAY_MS = 86_400_000;
/** Rows read from the store per page, and handed to the worker per call. */
const PAGE_ROWS = 5_000;
const BATCH_ROWS = 10_000;
/**
 * Share of wall time the export may work: after each page it rests as long as the page took
 * times (1 - share) / share. Exporting is not urgent (a pass runs hourly) and its CPU (store
 * reads, copies to the encoder, encoding) competes with ingest on a small node.
 */
const EXPORT_SHARE = 0.5;
const rest = (busyMs: number) => new Promise<void>((resolve) => setTimeout(resolve, (busyMs * (1 - EXPORT_SHARE)) / EXPORT_SHARE));

/** `2026-11-24` for the UTC day starting at dayStart; a day outside years 0000–9999 by its number. */
export function dayName(dayStart: number): string {
  const d = new Date(dayStart);
  const y = d.getUTCFullYear();
  return Number.isNaN(y) || y < 0 || y > 9999 ? `day${Math.floor(dayStart / DAY_MS)}` : d.toISOString().slice(0, 10);
}

export function dayStartOf(ts: number): number {
  return Math.floor(ts / DAY_MS) * DAY_MS;
}

/** The day's part files present, in part order: `<day>.parquet` is part 0, `<day>.<n>.parquet` part n. */
async function partsOf(dir: string, day: string): Promise<Array<{ file: string; part: number }>> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return [] as string[]; throw err; });
  const out: Array<{ file: string; part: number }> = [];
  for (const n of names) {
    if (n === `${day}.parquet`) out.push({ file: join(dir, n), part: 0 });
    const m = n.startsWith(`${day}.`) ? /^\.(\d+)\.parquet$/.exec(n.slice(day.length)) : null;
    if (m) out.push({ file: join(dir, n), part: Number(m[1]) });
  }
  return out.sort((a, b) => a.part - b.part);
}

/** A temp file this old is a crashed export's leftover (a live one is written to within seconds). */
const STALE_TEMP_MS = 3_600_000;

async function removeStaleTemps(dir: string, day: string): Promise<void> {
  for (const n of await readdir(dir)) {
    if (!n.startsWith(`.${day}.`) || !n.endsWith('.tmp')) continue;
    const f = join(dir, n);
    const st = await stat(f).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await rm(f, { force: true });
  }
}

const keyOf = (device: string, messageId: string) => `${device}\u0000${messageId}`;

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

export interface DayExport { tenant: string; day: string; file?: string; rows: number }

/**
 * Exports the tenant's raw messages of one UTC day not yet in its files; returns the file
 * written (none when every row was already exported) and its row count.
 */
export async function exportDay(store: Store, encoder: ParquetEncoder, exportDir: string, tenant: string, dayStart: number): Promise<DayExport> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(tenant)) throw new FluxgateError('BAD_REQUEST', `tenant id ${JSON.stringify(tenant)} cannot name an export directory`);
  const day = dayName(dayStart);
  const dir = join(exportDir, tenant);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new FluxgateError('RETENTION_EXPORT_FAILED', `cannot create the export directory ${dir} (${(err as Error).message}): set retention.exportDir to a writable directory, or leave it unset to not export`, { cause: err });
  }
  await removeStaleTemps(dir, day);
  const parts = await partsOf(dir, day);
  // Rows already in this day's parts (read in the worker too) are not exported again.
  const done = parts.length ? new Set(await encoder.call({ op: 'keys', files: parts.map((p) => p.file) })) : undefined;
  const part = parts.length ? parts[parts.length - 1].part + 1 : 0;
  const file = join(dir, part === 0 ? `${day}.parquet` : `${day}.${part}.parquet`);
  const tmp = join(dir, `.${day}.${part}.parquet.${process.pid}.${Date.now()}.tmp`);
  let rows = 0;
  let opened = false;
  let pending: RawMessage[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    if (!opened) {
      await encoder.call({ op: 'open', file: tmp, meta: [{ key: 'fluxgate.tenant', value: tenant }, { key: 'fluxgate.day', value: day }] });
      opened = true;
    }
    const batch = pending;
    pending = [];
    await encoder.call({ op: 'rows', rows: batch });
    rows += batch.length;
  };
  try {
    let after: string | undefined;
    do {
      const t0 = performance.now();
      const page = await store.messages({ tenant, from: dayStart, to: dayStart + DAY_MS, limit: PAGE_ROWS, after });
      for (const m of page.items) if (!done?.has(keyOf(m.device, m.messageId))) pending.push(m);
      if (pending.length >= BATCH_ROWS) await flush();
      after = page.next;
      if (after) await rest(performance.now() - t0);
    } while (after);
    await flush();
    if (!opened) return { tenant, day, rows: 0 };
    await encoder.call({ op: 'finish' }); // footer written and fsynced
    opened = false;
    // link() never replaces a file: a part another node wrote meanwhile into a shared directory stays.
    await link(tmp, file);
    await rm(tmp, { force: true });
    await fsyncPath(dir);
    return { tenant, day, file, rows };
  } catch (err) {
    if (opened) await encoder.call({ op: 'abort' }).catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    if (err instanceof FluxgateError) throw err;
    throw new FluxgateError('RETENTION_EXPORT_FAILED', `exporting tenant ${tenant}'s raw messages of ${day} to ${file} failed (${(err as Error).message}); its rows are kept and the next retention pass tries again: check that retention.exportDir is writable and has space`, { cause: err });
  }
}

/**
 * The UTC day starts, ascending, of the tenant's raw messages with device time before `before`
 * (found by asking for the next message after each day, so years of gaps cost nothing).
 */
export async function* daysWithMessages(store: Store, tenant: string, before: number): AsyncGenerator<number> {
  let from = Number.MIN_SAFE_INTEGER;
  while (from < before) {
    const page = await store.messages({ tenant, from, to: before, limit: 1 });
    const first = page.items[0];
    if (!first) return;
    const d = dayStartOf(first.ts);
    yield d;
    from = d + DAY_MS;
  }
}
