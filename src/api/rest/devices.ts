/**
 * @module REST: the device registry. A new device gets a random token, returned once and
 * stored only as its hash. Disabling, deleting or rotating a device revokes its cached
 * credentials at once (DeviceAuth.forget). A device belongs to an existing project of its tenant
 * (PROJECT_NOT_FOUND otherwise; `default` always exists).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import { generateToken, hashToken } from '../../core/ids.js';
import type { DeviceRecord, Store } from '../../stores/store.js';
import type { DeviceAuth } from '../../registry/device-auth.js';
import type { ApiAuth } from '../auth.js';
import { After, Limit, errors, security } from './schemas.js';

const DeviceId = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$', description: 'Device id: letters, digits, . _ : - (no / + # so it fits in MQTT topics).' });
const Device = Type.Object({ id: Type.String(), tenant: Type.String(), project: Type.String(), disabled: Type.Boolean(), createdAt: Type.Integer(),
  lastSeen: Type.Optional(Type.Integer({ description: 'GET /api/v1/devices/{id} only: when a message of the device was last received (ms); absent before the first.' })) });
const DeviceWithToken = Type.Object({ ...Device.properties, token: Type.String({ description: 'The device token; shown only now.' }) });

export const view = (d: DeviceRecord) => ({ id: d.id, tenant: d.tenant, project: d.project, disabled: d.disabled, createdAt: d.createdAt });

export async function deviceRoutes(app: FastifyInstance, opts: { store: Store; deviceAuth: DeviceAuth; apiAuth: ApiAuth }): Promise<void> {
  const { store, deviceAuth, apiAuth } = opts;
  const tags = ['devices'];
  const projectMustExist = async (tenant: string, project: string) => {
    if (!(await store.getProject(tenant, project))) throw new FluxgateError('PROJECT_NOT_FOUND', `no project ${project} in tenant ${tenant}: create it with POST /api/v1/projects (every tenant has the project "default")`);
  };

  app.post<{ Body: { id: string; project?: string } }>('/api/v1/devices', {
    schema: { tags, summary: 'Create a device; returns its token once', security, body: Type.Object({ id: DeviceId, project: Type.Optional(Type.String({ minLength: 1, maxLength: 200, default: 'default' })) }), response: { 201: DeviceWithToken, ...errors(400, 401, 403, 404, 409) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req);
    const project = req.body.project ?? 'default';
    await projectMustExist(tenant, project);
    const token = generateToken('fgd_');
    const record: DeviceRecord = { tenant, id: req.body.id, project, tokenHash: hashToken(token), disabled: false, createdAt: Date.now() };
    await store.createDevice(record);
    return reply.status(201).send({ ...view(record), token });
  });

  app.get<{ Querystring: { limit: number; after?: string } }>('/api/v1/devices', {
    schema: { tags, summary: 'List devices, paged', security, querystring: Type.Object({ limit: Limit, after: Type.Optional(After) }), response: { 200: Type.Object({ items: Type.Array(Device), next: Type.Optional(Type.String()) }), ...errors(400, 401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const page = await store.listDevices(tenant, req.query.limit, req.query.after);
    return { items: page.items.map(view), next: page.next };
  });

  const params = Type.Object({ id: DeviceId });
  const found = async (tenant: string, id: string) => {
    const d = await store.getDevice(tenant, id);
    if (!d) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${id} in tenant ${tenant}: create it with POST /api/v1/devices`);
    return d;
  };

  app.get<{ Params: { id: string } }>('/api/v1/devices/:id', {
    schema: { tags, summary: 'Get a device', security, params, response: { 200: Device, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const device = await found(tenant, req.params.id);
    return { ...view(device), lastSeen: (await store.deviceSeen(tenant, req.params.id))?.lastSeen };
  });

  app.patch<{ Params: { id: string }; Body: { disabled?: boolean; project?: string } }>('/api/v1/devices/:id', {
    schema: { tags, summary: 'Disable or enable a device, or move it to another project', security, params, body: Type.Object({ disabled: Type.Optional(Type.Boolean()), project: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }, { additionalProperties: false }), response: { 200: Device, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    if (req.body.project !== undefined) await projectMustExist(tenant, req.body.project);
    const updated = await store.updateDevice(tenant, req.params.id, req.body);
    if (!updated) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${req.params.id} in tenant ${tenant}`);
    deviceAuth.forget(tenant, req.params.id);
    return view(updated);
  });

  app.post<{ Params: { id: string } }>('/api/v1/devices/:id/token', {
    schema: { tags, summary: 'Rotate the device token: the old one stops working at once', security, params, response: { 200: DeviceWithToken, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const token = generateToken('fgd_');
    const updated = await store.updateDevice(tenant, req.params.id, { tokenHash: hashToken(token) });
    if (!updated) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${req.params.id} in tenant ${tenant}`);
    deviceAuth.forget(tenant, req.params.id);
    return { ...view(updated), token };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/devices/:id', {
    schema: { tags, summary: 'Delete a device (its history stays until retention removes it)', security, params, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req);
    if (!(await store.deleteDevice(tenant, req.params.id))) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${req.params.id} in tenant ${tenant}`);
    deviceAuth.forget(tenant, req.params.id);
    return reply.status(204).send();
  });
}
