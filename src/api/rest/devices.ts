/**
 * @module REST: the device registry. A new device gets a random token, returned once and
 * stored only as its hash. Disabling, deleting or rotating a device revokes its cached
 * credentials at once (DeviceAuth.forget; on every node of a cluster, src/cluster/revocations.ts).
 * A device belongs to an existing project of its tenant (PROJECT_NOT_FOUND otherwise; `default`
 * always exists). The tenant's device quota (maxDevices) holds for single and bulk creation:
 * the store counts inside the creating transaction. Bulk import (POST /api/v1/devices/bulk, JSON
 * or CSV, ./device-import.ts) creates every device or none and lists every bad row.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import { generateToken, hashToken } from '../../core/ids.js';
import type { DeviceRecord, Store } from '../../stores/store.js';
import type { DeviceAuth } from '../../registry/device-auth.js';
import type { Config } from '../../config/schema.js';
import { effectiveSettings } from '../../registry/tenant-settings.js';
import type { Quotas } from '../../sources/quota.js';
import type { ApiAuth } from '../auth.js';
import { After, Limit, errors, security } from './schemas.js';
import { checkRows, MAX_IMPORT_ROWS, rawRows, toCsv, type RowError } from './device-import.js';

/** Largest bulk import body, bytes (16 MiB: 10,000 rows of 200-character ids and projects fit). */
const BULK_BODY_LIMIT = 16 * 1024 * 1024;

