/**
 * @module Raw archive and dead-letter reads of the PostgreSQL store. Messages are listed
 * ascending by device time (ties by device, then message id, byte order) within from ≤ ts < to,
 * optionally narrowed to one project and/or device and/or an MQTT topic filter; dead letters in the order they failed
 * (their identity column). Both page with opaque cursors; every query starts with the tenant.
 */
import type pg from 'pg';
import type { MessageKind } from '../../core/envelope.js';
import type { DeadLetterFilter, MessageQuery, Page, RawMessage, StoredDeadLetter } from '../store.js';
import { checkLimit, decodeCursor, encodeCursor, ident } from './codec.js';
import { filterRegex, likePrefix } from '../topic-filter.js';

interface MessageRow { device: string; message_id: string; project: string; topic: string; kind: MessageKind; ts: number; receive_time: number; payload: Buffer }
interface DeadLetterRow { id: number; project: string; device: string; topic: string; message_id: string; receive_time: number; reason: string; payload: Buffer; failed_at: number; kind: MessageKind }

export class Archive {
  private readonly s: string;

  constructor(private readonly pool: pg.Pool, schema: string) {
    this.s = ident(schema);
  }

  async messages(q: MessageQuery): Promise<Page<RawMessage>> {
    const limit = checkLimit(q.limit);
    const params: unknown[] = [q.tenant, q.from, q.to];
    const where = ['tenant = $1', 'ts >= $2', 'ts < $3'];
    if (q.project !== undefined) where.push(`project = $${params.push(q.project)}`);
    if (q.device !== undefined) where.push(`device = $${params.push(q.device)}`);
    // An MQTT topic filter: the literal prefix with LIKE, then the exact regular expression (../topic-filter.ts).
    if (q.topic !== undefined) where.push(`topic LIKE $${params.push(likePrefix(q.topic))} ESCAPE '\\'`, `topic ~ $${params.push(filterRegex(q.topic))}`);
    if (q.after !== undefined) {
      const [cts, cdev, cmsg] = decodeCursor(q.after, 'nss') as [number, string, string];
      // The bare ts bound lets the scan start at the cursor; the row test splits ties.
      where.push(`ts >= $${params.push(cts)}`, `(ts, device, message_id) > ($${params.length}::int8, $${params.push(cdev)}::text, $${params.push(cmsg)}::text)`);
    }
    const sql = `SELECT device, message_id, project, topic, kind, ts, receive_time, payload FROM ${this.s}.messages
      WHERE ${where.join(' AND ')} ORDER BY ts, device, message_id LIMIT $${params.push(limit + 1)}`;
    const { rows } = await this.pool.query<MessageRow>(sql, params);
    const page = rows.slice(0, limit);
    const items = page.map((r): RawMessage => ({
      tenant: q.tenant, project: r.project, device: r.device, topic: r.topic, kind: r.kind,
      ts: r.ts, receiveTime: r.receive_time, messageId: r.message_id, payload: new Uint8Array(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength),
    }));
    const last = page[page.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.ts, last.device, last.message_id]) } : { items };
  }

  async deadLetters(tenant: string, limit: number, after?: string, f: DeadLetterFilter = {}): Promise<Page<StoredDeadLetter>> {
    checkLimit(limit);
    const afterId = after === undefined ? 0 : decodeCursor(after, 'n')[0] as number;
    const { rows } = await this.pool.query<DeadLetterRow>(`SELECT id, project, device, topic, message_id, receive_time, reason, payload, failed_at, kind
      FROM ${this.s}.dead_letters WHERE tenant = $1 AND id > $2 AND ($4::text IS NULL OR device = $4) AND ($5::text IS NULL OR strpos(reason, $5) > 0)
        AND failed_at >= $6 AND failed_at < $7 ORDER BY id LIMIT $3`,
    [tenant, afterId, limit + 1, f.device ?? null, f.reason ?? null, f.from ?? -Number.MAX_SAFE_INTEGER, f.to ?? Number.MAX_SAFE_INTEGER]);
    const page = rows.slice(0, limit);
    const items = page.map((r): StoredDeadLetter => ({
      id: String(r.id), tenant, project: r.project, device: r.device, topic: r.topic, messageId: r.message_id,
      receiveTime: r.receive_time, reason: r.reason, payload: new Uint8Array(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength), failedAt: r.failed_at, kind: r.kind,
    }));
    const last = page[page.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.id]) } : { items };
  }

  /** Deletes the tenant's dead letters with these ids (ids of other tenants, or not ids at all, are ignored). */
  async deleteDeadLetters(tenant: string, ids: string[], failedBefore = Number.MAX_SAFE_INTEGER): Promise<number> {
    const valid = ids.filter((id) => /^[0-9]{1,18}$/.test(id));
    if (valid.length === 0) return 0;
    const r = await this.pool.query(`DELETE FROM ${this.s}.dead_letters WHERE tenant = $1 AND id = ANY($2::int8[]) AND failed_at < $3`, [tenant, valid, failedBefore]);
    return r.rowCount ?? 0;
  }
}
