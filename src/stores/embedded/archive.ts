/**
 * @module Raw archive and dead-letter reads of the embedded store. Messages are listed
 * ascending by device time (ties by device, then message id) within from ≤ ts < to,
 * optionally narrowed to one project and/or device and/or an MQTT topic filter; dead letters in the order they failed.
 * Both page with opaque cursors and never cross the tenant in their key.
 *
 * Messages are idempotent on (tenant, device, message id). One limit: two copies of a message
 * with different device times, both still staged, read as two until the next compaction
 * (seconds) keeps one; replays from the log carry the same time and never do.
 */
import type { MessageKind } from '../../core/envelope.js';
import type { DeadLetterFilter, MessageQuery, Page, RawMessage, StoredDeadLetter } from '../store.js';
import { decodeCursor, encodeCursor } from './codec.js';
import type { Names } from './names.js';
import { filterRegex, globPrefix } from '../topic-filter.js';
import { checkLimit } from './read.js';
import { NameKind, writeTransaction, type Db } from './schema.js';

interface MessageRow { device_id: number; message_id: string; project_id: number; topic: string; kind: MessageKind; ts: number; receive_time: number; payload: Buffer }
interface DeadLetterRow { id: number; project: string; device: string; topic: string; message_id: string; receive_time: number; reason: string; payload: Buffer; failed_at: number; kind: MessageKind }

const AFTER = `(ts > $cts OR (ts = $cts AND (device_id > $cdev OR (device_id = $cdev AND message_id > $cmsg))))`;
/** An MQTT topic filter ($tre = '' means any topic): the GLOB prefix first, then the exact test (../topic-filter.ts). */
const TOPIC = `($tre = '' OR (topic GLOB $tglob AND fg_topic_match($tre, topic)))`;

export class Archive {
  private readonly byTime;
  private readonly byDevice;
  private readonly deadLettersStmt;
  private readonly deleteDeadLetterStmt;

  constructor(private readonly db: Db, private readonly names: Names) {
    const cols = 'device_id, message_id, project_id, topic, kind, ts, receive_time, payload';
    // The topic filter's regular expression, compiled once per distinct filter.
    const compiled = new Map<string, RegExp>();
    db.function('fg_topic_match', { deterministic: true }, (re: unknown, topic: unknown) => {
      let r = compiled.get(re as string);
      if (!r) {
        if (compiled.size > 100) compiled.clear();
        compiled.set(re as string, (r = new RegExp(re as string)));
      }
      return r.test(topic as string) ? 1 : 0;
    });
    // Staged messages (./write.ts) are read too, skipping one already compacted (a replay).
    const staged = `SELECT ${cols} FROM messages_recent r WHERE tenant_id = $t AND ts >= $lo AND ts < $to
      AND ($p = -1 OR project_id = $p) AND ${TOPIC} AND ${AFTER}`;
    const notCompacted = `NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = r.tenant_id AND m.device_id = r.device_id AND m.message_id = r.message_id)`;
    // $p = -1 means any project; one statement per access path keeps each plan a range seek.
    this.byTime = db.prepare(`SELECT ${cols} FROM messages
      WHERE tenant_id = $t AND ts >= $lo AND ts < $to AND ($p = -1 OR project_id = $p) AND ${TOPIC} AND ${AFTER}
      UNION ALL
      SELECT * FROM (${staged} AND ${notCompacted})
      ORDER BY ts, device_id, message_id LIMIT $limit`);
    this.byDevice = db.prepare(`SELECT ${cols} FROM messages INDEXED BY messages_by_device
      WHERE tenant_id = $t AND device_id = $dev AND ts >= $lo AND ts < $to AND ($p = -1 OR project_id = $p) AND ${TOPIC} AND ${AFTER}
      UNION ALL
      SELECT * FROM (${staged} AND device_id = $dev AND ${notCompacted})
      ORDER BY ts, device_id, message_id LIMIT $limit`);
    this.deadLettersStmt = db.prepare(`SELECT id, project, device, topic, message_id, receive_time, reason, payload, failed_at, kind
      FROM dead_letters WHERE tenant_id = $t AND id > $after AND ($dev IS NULL OR device = $dev) AND ($reason IS NULL OR instr(reason, $reason) > 0)
        AND failed_at >= $from AND failed_at < $to ORDER BY id LIMIT $limit`);
    this.deleteDeadLetterStmt = db.prepare('DELETE FROM dead_letters WHERE tenant_id = ? AND id = ? AND failed_at < ?');
  }

