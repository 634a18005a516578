/**
 * @module writeBatch for the embedded store: points, latest state, raw messages and dead
 * letters of one batch in one SQLite transaction, all idempotent (INSERT OR IGNORE on the
 * natural keys), plus the compaction that moves staged points into the series-ordered table.
 *
 * Latest state: last write wins by device time; at equal device time the larger message id
 * wins, so the outcome does not depend on arrival order or on replays.
 */
import type { WriteBatch } from '../store.js';
import { encodeValue } from './codec.js';
import type { Names } from './names.js';
import { NameKind, type Db } from './schema.js';

/** Rows per multi-row INSERT: fewer statement runs, well under SQLite's 32,766 parameters. */
const ROWS_PER_STATEMENT = 100;
/** Staged points that trigger a compaction: larger moves touch each series' page fewer times. */
export const COMPACT_ROWS = 250_000;

const POINT_COLS = 7;
const LATEST_COLS = 6;

export class Writer {
  /** Rows in points_recent (counted, not queried, on the hot path). */
  stagedRows: number;
  private readonly insertPoints;
  private readonly insertPoint;
  private readonly upsertLatestMany;
  private readonly upsertLatestOne;
  private readonly insertMessage;
  private readonly insertDeadLetter;
  private readonly pointParams: unknown[] = new Array(ROWS_PER_STATEMENT * POINT_COLS);
  private readonly latestParams: unknown[] = new Array(ROWS_PER_STATEMENT * LATEST_COLS);
  private readonly writeTx;
  private readonly compactTx;

  constructor(private readonly db: Db, private readonly names: Names) {
    const insertPoints = (n: number) => db.prepare(`INSERT OR IGNORE INTO points_recent
      (tenant_id, device_id, key_id, ts, message_id, project_id, v) VALUES ${rows(n, POINT_COLS)}`);
    this.insertPoints = insertPoints(ROWS_PER_STATEMENT);
    this.insertPoint = insertPoints(1);
    const upsertLatest = (n: number) => db.prepare(`INSERT INTO latest (tenant_id, device_id, key_id, ts, message_id, v)
      VALUES ${rows(n, LATEST_COLS)}
      ON CONFLICT DO UPDATE SET ts = excluded.ts, message_id = excluded.message_id, v = excluded.v
      WHERE excluded.ts > latest.ts OR (excluded.ts = latest.ts AND excluded.message_id > latest.message_id)`);
    this.upsertLatestMany = upsertLatest(ROWS_PER_STATEMENT);
    this.upsertLatestOne = upsertLatest(1);
    this.insertMessage = db.prepare(`INSERT OR IGNORE INTO messages
      (tenant_id, device_id, message_id, project_id, topic, kind, ts, receive_time, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertDeadLetter = db.prepare(`INSERT OR IGNORE INTO dead_letters
      (tenant_id, project, device, topic, message_id, receive_time, reason, payload, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.writeTx = db.transaction((batch: WriteBatch) => this.writeInTx(batch));
    this.compactTx = db.transaction(() => {
      db.exec(`INSERT OR IGNORE INTO points SELECT tenant_id, device_id, key_id, ts, message_id, project_id, v
        FROM points_recent ORDER BY tenant_id, device_id, key_id, ts, message_id;
        DELETE FROM points_recent;`);
    });
    this.stagedRows = db.prepare('SELECT count(*) FROM points_recent').pluck().get() as number;
  }

  /** Writes one batch atomically; message and dead-letter payloads must be Buffers (views are fine). */
  write(batch: WriteBatch): void {
    try {
      this.writeTx(batch);
      this.names.committed();
    } catch (err) {
      this.names.forgetUncommitted();
      throw err;
    }
  }

  /** Moves every staged point into `points`; returns the rows moved. */
  compact(): number {
    const n = this.stagedRows;
    if (n === 0) return 0;
    this.compactTx();
    this.stagedRows = 0;
    return n;
  }

  private writeInTx(batch: WriteBatch): void {
    const { names } = this;
    const points = batch.points;
    // Winner per series within the batch, so latest is upserted once per series, not per point.
    const winners = new Map<string, number>();
    const p = this.pointParams;
    let filled = 0;
    let staged = 0;
    for (let i = 0; i < points.length; i++) {
      const pt = points[i];
      const tenantId = names.intern(NameKind.tenant, 0, pt.tenant);
      const deviceId = names.intern(NameKind.device, tenantId, pt.device);
      const keyId = names.intern(NameKind.key, tenantId, pt.key);
      const projectId = names.intern(NameKind.project, tenantId, pt.project);
      const o = filled * POINT_COLS;
      p[o] = tenantId; p[o + 1] = deviceId; p[o + 2] = keyId; p[o + 3] = pt.ts;
      p[o + 4] = pt.messageId; p[o + 5] = projectId; p[o + 6] = encodeValue(pt.value);
      if (++filled === ROWS_PER_STATEMENT) {
        staged += this.insertPoints.run(p).changes;
        filled = 0;
      }
      const series = `${tenantId}:${deviceId}:${keyId}`;
      const w = winners.get(series);
      if (w === undefined || wins(pt.ts, pt.messageId, points[w].ts, points[w].messageId)) winners.set(series, i);
    }
    for (let r = 0; r < filled; r++) {
      const o = r * POINT_COLS;
      staged += this.insertPoint.run(p.slice(o, o + POINT_COLS)).changes;
    }
    this.stagedRows += staged;
    this.upsertLatest(batch, [...winners.values()]);

    for (const m of batch.messages) {
      const tenantId = names.intern(NameKind.tenant, 0, m.tenant);
      this.insertMessage.run(tenantId, names.intern(NameKind.device, tenantId, m.device), m.messageId,
        names.intern(NameKind.project, tenantId, m.project), m.topic, m.kind, m.ts, m.receiveTime, m.payload);
    }
    const now = Date.now();
    for (const d of batch.deadLetters) {
      const tenantId = names.intern(NameKind.tenant, 0, d.tenant);
      this.insertDeadLetter.run(tenantId, d.project, d.device, d.topic, d.messageId, d.receiveTime, d.reason, d.payload, now);
    }
  }

  private upsertLatest(batch: WriteBatch, indexes: number[]): void {
    const { names } = this;
    const lp = this.latestParams;
    const fill = (o: number, i: number) => {
      const pt = batch.points[i];
      const tenantId = names.intern(NameKind.tenant, 0, pt.tenant);
      lp[o] = tenantId; lp[o + 1] = names.intern(NameKind.device, tenantId, pt.device);
      lp[o + 2] = names.intern(NameKind.key, tenantId, pt.key); lp[o + 3] = pt.ts;
      lp[o + 4] = pt.messageId; lp[o + 5] = encodeValue(pt.value);
    };
    let w = 0;
    for (; w + ROWS_PER_STATEMENT <= indexes.length; w += ROWS_PER_STATEMENT) {
      for (let j = 0; j < ROWS_PER_STATEMENT; j++) fill(j * LATEST_COLS, indexes[w + j]);
      this.upsertLatestMany.run(lp);
    }
    for (; w < indexes.length; w++) {
      fill(0, indexes[w]);
      this.upsertLatestOne.run(lp.slice(0, LATEST_COLS));
    }
  }
}

/** Last write wins by device time; at equal time the larger message id wins. */
export function wins(ts: number, messageId: string, otherTs: number, otherMessageId: string): boolean {
  return ts > otherTs || (ts === otherTs && messageId > otherMessageId);
}

function rows(n: number, cols: number): string {
  const one = `(${Array(cols).fill('?').join(',')})`;
  return Array(n).fill(one).join(',');
}
