/**
 * @module Configuration objects of the embedded store (the ObjectStore contract): one table
 * keyed by (kind, tenant, id) holding each body as JSON text. Upsert replaces the body and
 * time; lists are ordered by tenant, then id (byte order, like the PostgreSQL store).
 */
import type { StoredObject } from '../store.js';
import type { Db } from './schema.js';

interface ObjectRow { kind: string; tenant: string; id: string; body: string; updated_at: number }

const object = (r: ObjectRow): StoredObject => ({ kind: r.kind, tenant: r.tenant, id: r.id, body: JSON.parse(r.body), updatedAt: r.updated_at });

export class Objects {
  private readonly q;

  constructor(db: Db) {
    this.q = {
      put: db.prepare(`INSERT INTO objects (kind, tenant, id, body, updated_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (kind, tenant, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`),
      get: db.prepare('SELECT * FROM objects WHERE kind = ? AND tenant = ? AND id = ?'),
      listAll: db.prepare('SELECT * FROM objects WHERE kind = ? ORDER BY tenant, id'),
      listTenant: db.prepare('SELECT * FROM objects WHERE kind = ? AND tenant = ? ORDER BY id'),
      delete: db.prepare('DELETE FROM objects WHERE kind = ? AND tenant = ? AND id = ?'),
    };
  }

  putObject(o: StoredObject): void {
    this.q.put.run(o.kind, o.tenant, o.id, JSON.stringify(o.body ?? null), o.updatedAt);
  }

  getObject(kind: string, tenant: string, id: string): StoredObject | undefined {
    const r = this.q.get.get(kind, tenant, id) as ObjectRow | undefined;
    return r && object(r);
  }

  listObjects(kind: string, tenant?: string): StoredObject[] {
    const rows = (tenant === undefined ? this.q.listAll.all(kind) : this.q.listTenant.all(kind, tenant)) as ObjectRow[];
    return rows.map(object);
  }

  deleteObject(kind: string, tenant: string, id: string): boolean {
    return this.q.delete.run(kind, tenant, id).changes > 0;
  }
}