  messages(q: MessageQuery): Page<RawMessage> {
    const limit = checkLimit(q.limit);
    const [cts, cdev, cmsg] = q.after === undefined ? [-Infinity, -1, ''] : decodeCursor(q.after, 'nns') as [number, number, string];
    const tenantId = this.names.tenant(q.tenant);
    if (tenantId === undefined) return { items: [] };
    let p = -1;
    if (q.project !== undefined) {
      const id = this.names.find(NameKind.project, tenantId, q.project);
      if (id === undefined) return { items: [] };
      p = id;
    }
    // Seeking from the cursor's time, not from `from`, keeps every page as cheap as the first.
    const params = { t: tenantId, lo: Math.max(q.from, cts), to: q.to, p, cts, cdev, cmsg, limit: limit + 1,
      tre: q.topic === undefined ? '' : filterRegex(q.topic), tglob: q.topic === undefined ? '*' : globPrefix(q.topic) };
    let rows: MessageRow[];
    if (q.device !== undefined) {
      const dev = this.names.find(NameKind.device, tenantId, q.device);
      if (dev === undefined) return { items: [] };
      rows = this.byDevice.all({ ...params, dev }) as MessageRow[];
    } else {
      rows = this.byTime.all(params) as MessageRow[];
    }
    const page = rows.slice(0, limit);
    const items = page.map((r): RawMessage => ({
      tenant: q.tenant, project: this.names.name(r.project_id), device: this.names.name(r.device_id), topic: r.topic, kind: r.kind,
      ts: r.ts, receiveTime: r.receive_time, messageId: r.message_id, payload: new Uint8Array(r.payload),
    }));
    const last = page[page.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.ts, last.device_id, last.message_id]) } : { items };
  }

  deadLetters(tenant: string, limit: number, after?: string, f: DeadLetterFilter = {}): Page<StoredDeadLetter> {
    checkLimit(limit);
    const afterId = after === undefined ? 0 : decodeCursor(after, 'n')[0] as number;
    const tenantId = this.names.tenant(tenant);
    if (tenantId === undefined) return { items: [] };
    const rows = this.deadLettersStmt.all({ t: tenantId, after: afterId, dev: f.device ?? null, reason: f.reason ?? null,
      from: f.from ?? -Number.MAX_SAFE_INTEGER, to: f.to ?? Number.MAX_SAFE_INTEGER, limit: limit + 1 }) as DeadLetterRow[];
    const page = rows.slice(0, limit);
    const items = page.map((r): StoredDeadLetter => ({
      id: String(r.id), tenant, project: r.project, device: r.device, topic: r.topic, messageId: r.message_id,
      receiveTime: r.receive_time, reason: r.reason, payload: new Uint8Array(r.payload), failedAt: r.failed_at, kind: r.kind,
    }));
    const last = page[page.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.id]) } : { items };
  }

  /** Deletes the tenant's dead letters with these ids (ids of other tenants are ignored), only those failed before `failedBefore` when given. */
  deleteDeadLetters(tenant: string, ids: string[], failedBefore = Number.MAX_SAFE_INTEGER): number {
    const tenantId = this.names.tenant(tenant);
    if (tenantId === undefined) return 0;
    let n = 0;
    writeTransaction(this.db, () => {
      for (const id of ids) {
        if (!/^[0-9]+$/.test(id)) continue;
        n += this.deleteDeadLetterStmt.run(tenantId, Number(id), failedBefore).changes;
      }
    })();
    return n;
  }
}
