/**
 * @module REST: tenants, for the platform admin key only. Creating a tenant creates its project
 * `default` and its first admin API key, returned once; the tenant's own admin then manages
 * its keys and projects. Tenants are not deleted (their data would have no owner).
 * A tenant's settings (quotas, retention) are set by the platform admin (PATCH; null returns a
 * field to the node's default) and read by it or by the tenant's own admin key; answers show
 * the tenant's own settings and the effective ones (src/registry/tenant-settings.ts).
 */
import type { FastifyInstance } from 'fastify';
import { Type, type TSchema } from '@sinclair/typebox';
import type { Config } from '../../config/schema.js';
import { FluxgateError } from '../../core/errors.js';
import { effectiveSettings, SETTING_NAMES } from '../../registry/tenant-settings.js';
import type { Store, TenantPatch, TenantRecord } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { ApiKeyWithSecret, keyView, newApiKey } from './keys.js';
import { errors, security } from './schemas.js';

const Tenant = Type.Object({ id: Type.String(), name: Type.String(), createdAt: Type.Integer() });
const view = (t: Pick<TenantRecord, 'id' | 'name' | 'createdAt'>) => ({ id: t.id, name: t.name, createdAt: t.createdAt });

const SETTING_SCHEMAS: Record<(typeof SETTING_NAMES)[number], TSchema> = {
  maxDevices: Type.Integer({ minimum: 0, maximum: 1e9, description: 'Devices the tenant may have (0 = unlimited).' }),
  messagesPerSecond: Type.Number({ minimum: 0, maximum: 1e9, description: 'Messages per second over all the tenant\'s devices (token bucket; 0 = unlimited).' }),
  burstMessages: Type.Integer({ minimum: 0, maximum: 1e9, description: 'Messages the tenant may send at once above its rate (0 = one second of messagesPerSecond).' }),
  maxPayloadBytes: Type.Integer({ minimum: 0, maximum: 2 ** 31, description: 'Largest message payload, bytes (0 = only the protocol limits).' }),
  rawRetentionDays: Type.Number({ minimum: 0, maximum: 36500, description: 'Raw history and archive kept this many days (0 = forever).' }),
  rollup1mRetentionDays: Type.Number({ minimum: 0, maximum: 36500, description: '1-minute roll-ups kept this many days (0 = forever).' }),
  rollup1hRetentionDays: Type.Number({ minimum: 0, maximum: 36500, description: '1-hour roll-ups kept this many days (0 = forever).' }),
};
const Settings = Type.Object(Object.fromEntries(SETTING_NAMES.map((k) => [k, Type.Optional(SETTING_SCHEMAS[k])])), { additionalProperties: false });
const Effective = Type.Object(Object.fromEntries(SETTING_NAMES.map((k) => [k, SETTING_SCHEMAS[k]])));
// One schema with type [number, null], not anyOf: the validator coerces types, and in an anyOf
// would turn null into 0 (or 0 into null), whichever branch it tried first.
const nullable = (s: TSchema) => Type.Unsafe<number | null>({ ...s, type: [s.type, 'null'] });
const SettingsPatch = Type.Object(Object.fromEntries(SETTING_NAMES.map((k) => [k, Type.Optional(nullable(SETTING_SCHEMAS[k]))])), { additionalProperties: false, description: 'Fields to change; null returns a field to the node\'s default (tenants.* in the configuration).' });
const TenantDetail = Type.Object({ ...Tenant.properties, settings: Settings, effective: Effective });
const TenantId = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export interface TenantRouteOptions {
  store: Store;
  apiAuth: ApiAuth;
  /** The node's defaults for settings a tenant does not set. */
  config: Pick<Config, 'tenants'>;
  /** Told of every settings change made here (the quota cache refreshes at once). */
  onTenantChanged?: (tenant: TenantRecord) => void;
}

export async function tenantRoutes(app: FastifyInstance, opts: TenantRouteOptions): Promise<void> {
  const { store, apiAuth } = opts;
  const detail = (t: TenantRecord) => ({ ...view(t), settings: t.settings, effective: effectiveSettings(t, opts.config) });
  const noTenant = (id: string) => new FluxgateError('TENANT_NOT_FOUND', `no tenant ${id}: list tenants with GET /api/v1/tenants`);
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
    const tenant = { id: req.body.id, name: req.body.name ?? req.body.id, createdAt: Date.now() };
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

  app.get<{ Params: { id: string } }>('/api/v1/tenants/:id', {
    schema: { tags, summary: 'A tenant with its own and its effective settings (platform admin, or the tenant\'s own admin key)', security, params: TenantId, response: { 200: TenantDetail, ...errors(401, 403, 404) } },
  }, async (req) => {
    const who = await apiAuth.principalOf(req, 'admin');
    if (who.role !== 'platform' && who.tenant !== req.params.id) throw new FluxgateError('FORBIDDEN', `this API key belongs to another tenant than ${req.params.id}: a tenant key reads only its own tenant`);
    const t = await store.getTenant(req.params.id);
    if (!t) throw noTenant(req.params.id);
    return detail(t);
  });

  app.patch<{ Params: { id: string }; Body: TenantPatch }>('/api/v1/tenants/:id', {
    schema: {
      tags, summary: 'Change a tenant\'s name or settings (quotas, retention) (platform admin)', security, params: TenantId,
      body: Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), settings: Type.Optional(SettingsPatch) }, { additionalProperties: false }),
      response: { 200: TenantDetail, ...errors(400, 401, 403, 404) },
    },
  }, async (req) => {
    await apiAuth.principalOf(req, 'platform');
    const t = await store.updateTenant(req.params.id, req.body);
    if (!t) throw noTenant(req.params.id);
    opts.onTenantChanged?.(t);
    return detail(t);
  });
}
