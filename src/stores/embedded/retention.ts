/**
 * @module Retention for the embedded store: deletes points and raw messages whose device time
 * is before a cutoff (one for all tenants, or each tenant's own: RawCutoffs), in transactions
 * of about CHUNK_ROWS rows. It is a generator: the worker runs one chunk, lets queued writes
 * through, and runs the next, so a large purge never holds the write lock for long (SQLite has
 * one writer; a chunk of 5,000 rows commits in milliseconds). Latest state, dead letters and
 * the registry are not touched. A tenant's `receivedBefore` keeps raw messages received since
 * its Parquet export, so a late message is exported by the next pass instead of lost.
 */
import type { RawCutoff, RawCutoffs } from '../store.js';
import type { Names } from './names.js';
import { NameKind, writeTransaction, type Db } from './schema.js';
import type { Writer } from './write.js';

const CHUNK_ROWS = 5_000;

export class Retention {
  private readonly tenants;
  private readonly series;
  private readonly stagedBound;
  private readonly deleteStaged;
  private readonly deleteStagedBefore;
  private readonly seriesBound;
  private readonly deleteSeries;
  private readonly deleteSeriesBefore;
  private readonly deleteMessages;
  private readonly deleteStagedMessages;

  constructor(private readonly db: Db, private readonly names: Names, private readonly writer: Writer) {
    this.tenants = db.prepare('SELECT id FROM names WHERE kind = ? AND tenant_id = 0').pluck();
    this.series = db.prepare('SELECT device_id, key_id FROM latest WHERE tenant_id = ?');
    // The ts of the CHUNK_ROWS-th oldest row bounds one chunk; without it, the rest fits in one.
    this.stagedBound = db.prepare(`SELECT ts FROM points_recent WHERE tenant_id = ? AND ts < ? ORDER BY ts LIMIT 1 OFFSET ${CHUNK_ROWS - 1}`).pluck();
    this.deleteStaged = db.prepare('DELETE FROM points_recent WHERE tenant_id = ? AND ts <= ?');
    this.deleteStagedBefore = db.prepare('DELETE FROM points_recent WHERE tenant_id = ? AND ts < ?');
    this.seriesBound = db.prepare(`SELECT ts FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts < ?
      ORDER BY ts LIMIT 1 OFFSET ${CHUNK_ROWS - 1}`).pluck();
    this.deleteSeries = db.prepare('DELETE FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts <= ?');
    this.deleteSeriesBefore = db.prepare('DELETE FROM points WHERE tenant_id = ? AND device_id = ? AND key_id = ? AND ts < ?');
    this.deleteStagedMessages = db.prepare('DELETE FROM messages_recent WHERE tenant_id = ? AND ts < ? AND receive_time < ?');
    this.deleteMessages = db.prepare(`DELETE FROM messages WHERE (tenant_id, device_id, message_id) IN (
      SELECT tenant_id, device_id, message_id FROM messages WHERE tenant_id = ? AND ts < ? AND receive_time < ? LIMIT ${CHUNK_ROWS})`);
  }

  /** The tenants to purge with their cutoffs; tenants kept for ever are left out. */
  private plan(cutoff: number | RawCutoffs, tenant?: string): Array<{ t: number; cut: RawCutoff }> {
    if (typeof cutoff === 'number') {
      if (tenant === undefined) return (this.tenants.all(NameKind.tenant) as number[]).map((t) => ({ t, cut: { before: cutoff } }));
      const id = this.names.tenant(tenant);
      return id === undefined ? [] : [{ t: id, cut: { before: cutoff } }];
    }
    const out: Array<{ t: number; cut: RawCutoff }> = [];
    for (const t of this.tenants.all(NameKind.tenant) as number[]) {
      const name = this.names.name(t);
      const cut = Object.hasOwn(cutoff.tenants, name) ? cutoff.tenants[name] : cutoff.others;
      if (cut) out.push({ t, cut });
    }
    return out;
  }

  /** Yields after each committed chunk; returns the rows removed. */
  *deleteBefore(cutoffs: number | RawCutoffs, tenant?: string): Generator<void, number> {
    const plan = this.plan(cutoffs, tenant);
    // Series are listed from `latest`; folding pending latest state in first makes it complete.
    this.writer.compact();
    yield;
    let removed = 0;
    for (const { t, cut: { before: cutoff, receivedBefore = Number.MAX_SAFE_INTEGER } } of plan) {
      for (;;) {
        const n = writeTransaction(this.db, () => {
          const bound = this.stagedBound.get(t, cutoff) as number | undefined;
          return (bound === undefined ? this.deleteStagedBefore.run(t, cutoff) : this.deleteStaged.run(t, bound)).changes;
        })();
        this.writer.stagedRows = Math.max(0, this.writer.stagedRows - n);
        removed += n;
        if (n === 0) break;
        yield;
      }
      const series = this.series.all(t) as Array<{ device_id: number; key_id: number }>;
      let i = 0;
      while (i < series.length) {
        // Several small series share one transaction; a big one is cut into chunks.
        removed += writeTransaction(this.db, () => {
          let n = 0;
          while (i < series.length && n < CHUNK_ROWS) {
            const s = series[i];
            const bound = this.seriesBound.get(t, s.device_id, s.key_id, cutoff) as number | undefined;
            if (bound === undefined) {
              n += this.deleteSeriesBefore.run(t, s.device_id, s.key_id, cutoff).changes;
              i++;
            } else {
              n += this.deleteSeries.run(t, s.device_id, s.key_id, bound).changes;
            }
          }
          return n;
        })();
        yield;
      }
      // Messages staged while this purge runs are new, and few: one statement.
      const staged = this.deleteStagedMessages.run(t, cutoff, receivedBefore).changes;
      this.writer.stagedRows = Math.max(0, this.writer.stagedRows - staged);
      removed += staged;
      for (;;) {
        const n = this.deleteMessages.run(t, cutoff, receivedBefore).changes;
        removed += n;
        if (n < CHUNK_ROWS) break;
        yield;
      }
    }
    return removed;
  }
}
