/**
 * @module Tenants (with their settings, a JSON object in `tenants.settings`), projects and API
 * keys of the embedded store. A tenant is created with its `default` project in one transaction; projects and keys belong to an existing tenant
 * (TENANT_NOT_FOUND otherwise). Keys are stored as hashes with a unique index, so
 * authentication is one lookup; every list and revoke is scoped by tenant.
 */
import { FluxgateError } from '../../core/errors.js';
import type { ApiKeyInfo, ApiKeyRecord, ApiRole, NewTenant, ProjectRecord, TenantPatch, TenantRecord, TenantSettings } from '../store.js';
import { writeTransaction, type Db } from './schema.js';

interface TenantRow { id: string; name: string; created_at: number; settings: string }
interface ProjectRow { tenant: string; name: string; created_at: number }
interface KeyRow { id: string; tenant: string; role: string; name: string; key_hash: string; created_at: number }

const tenant = (r: TenantRow): TenantRecord => ({ id: r.id, name: r.name, createdAt: r.created_at, settings: JSON.parse(r.settings) as TenantSettings });

/** Settings after a patch: given fields replace, null fields are removed (back to the node's default). */
export function patchSettings(settings: TenantSettings, patch: TenantPatch['settings']): TenantSettings {
  const out: Record<string, number> = { ...settings } as Record<string, number>;
  for (const [k, v] of Object.entries(patch ?? {})) {
    if (v === null) delete out[k];
    else if (v !== undefined) out[k] = v;
  }
  return out as TenantSettings;
}
const project = (r: ProjectRow): ProjectRecord => ({ tenant: r.tenant, name: r.name, createdAt: r.created_at });
const key = (r: KeyRow): ApiKeyRecord => ({ id: r.id, tenant: r.tenant, role: r.role as ApiRole, name: r.name, keyHash: r.key_hash, createdAt: r.created_at });

export class Tenants {
  private readonly q;

  constructor(private readonly db: Db) {
    this.q = {
      insertTenant: db.prepare('INSERT INTO tenants (id, name, created_at, settings) VALUES (?, ?, ?, ?)'),
      updateTenant: db.prepare('UPDATE tenants SET name = ?, settings = ? WHERE id = ?'),
      getTenant: db.prepare('SELECT * FROM tenants WHERE id = ?'),
      listTenants: db.prepare('SELECT * FROM tenants ORDER BY id'),
      insertProject: db.prepare('INSERT INTO projects (tenant, name, created_at) VALUES (?, ?, ?)'),
      getProject: db.prepare('SELECT * FROM projects WHERE tenant = ? AND name = ?'),
      listProjects: db.prepare('SELECT * FROM projects WHERE tenant = ? ORDER BY name'),
      insertKey: db.prepare('INSERT INTO api_keys (id, tenant, role, name, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      keyById: db.prepare('SELECT id FROM api_keys WHERE id = ?'),
      keyByHash: db.prepare('SELECT * FROM api_keys WHERE key_hash = ?'),
      listKeys: db.prepare('SELECT * FROM api_keys WHERE tenant = ? ORDER BY id'),
      revokeKey: db.prepare('DELETE FROM api_keys WHERE tenant = ? AND id = ?'),
    };
  }

  createTenant(t: NewTenant): void {
    writeTransaction(this.db, () => {
      if (this.q.getTenant.get(t.id)) throw new FluxgateError('TENANT_EXISTS', `tenant ${t.id} already exists`);
      this.q.insertTenant.run(t.id, t.name, t.createdAt, JSON.stringify(t.settings ?? {}));
      this.q.insertProject.run(t.id, 'default', t.createdAt);
    })();
  }

  getTenant(id: string): TenantRecord | undefined {
    const r = this.q.getTenant.get(id) as TenantRow | undefined;
    return r && tenant(r);
  }

  listTenants(): TenantRecord[] {
    return (this.q.listTenants.all() as TenantRow[]).map(tenant);
  }

  updateTenant(id: string, patch: TenantPatch): TenantRecord | undefined {
    return writeTransaction(this.db, () => {
      const current = this.getTenant(id);
      if (!current) return undefined;
      const next = { ...current, name: patch.name ?? current.name, settings: patchSettings(current.settings, patch.settings) };
      this.q.updateTenant.run(next.name, JSON.stringify(next.settings), id);
      return next;
    })();
  }

  createProject(p: ProjectRecord): void {
    writeTransaction(this.db, () => {
      this.mustHaveTenant(p.tenant);
      if (this.q.getProject.get(p.tenant, p.name)) throw new FluxgateError('PROJECT_EXISTS', `project ${p.name} already exists in tenant ${p.tenant}`);
      this.q.insertProject.run(p.tenant, p.name, p.createdAt);
    })();
  }

  getProject(tenantId: string, name: string): ProjectRecord | undefined {
    const r = this.q.getProject.get(tenantId, name) as ProjectRow | undefined;
    return r && project(r);
  }

  listProjects(tenantId: string): ProjectRecord[] {
    return (this.q.listProjects.all(tenantId) as ProjectRow[]).map(project);
  }

  createApiKey(k: ApiKeyRecord): void {
    writeTransaction(this.db, () => {
      this.mustHaveTenant(k.tenant);
      if (this.q.keyById.get(k.id) || this.q.keyByHash.get(k.keyHash)) throw new FluxgateError('BAD_REQUEST', 'this API key id or secret is already in use; issue a new key');
      this.q.insertKey.run(k.id, k.tenant, k.role, k.name, k.keyHash, k.createdAt);
    })();
  }

  listApiKeys(tenantId: string): ApiKeyInfo[] {
    return (this.q.listKeys.all(tenantId) as KeyRow[]).map((r) => ({ id: r.id, tenant: r.tenant, role: r.role as ApiRole, name: r.name, createdAt: r.created_at }));
  }

  revokeApiKey(tenantId: string, id: string): boolean {
    return this.q.revokeKey.run(tenantId, id).changes > 0;
  }

  findApiKeyByHash(keyHash: string): ApiKeyRecord | undefined {
    const r = this.q.keyByHash.get(keyHash) as KeyRow | undefined;
    return r && key(r);
  }

  private mustHaveTenant(id: string): void {
    if (!this.q.getTenant.get(id)) throw new FluxgateError('TENANT_NOT_FOUND', `no tenant ${id}: create it first (POST /api/v1/tenants)`);
  }
}
