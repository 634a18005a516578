/**
 * @module Tenants (with their settings, a jsonb object), projects and API keys of the
 * PostgreSQL store (tables of migration 2 in ./migrations.ts, settings from migration 4).
 * A settings patch is one UPDATE (`settings || patch`, nulls stripped), so two nodes patching
 * different fields at once both keep theirs. Foreign keys make "the tenant must exist" hold even when two nodes act at
 * once: a project or key of a missing tenant is TENANT_NOT_FOUND. A tenant and its `default`
 * project are inserted by one statement. Keys are stored as hashes with a unique constraint;
 * every list and revoke is scoped by tenant.
 */
import type pg from 'pg';
import { FluxgateError } from '../../core/errors.js';
import type { ApiKeyInfo, ApiKeyRecord, ApiRole, NewTenant, ProjectRecord, TenantPatch, TenantRecord, TenantSettings } from '../store.js';
import { ident, sqlState } from './codec.js';

/** Migration 2: appended to ./migrations.ts's list. */
export const TENANCY_MIGRATION = (s: string) => `
  CREATE TABLE ${s}.tenants (
    id text COLLATE "C" PRIMARY KEY, name text NOT NULL, created_at bigint NOT NULL
  );
  CREATE TABLE ${s}.projects (
    tenant text COLLATE "C" NOT NULL REFERENCES ${s}.tenants (id), name text COLLATE "C" NOT NULL, created_at bigint NOT NULL,
    PRIMARY KEY (tenant, name)
  );
  CREATE TABLE ${s}.api_keys (
    id text COLLATE "C" PRIMARY KEY, tenant text COLLATE "C" NOT NULL REFERENCES ${s}.tenants (id),
    role text NOT NULL CHECK (role IN ('admin', 'write', 'read')), name text NOT NULL,
    key_hash text COLLATE "C" NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE, created_at bigint NOT NULL
  );
  CREATE INDEX api_keys_by_tenant ON ${s}.api_keys (tenant, id);
  INSERT INTO ${s}.tenants (id, name, created_at) VALUES ('default', 'default', 0);
  INSERT INTO ${s}.tenants (id, name, created_at) SELECT DISTINCT tenant, tenant, 0 FROM ${s}.devices ON CONFLICT DO NOTHING;
  INSERT INTO ${s}.projects (tenant, name, created_at) SELECT id, 'default', 0 FROM ${s}.tenants;
  INSERT INTO ${s}.projects (tenant, name, created_at) SELECT DISTINCT tenant, project, 0 FROM ${s}.devices ON CONFLICT DO NOTHING;`;

/** Migration 4: appended to ./migrations.ts's list. */
export const TENANT_SETTINGS_MIGRATION = (s: string) => `ALTER TABLE ${s}.tenants ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;`;

interface TenantRow { id: string; name: string; created_at: number; settings: TenantSettings }
interface ProjectRow { tenant: string; name: string; created_at: number }
interface KeyRow { id: string; tenant: string; role: string; name: string; key_hash: string; created_at: number }

const tenant = (r: TenantRow): TenantRecord => ({ id: r.id, name: r.name, createdAt: r.created_at, settings: r.settings });
const TENANT_COLS = 'id, name, created_at, settings';
const project = (r: ProjectRow): ProjectRecord => ({ tenant: r.tenant, name: r.name, createdAt: r.created_at });
const info = (r: KeyRow): ApiKeyInfo => ({ id: r.id, tenant: r.tenant, role: r.role as ApiRole, name: r.name, createdAt: r.created_at });

const noTenant = (id: string) => new FluxgateError('TENANT_NOT_FOUND', `no tenant ${id}: create it first (POST /api/v1/tenants)`);

export class Tenancy {
  private readonly s: string;

  constructor(private readonly pool: pg.Pool, schema: string) {
    this.s = ident(schema);
  }

