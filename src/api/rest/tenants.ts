/**
 * @module REST: tenants, for the platform admin key only. Creating a tenant creates its project
 * `default` and its first admin API key, returned once; the tenant's own admin then manages
 * its keys and projects. Tenants are not deleted (their data would have no owner).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Store, TenantRecord } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { ApiKeyWithSecret, keyView, newApiKey } from './keys.js';
import { errors, security } from './schemas.js';

const Tenant = Type.Object({ id: Type.String(), name: Type.String(), createdAt: Type.Integer() });
const view = (t: TenantRecord) => ({ id: t.id, name: t.name, createdAt: t.createdAt });

export async function tenantRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { store, apiAuth } = opts;
  const tags = ['tenants'];

  app.post<{ Body: { id: string; name?: string } }>('/api/v1/tenants', {
    schema: {
      tags, summary: 'Create a tenant; returns it with its first admin API key, shown once (platform admin)', security,
      body: Type.Object({
        id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', description: 'Tenant id: letters, digits, . _ - (it appears in topics).' }),
        name: Type.Optional(Type.String({ maxLength: 200, description: 'Display name; the id when omitted.' })),
      }, { additionalProperties: false }),
      response: { 201: Type.Object({ tenant: Tenant, key: ApiKeyWithSecret }), ...errors(400, 401, 403, 409) },
    },
  }, async (req, reply) => {
    await apiAuth.principalOf(req, 'platform');
    const tenant: TenantRecord = { id: req.body.id, name: req.body.name ?? req.body.id, createdAt: Date.now() };
    await store.createTenant(tenant);
    apiAuth.tenantCreated(tenant.id);
    const { record, secret } = newApiKey(tenant.id, 'admin', 'first admin key');
    await store.createApiKey(record);
    return reply.status(201).send({ tenant: view(tenant), key: { ...keyView(record), key: secret } });
  });

  app.get('/api/v1/tenants', {
    schema: { tags, summary: 'List tenants (platform admin)', security, response: { 200: Type.Object({ items: Type.Array(Tenant) }), ...errors(401, 403) } },
  }, async (req) => {
    await apiAuth.principalOf(req, 'platform');
    return { items: (await store.listTenants()).map(view) };
  });
}
