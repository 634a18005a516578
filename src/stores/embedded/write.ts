/**
 * @module writeBatch for the embedded store: points, raw messages and dead letters of one
 * batch in one SQLite transaction, all idempotent (INSERT OR IGNORE on the natural keys), and
 * the compaction that moves staged points into the series-ordered table and folds the
 * pending latest state (./latest.ts) into `latest` and the pending roll-ups (./rollups.ts)
 * into their tables in one transaction.
 */
import { encodeValue, type SqlValue } from './codec.js';
import { PendingLatest, PendingSeries } from './latest.js';
import type { Names } from './names.js';
import { RollupWriter } from './rollups.js';
import { NameKind, writeTransaction, type Db } from './schema.js';
import { SeenWriter } from './seen.js';
import { decodeRecords, VALUE_BOOLEAN, VALUE_NUMBER, type WireBatch } from './wire.js';

/** Rows per multi-row INSERT: fewer statement runs, well under SQLite's 32,766 parameters. */
const ROWS_PER_STATEMENT = 100;
/** Series the writer remembers as having a `latest` row; past it the set starts over (a forgotten series costs one INSERT OR IGNORE). */
export const MAX_KNOWN_SERIES = 1_000_000;

/**
 * Series with pending latest state and roll-ups that trigger a compaction whatever the staged
 * rows: each holds ~320 bytes of the writer thread's heap until the compaction (measured in
 * ./rollups.ts; ~1.5 KB before the pending state moved into columns), and a fleet sending
 * snapshots of many keys reaches this before COMPACT_ROWS, so it bounds that state to ~32 MB.
 */
export const MAX_PENDING_SERIES = 100_000;

/** Entries the engine's in-memory maps may hold (defaults: MAX_CACHED_NAMES, MAX_KNOWN_SERIES, MAX_TRACKED_SERIES, MAX_PENDING_SERIES). */
export interface MemoryLimits { names?: number; knownSeries?: number; trackedSeries?: number; pendingSeries?: number }
/** Staged rows that trigger a compaction: larger moves touch each series' page fewer times. */
export const COMPACT_ROWS = 250_000;

const POINT_COLS = 7;
const LATEST_COLS = 6;

export class Writer {
  /** Rows in points_recent and messages_recent (counted, not queried, on the hot path). */
  stagedRows: number;
  /** Series written since the last compaction: slots of their pending latest state and roll-ups. */
  readonly series = new PendingSeries();
  /** Latest state written since the last compaction. */
  readonly pending = new PendingLatest(this.series);
  private readonly insertPoints;
  private readonly insertPoint;
  private readonly upsertLatestMany;
  private readonly upsertLatestOne;
  private readonly insertSeries;
  /** Series known to have a `latest` row: device id → key ids (at most MAX_KNOWN_SERIES). */
  private readonly knownSeries = new Map<number, Set<number>>();
  private knownCount = 0;
  private readonly insertMessage;
  private readonly insertDeadLetter;
  readonly seen: SeenWriter;
  private readonly pointParams: unknown[] = new Array(ROWS_PER_STATEMENT * POINT_COLS);
  private readonly latestParams: unknown[] = new Array(ROWS_PER_STATEMENT * LATEST_COLS);
  private readonly writeTx;
  private readonly compactTx;
  readonly rollups: RollupWriter;