  async createTenant(t: NewTenant): Promise<void> {
    const r = await this.pool.query(`WITH t AS (
        INSERT INTO ${this.s}.tenants (id, name, created_at, settings) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id
      ) INSERT INTO ${this.s}.projects (tenant, name, created_at) SELECT id, 'default', $3 FROM t`, [t.id, t.name, t.createdAt, JSON.stringify(t.settings ?? {})]);
    if (r.rowCount === 0) throw new FluxgateError('TENANT_EXISTS', `tenant ${t.id} already exists`);
  }

  async getTenant(id: string): Promise<TenantRecord | undefined> {
    const { rows } = await this.pool.query<TenantRow>(`SELECT ${TENANT_COLS} FROM ${this.s}.tenants WHERE id = $1`, [id]);
    return rows[0] && tenant(rows[0]);
  }

  async listTenants(): Promise<TenantRecord[]> {
    const { rows } = await this.pool.query<TenantRow>(`SELECT ${TENANT_COLS} FROM ${this.s}.tenants ORDER BY id`);
    return rows.map(tenant);
  }

  async updateTenant(id: string, patch: TenantPatch): Promise<TenantRecord | undefined> {
    const { rows } = await this.pool.query<TenantRow>(`UPDATE ${this.s}.tenants SET name = coalesce($2, name), settings = jsonb_strip_nulls(settings || $3::jsonb)
      WHERE id = $1 RETURNING ${TENANT_COLS}`, [id, patch.name ?? null, JSON.stringify(patch.settings ?? {})]);
    return rows[0] && tenant(rows[0]);
  }

  async createProject(p: ProjectRecord): Promise<void> {
    const r = await this.insert(p.tenant, this.pool.query(`INSERT INTO ${this.s}.projects (tenant, name, created_at) VALUES ($1, $2, $3)
      ON CONFLICT (tenant, name) DO NOTHING`, [p.tenant, p.name, p.createdAt]));
    if (r.rowCount === 0) throw new FluxgateError('PROJECT_EXISTS', `project ${p.name} already exists in tenant ${p.tenant}`);
  }

  async getProject(tenantId: string, name: string): Promise<ProjectRecord | undefined> {
    const { rows } = await this.pool.query<ProjectRow>(`SELECT tenant, name, created_at FROM ${this.s}.projects WHERE tenant = $1 AND name = $2`, [tenantId, name]);
    return rows[0] && project(rows[0]);
  }

  async listProjects(tenantId: string): Promise<ProjectRecord[]> {
    const { rows } = await this.pool.query<ProjectRow>(`SELECT tenant, name, created_at FROM ${this.s}.projects WHERE tenant = $1 ORDER BY name`, [tenantId]);
    return rows.map(project);
  }

  async createApiKey(k: ApiKeyRecord): Promise<void> {
    await this.insert(k.tenant, this.pool.query(`INSERT INTO ${this.s}.api_keys (id, tenant, role, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [k.id, k.tenant, k.role, k.name, k.keyHash, k.createdAt]));
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyInfo[]> {
    const { rows } = await this.pool.query<KeyRow>(`SELECT id, tenant, role, name, created_at FROM ${this.s}.api_keys WHERE tenant = $1 ORDER BY id`, [tenantId]);
    return rows.map(info);
  }

  async revokeApiKey(tenantId: string, id: string): Promise<boolean> {
    const r = await this.pool.query(`DELETE FROM ${this.s}.api_keys WHERE tenant = $1 AND id = $2`, [tenantId, id]);
    return (r.rowCount ?? 0) > 0;
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.pool.query<KeyRow>(`SELECT id, tenant, role, name, key_hash, created_at FROM ${this.s}.api_keys WHERE key_hash = $1`, [keyHash]);
    const r = rows[0];
    return r && { ...info(r), keyHash: r.key_hash };
  }

  /** Maps a missing tenant (foreign key) to TENANT_NOT_FOUND and a reused key id or hash to BAD_REQUEST. */
  private async insert(tenantId: string, q: Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    try {
      return await q;
    } catch (err) {
      const state = sqlState(err);
      if (state === '23503') throw noTenant(tenantId);
      if (state === '23505') throw new FluxgateError('BAD_REQUEST', 'this API key id or secret is already in use; issue a new key');
      throw err;
    }
  }
}
