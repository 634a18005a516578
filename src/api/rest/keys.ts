/**
 * @module REST: API keys of a tenant (tenant admin role). A key's secret is returned once, at
 * creation, and stored only as its SHA-256; revoking a key refuses it at once on this node
 * (ApiAuth.forgetKey) and on others within KEY_CACHE_MS.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import { generateToken, hashToken } from '../../core/ids.js';
import type { ApiKeyInfo, ApiKeyRecord, ApiRole, Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { errors, security } from './schemas.js';

export const Role = Type.Union([Type.Literal('admin'), Type.Literal('write'), Type.Literal('read')], { description: 'read: GET only; write: + device registry, dead letters and other writes; admin: + API keys and projects.' });
export const ApiKey = Type.Object({ id: Type.String(), tenant: Type.String(), role: Role, name: Type.String(), createdAt: Type.Integer() });
export const ApiKeyWithSecret = Type.Object({ ...ApiKey.properties, key: Type.String({ description: 'The API key; shown only now.' }) });

export const keyView = (k: ApiKeyInfo) => ({ id: k.id, tenant: k.tenant, role: k.role, name: k.name, createdAt: k.createdAt });

/** A new key of `tenant`: the record to store and the secret to show once. */
export function newApiKey(tenant: string, role: ApiRole, name: string): { record: ApiKeyRecord; secret: string } {
  const secret = generateToken('fgk_');
  return { record: { id: `key_${randomBytes(8).toString('hex')}`, tenant, role, name, keyHash: hashToken(secret), createdAt: Date.now() }, secret };
}

export async function keyRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { store, apiAuth } = opts;
  const tags = ['keys'];

  app.post<{ Body: { role: ApiRole; name?: string } }>('/api/v1/keys', {
    schema: { tags, summary: 'Create an API key of the tenant; returns the key once (tenant admin)', security, body: Type.Object({ role: Role, name: Type.Optional(Type.String({ maxLength: 200, default: '' })) }, { additionalProperties: false }), response: { 201: ApiKeyWithSecret, ...errors(400, 401, 403) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    const { record, secret } = newApiKey(tenant, req.body.role, req.body.name ?? '');
    await store.createApiKey(record);
    return reply.status(201).send({ ...keyView(record), key: secret });
  });

  app.get('/api/v1/keys', {
    schema: { tags, summary: 'List the tenant\'s API keys (never their secrets) (tenant admin)', security, response: { 200: Type.Object({ items: Type.Array(ApiKey) }), ...errors(401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    return { items: (await store.listApiKeys(tenant)).map(keyView) };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/keys/:id', {
    schema: { tags, summary: 'Revoke an API key: it stops working at once (tenant admin)', security, params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }), response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    if (!(await store.revokeApiKey(tenant, req.params.id))) throw new FluxgateError('API_KEY_NOT_FOUND', `no API key ${req.params.id} in tenant ${tenant}: list them with GET /api/v1/keys`);
    apiAuth.forgetKey(req.params.id);
    return reply.status(204).send();
  });
}