const DeviceId = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$', description: 'Device id: letters, digits, . _ : - (no / + # so it fits in MQTT topics).' });
const Device = Type.Object({ id: Type.String(), tenant: Type.String(), project: Type.String(), disabled: Type.Boolean(), createdAt: Type.Integer(),
  lastSeen: Type.Optional(Type.Integer({ description: 'GET /api/v1/devices/{id} only: when a message of the device was last received (ms); absent before the first.' })) });
const DeviceWithToken = Type.Object({ ...Device.properties, token: Type.String({ description: 'The device token; shown only now.' }) });

export const view = (d: DeviceRecord) => ({ id: d.id, tenant: d.tenant, project: d.project, disabled: d.disabled, createdAt: d.createdAt });

export interface DeviceRouteOptions {
  store: Store;
  deviceAuth: DeviceAuth;
  apiAuth: ApiAuth;
  /** The node's tenant defaults (tenants.defaultMaxDevices). */
  tenantConfig: Pick<Config, 'tenants'>;
  /** Counts device creations refused by the quota. */
  quotas?: Quotas;
}

export async function deviceRoutes(app: FastifyInstance, opts: DeviceRouteOptions): Promise<void> {
  const { store, deviceAuth, apiAuth } = opts;
  const tags = ['devices'];
  // Read fresh (not from the quota cache): a raised quota applies at once on every node.
  const maxDevices = async (tenant: string) => effectiveSettings((await store.getTenant(tenant)) ?? {}, opts.tenantConfig).maxDevices;
  /** Creates devices of one tenant, all or none, within its device quota. */
  const create = async (tenant: string, records: DeviceRecord[]) => {
    try {
      await store.createDevices(records, { maxDevices: await maxDevices(tenant) });
    } catch (err) {
      if ((err as FluxgateError).code === 'QUOTA_DEVICES') opts.quotas?.refusedDevices(tenant, records.length);
      throw err;
    }
  };
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
    await create(tenant, [record]);
    return reply.status(201).send({ ...view(record), token });
  });

  // CSV bodies arrive as text; JSON uses the server's parser. Both up to BULK_BODY_LIMIT.
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: BULK_BODY_LIMIT }, (_req, body, done) => done(null, body));
  // Errors of a bulk import carry every problem, not just the first.
  const RowErrors = Type.Object({ code: Type.String(), message: Type.String(), errors: Type.Optional(Type.Array(Type.Object({ row: Type.Integer(), field: Type.String(), message: Type.String() }))) });
  const ImportedDevice = Type.Object({ id: Type.String(), project: Type.String(), token: Type.String({ description: 'The device token; shown only now.' }) });
  app.post<{ Body: unknown }>('/api/v1/devices/bulk', {
    bodyLimit: BULK_BODY_LIMIT,
    schema: {
      tags, security,
      summary: `Create up to ${MAX_IMPORT_ROWS} devices at once, all or none; returns their tokens once`,
      description: 'Body: a JSON array of {"id": …, "project": …} (project optional, default `default`), or `Content-Type: text/csv` with the header `id,project`. '
        + 'Every row is checked first; any bad row (or an id that exists, or the device quota) creates nothing, and a 400 lists every problem as `errors: [{row, field, message}]` (row 1 = first element / first line after the header). '
        + 'The answer is JSON, or CSV `id,project,token` with `Accept: text/csv`.',
      response: { 201: Type.Object({ created: Type.Integer(), devices: Type.Array(ImportedDevice) }), ...errors(401, 403, 404, 413, 415), 400: RowErrors, 409: RowErrors },
    },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req);
    const csv = /^text\/csv\b/i.test(req.headers['content-type'] ?? '');
    const { rows, errors: bodyErrors } = rawRows(req.body, csv);
    const bad = (errs: RowError[], what: string) => new FluxgateError('BAD_REQUEST', `${what}; nothing was created. Fix the rows listed in "errors" and send the whole file again`, { details: { errors: errs } });
    if (bodyErrors.length > 0) throw bad(bodyErrors, bodyErrors[0].message);
    if (rows.length === 0) throw bad([{ row: 0, field: 'body', message: 'no rows' }], 'the body has no devices');
    if (rows.length > MAX_IMPORT_ROWS) throw bad([{ row: MAX_IMPORT_ROWS + 1, field: 'body', message: `more than ${MAX_IMPORT_ROWS} rows` }], `${rows.length} devices is more than ${MAX_IMPORT_ROWS} per call: split the file`);
    const { ok, errors: rowErrors } = checkRows(rows);
    // Every project named must exist in the tenant (one lookup per distinct project).
    const projects = new Map<string, boolean>();
    for (const p of new Set(ok.map((r) => r.project))) projects.set(p, (await store.getProject(tenant, p)) !== undefined);
    for (const r of ok) if (!projects.get(r.project)) rowErrors.push({ row: r.row, field: 'project', message: `no project ${r.project} in tenant ${tenant}: create it first (POST /api/v1/projects)` });
    if (rowErrors.length > 0) throw bad(rowErrors.sort((a, b) => a.row - b.row), `${rowErrors.length} problem${rowErrors.length > 1 ? 's' : ''} in ${new Set(rowErrors.map((e) => e.row)).size} of ${rows.length} rows`);
    const now = Date.now();
    const made = ok.map((r) => ({ row: r.row, token: generateToken('fgd_'), record: { tenant, id: r.id, project: r.project, tokenHash: '', disabled: false, createdAt: now } as DeviceRecord }));
    for (const m of made) m.record.tokenHash = hashToken(m.token);
    try {
      await create(tenant, made.map((m) => m.record));
    } catch (err) {
      // Ids that already exist, listed by row like the other problems.
      const ids = (err as FluxgateError).code === 'DEVICE_EXISTS' ? ((err as FluxgateError).details?.ids as string[] | undefined) : undefined;
      if (ids?.length) {
        const existing = new Set(ids);
        const errs = made.filter((m) => existing.has(m.record.id)).map((m) => ({ row: m.row, field: 'id', message: `device ${m.record.id} already exists in tenant ${tenant}` }));
        throw new FluxgateError('DEVICE_EXISTS', `${errs.length} of ${made.length} devices already exist; nothing was created. Remove those rows (listed in "errors") and send the file again`, { details: { errors: errs } });
      }
      throw err;
    }
    const devices = made.map((m) => ({ id: m.record.id, project: m.record.project, token: m.token }));
    if (/\btext\/csv\b/i.test(req.headers.accept ?? '')) {
      return reply.status(201).type('text/csv; charset=utf-8').serializer((x: string) => x).send(toCsv(['id', 'project', 'token'], devices.map((d) => [d.id, d.project, d.token])));
    }
    return reply.status(201).send({ created: devices.length, devices });
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