  /** `limits`: bounds of the in-memory maps (tests lower them). */
  constructor(private readonly db: Db, private readonly names: Names, private readonly limits: MemoryLimits = {}) {
    this.rollups = new RollupWriter(db, this.series, limits.trackedSeries);
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
    this.insertSeries = db.prepare('INSERT OR IGNORE INTO latest (tenant_id, device_id, key_id, ts, message_id, v) VALUES (?, ?, ?, ?, ?, ?)');
    this.insertMessage = db.prepare(`INSERT OR IGNORE INTO messages_recent
      (tenant_id, device_id, message_id, project_id, topic, kind, ts, receive_time, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // A message that fails again replaces its dead letter (new reason, time and a new id: see deleteDeadLetters).
    this.insertDeadLetter = db.prepare(`INSERT OR REPLACE INTO dead_letters
      (tenant_id, project, device, topic, message_id, receive_time, reason, payload, failed_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.seen = new SeenWriter(db, names);
    this.writeTx = writeTransaction(db, (batch: WireBatch) => this.writeInTx(batch));
    this.compactTx = writeTransaction(db, () => {
      db.exec(`INSERT OR IGNORE INTO points SELECT tenant_id, device_id, key_id, ts, message_id, project_id, v
        FROM points_recent ORDER BY tenant_id, device_id, key_id, ts, message_id;
        DELETE FROM points_recent;
        INSERT OR IGNORE INTO messages SELECT tenant_id, ts, device_id, message_id, project_id, topic, kind, receive_time, payload
        FROM messages_recent ORDER BY tenant_id, ts, device_id, message_id;
        DELETE FROM messages_recent;`);
      this.flushLatest();
      this.rollups.flush();
    });
    this.stagedRows = db.prepare('SELECT (SELECT count(*) FROM points_recent) + (SELECT count(*) FROM messages_recent)').pluck().get() as number;
    // After a crash, the latest state of staged points exists only in points_recent.
    const staged = db.prepare('SELECT tenant_id, device_id, key_id, ts, message_id, v FROM points_recent').raw();
    for (const [t, d, k, ts, m, v] of staged.iterate() as IterableIterator<[number, number, number, number, string, SqlValue]>) this.pending.offer(this.series.slot(t, d, k), ts, m, v);
  }

  /** Series known to have a `latest` row, held in memory (metrics). */
  get seriesKnown(): number {
    return this.knownCount;
  }

  /** Writes one batch atomically. */
  write(batch: WireBatch): void {
    try {
      const committed = this.writeTx(batch);
      this.names.committed();
      committed();
    } catch (err) {
      this.names.forgetUncommitted();
      throw err;
    }
  }

  /** Moves every staged point and message into its main table; returns the rows moved. */
  compact(): number {
    const n = this.stagedRows;
    if (n === 0 && this.pending.size === 0) return 0;
    this.compactTx();
    this.rollups.compacted();
    this.pending.clear();
    this.series.clear();
    this.stagedRows = 0;
    return n;
  }

  /** Writes inside the transaction; returns what to do once it committed. */
  private writeInTx(batch: WireBatch): () => void {
    const { names } = this;
    const { n, strings, refs, ts, num, type, text, messageIds } = batch.points;
    const S = strings.length;
    // Ids of the batch's names, resolved once per distinct (tenant, name) rather than per point.
    const perTenant = new Map<number, { project: Int32Array; device: Int32Array; key: Int32Array }>();
    const tenantIds = new Int32Array(S);
    const idOf = (tenantId: number, kind: 'project' | 'device' | 'key', ref: number): number => {
      let t = perTenant.get(tenantId);
      if (!t) perTenant.set(tenantId, t = { project: new Int32Array(S), device: new Int32Array(S), key: new Int32Array(S) });
      const ids = t[kind];
      return ids[ref] || (ids[ref] = names.intern(NameKind[kind], tenantId, strings[ref]));
    };
    const values: SqlValue[] = new Array(n);
    for (let i = 0, j = 0; i < n; i++) {
      values[i] = type[i] === VALUE_NUMBER ? num[i] : type[i] === VALUE_BOOLEAN ? encodeValue(num[i] === 1) : text[j++];
    }
    const p = this.pointParams;
    let filled = 0;
    let staged = 0;
    // 1 for a point whose insert statement stored every row: it was not staged before (./rollups.ts).
    const fresh = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const r = i * 4;
      const tenantRef = refs[r];
      const tenantId = tenantIds[tenantRef] || (tenantIds[tenantRef] = names.intern(NameKind.tenant, 0, strings[tenantRef]));
      const projectId = idOf(tenantId, 'project', refs[r + 1]);
      const deviceId = idOf(tenantId, 'device', refs[r + 2]);
      const keyId = idOf(tenantId, 'key', refs[r + 3]);
      const o = filled * POINT_COLS;
      p[o] = tenantId; p[o + 1] = deviceId; p[o + 2] = keyId; p[o + 3] = ts[i];
      p[o + 4] = messageIds[i]; p[o + 5] = projectId; p[o + 6] = values[i];
      if (++filled === ROWS_PER_STATEMENT) {
        const stored = this.insertPoints.run(p).changes;
        staged += stored;
        if (stored === ROWS_PER_STATEMENT) fresh.fill(1, i + 1 - ROWS_PER_STATEMENT, i + 1);
        filled = 0;
      }
    }
    for (let r = 0; r < filled; r++) {
      const o = r * POINT_COLS;
      const stored = this.insertPoint.run(p.slice(o, o + POINT_COLS)).changes;
      staged += stored;
      fresh[n - filled + r] = stored;
    }
    // A new series gets its `latest` row now (compaction refines it), so that `latest` always
    // lists every series of a device, for the reader connection, which has no pending state.
    const newSeries: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      const r = i * 4;
      const tenantId = tenantIds[refs[r]];
      const ids = perTenant.get(tenantId)!;
      const deviceId = ids.device[refs[r + 2]];
      const keyId = ids.key[refs[r + 3]];
      if (this.knownSeries.get(deviceId)?.has(keyId)) continue;
      this.insertSeries.run(tenantId, deviceId, keyId, ts[i], messageIds[i], values[i]);
      newSeries.push([deviceId, keyId]);
    }
    const { messages, deadLetters } = decodeRecords(batch);
    for (const m of messages) {
      const tenantId = names.intern(NameKind.tenant, 0, m.tenant);
      staged += this.insertMessage.run(tenantId, names.intern(NameKind.device, tenantId, m.device), m.messageId,
        names.intern(NameKind.project, tenantId, m.project), m.topic, m.kind, m.ts, m.receiveTime, m.payload).changes;
    }
    const now = Date.now();
    for (const d of deadLetters) {
      const tenantId = names.intern(NameKind.tenant, 0, d.tenant);
      this.insertDeadLetter.run(tenantId, d.project, d.device, d.topic, d.messageId, d.receiveTime, d.reason, d.payload, now, d.kind ?? 'telemetry');
    }
    this.seen.write(messages, deadLetters, batch.snapshots);
    // Pending latest state and counters change only once the points are committed.
    return () => {
      this.stagedRows += staged;
      if (this.knownCount + newSeries.length > (this.limits.knownSeries ?? MAX_KNOWN_SERIES)) {
        this.knownSeries.clear();
        this.knownCount = 0;
      }
      for (const [deviceId, keyId] of newSeries) {
        let keys = this.knownSeries.get(deviceId);
        if (!keys) this.knownSeries.set(deviceId, keys = new Set());
        if (!keys.has(keyId)) { keys.add(keyId); this.knownCount++; }
      }
      for (let i = 0; i < n; i++) {
        const r = i * 4;
        const tenantId = tenantIds[refs[r]];
        const ids = perTenant.get(tenantId)!;
        const s = this.series.slot(tenantId, ids.device[refs[r + 2]], ids.key[refs[r + 3]]);
        this.pending.offer(s, ts[i], messageIds[i], values[i]);
        this.rollups.offer(s, ts[i], messageIds[i], values[i], fresh[i] === 1);
      }
    };
  }

  /** Upserts the pending latest state; the upsert's WHERE keeps a newer stored value. */
  private flushLatest(): void {
    const lp = this.latestParams;
    let filled = 0;
    for (const e of this.pending.entries()) {
      const o = filled * LATEST_COLS;
      lp[o] = e.tenantId; lp[o + 1] = e.deviceId; lp[o + 2] = e.keyId; lp[o + 3] = e.ts; lp[o + 4] = e.messageId; lp[o + 5] = e.v;
      if (++filled === ROWS_PER_STATEMENT) {
        this.upsertLatestMany.run(lp);
        filled = 0;
      }
    }
    for (let r = 0; r < filled; r++) this.upsertLatestOne.run(lp.slice(r * LATEST_COLS, (r + 1) * LATEST_COLS));
  }
}

function rows(n: number, cols: number): string {
  const one = `(${Array(cols).fill('?').join(',')})`;
  return Array(n).fill(one).join(',');
}
