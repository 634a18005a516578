/**
 * @module Configuration objects of the PostgreSQL store (the ObjectStore contract): one table
 * keyed by (kind, tenant, id) with the body as jsonb. Upsert is one INSERT … ON CONFLICT, so
 * two nodes writing the same object at once leave one of the two bodies, never an error.
 */
import type pg from 'pg';
import type { StoredObject } from '../store.js';
import { ident } from './codec.js';

/** Migration 3: appended to ./migrations.ts's list. */
export const OBJECTS_MIGRATION = (s: string) => `
  CREATE TABLE ${s}.objects (
    kind text COLLATE "C" NOT NULL, tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
    body jsonb NOT NULL, updated_at bigint NOT NULL,
    PRIMARY KEY (kind, tenant, id)
  );`;

interface ObjectRow { kind: string; tenant: string; id: string; body: unknown; updated_at: number }

const object = (r: ObjectRow): StoredObject => ({ kind: r.kind, tenant: r.tenant, id: r.id, body: r.body, updatedAt: r.updated_at });

export class Objects {
  private readonly s: string;

  constructor(private readonly pool: pg.Pool, schema: string) {
    this.s = ident(schema);
  }

  async putObject(o: StoredObject): Promise<void> {
    // The body goes as JSON text: pg would send a JavaScript array as a PostgreSQL array.
    await this.pool.query(`INSERT INTO ${this.s}.objects (kind, tenant, id, body, updated_at) VALUES ($1, $2, $3, $4::jsonb, $5)
      ON CONFLICT (kind, tenant, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
    [o.kind, o.tenant, o.id, JSON.stringify(o.body ?? null), o.updatedAt]);
  }

  async getObject(kind: string, tenant: string, id: string): Promise<StoredObject | undefined> {
    const { rows } = await this.pool.query<ObjectRow>(`SELECT kind, tenant, id, body, updated_at FROM ${this.s}.objects
      WHERE kind = $1 AND tenant = $2 AND id = $3`, [kind, tenant, id]);
    return rows[0] && object(rows[0]);
  }

  async listObjects(kind: string, tenant?: string): Promise<StoredObject[]> {
    const { rows } = tenant === undefined
      ? await this.pool.query<ObjectRow>(`SELECT kind, tenant, id, body, updated_at FROM ${this.s}.objects WHERE kind = $1 ORDER BY tenant, id`, [kind])
      : await this.pool.query<ObjectRow>(`SELECT kind, tenant, id, body, updated_at FROM ${this.s}.objects WHERE kind = $1 AND tenant = $2 ORDER BY id`, [kind, tenant]);
    return rows.map(object);
  }

  async deleteObject(kind: string, tenant: string, id: string): Promise<boolean> {
    const r = await this.pool.query(`DELETE FROM ${this.s}.objects WHERE kind = $1 AND tenant = $2 AND id = $3`, [kind, tenant, id]);
    return (r.rowCount ?? 0) > 0;
  }
}
