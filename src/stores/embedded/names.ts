/**
 * @module Interned names: tenant, project, device and key strings to small integer ids and
 * back, cached in memory. Reads only look names up (an unknown name means "no data", and a
 * read never creates one); writes create them. After a failed write transaction call
 * `forgetUncommitted()`: ids handed out inside it were rolled back and may be reused.
 * Bounded: past `maxCached` names the cache starts over (a miss is one indexed read), so a
 * flood of new key names cannot grow this thread's memory without limit.
 */
import { NameKind, type Db } from './schema.js';

type Kind = (typeof NameKind)[keyof typeof NameKind];

/** Names (and as many ids) cached per connection: ~100 MB of strings and map entries at most. */
export const MAX_CACHED_NAMES = 500_000;

export class Names {
  private readonly ids = new Map<string, number>();
  private readonly byId = new Map<number, string>();
  private uncommitted: string[] = [];
  private readonly insert;
  private readonly select;
  private readonly selectName;

  constructor(db: Db, private readonly maxCached: number = MAX_CACHED_NAMES) {
    this.insert = db.prepare('INSERT INTO names (kind, tenant_id, name) VALUES (?, ?, ?) RETURNING id').pluck();
    this.select = db.prepare('SELECT id FROM names WHERE kind = ? AND tenant_id = ? AND name = ?').pluck();
    this.selectName = db.prepare('SELECT name FROM names WHERE id = ?').pluck();
  }

  /** The id of a name, created when missing; call inside the write transaction. */
  intern(kind: Kind, tenantId: number, name: string): number {
    const k = `${kind}\u0000${tenantId}\u0000${name}`;
    let id = this.ids.get(k);
    if (id !== undefined) return id;
    id = this.select.get(kind, tenantId, name) as number | undefined;
    if (id === undefined) {
      id = Number(this.insert.get(kind, tenantId, name));
      this.uncommitted.push(k);
    }
    this.cache(k, id, name);
    return id;
  }

  /** The id of an existing name, or undefined. */
  find(kind: Kind, tenantId: number, name: string): number | undefined {
    const k = `${kind}\u0000${tenantId}\u0000${name}`;
    let id = this.ids.get(k);
    if (id !== undefined) return id;
    id = this.select.get(kind, tenantId, name) as number | undefined;
    if (id !== undefined) {
      this.cache(k, id, name);
    }
    return id;
  }

  tenant(name: string): number | undefined {
    return this.find(NameKind.tenant, 0, name);
  }

  /** The string behind an id (ids come from this database, so it exists). */
  name(id: number): string {
    let n = this.byId.get(id);
    if (n === undefined) {
      n = this.selectName.get(id) as string | undefined;
      if (n === undefined) throw new Error(`embedded store: name id ${id} is missing`);
      if (this.byId.size >= this.maxCached) this.byId.clear();
      this.byId.set(id, n);
    }
    return n;
  }

  /** Names cached in memory (metrics): one entry per tenant, project, device and key seen. */
  get cached(): number {
    return this.ids.size;
  }

  private cache(k: string, id: number, name: string): void {
    if (this.ids.size >= this.maxCached || this.byId.size >= this.maxCached) {
      this.ids.clear();
      this.byId.clear();
    }
    this.ids.set(k, id);
    this.byId.set(id, name);
  }

  committed(): void {
    this.uncommitted = [];
  }

  forgetUncommitted(): void {
    for (const k of this.uncommitted) {
      const id = this.ids.get(k);
      this.ids.delete(k);
      if (id !== undefined) this.byId.delete(id);
    }
    this.uncommitted = [];
  }
}
