/**
 * @module REST: projects of a tenant. Every tenant has the project `default`; a device belongs to one existing project (./devices.ts). Creating needs the tenant admin role.
 * `GET/PUT /api/v1/projects/{name}/settings`: the project's processing settings (src/process/settings.ts), kept as a store object of kind `project-settings`.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ProjectRecord, Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { errors, security } from './schemas.js';
import { FluxgateError } from '../../core/errors.js';
import { PROJECT_SETTINGS_KIND, ProjectSettingsSchema, type ProjectSettings } from '../../process/settings.js';

export const ProjectName = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$', description: 'Project name: letters, digits, . _ : - (no / + # so it fits in MQTT topics).' });
const Project = Type.Object({ tenant: Type.String(), name: Type.String(), createdAt: Type.Integer() });
const view = (p: ProjectRecord) => ({ tenant: p.tenant, name: p.name, createdAt: p.createdAt });

export async function projectRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { store, apiAuth } = opts;
  const tags = ['projects'];

  app.post<{ Body: { name: string } }>('/api/v1/projects', {
    schema: { tags, summary: 'Create a project in the tenant (tenant admin)', security, body: Type.Object({ name: ProjectName }, { additionalProperties: false }), response: { 201: Project, ...errors(400, 401, 403, 409) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    const record: ProjectRecord = { tenant, name: req.body.name, createdAt: Date.now() };
    await store.createProject(record);
    return reply.status(201).send(view(record));
  });

  app.get('/api/v1/projects', {
    schema: { tags, summary: 'List the tenant\'s projects', security, response: { 200: Type.Object({ items: Type.Array(Project) }), ...errors(401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    return { items: (await store.listProjects(tenant)).map(view) };
  });

  // Processing settings of a project (src/process/settings.ts), kept as a store object.
  const Settings = Type.Object({ project: Type.String(), settings: ProjectSettingsSchema, updatedAt: Type.Optional(Type.Integer()) });
  const projectMustExist = async (tenant: string, name: string) => {
    if (!(await store.getProject(tenant, name))) throw new FluxgateError('PROJECT_NOT_FOUND', `no project ${name} in tenant ${tenant}: create it with POST /api/v1/projects`);
  };
  app.get<{ Params: { name: string } }>('/api/v1/projects/:name/settings', {
    schema: { tags, summary: 'Processing settings of a project (classification field, same-value suppression, snapshots)', security, params: Type.Object({ name: ProjectName }), response: { 200: Settings, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    await projectMustExist(tenant, req.params.name);
    const o = await store.getObject(PROJECT_SETTINGS_KIND, tenant, req.params.name);
    return { project: req.params.name, settings: (o?.body ?? {}) as ProjectSettings, updatedAt: o?.updatedAt };
  });
  app.put<{ Params: { name: string }; Body: ProjectSettings }>('/api/v1/projects/:name/settings', {
    schema: { tags, summary: 'Replace the processing settings of a project (tenant admin); processing applies them within 5 s', security, params: Type.Object({ name: ProjectName }), body: ProjectSettingsSchema, response: { 200: Settings, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    await projectMustExist(tenant, req.params.name);
    const updatedAt = Date.now();
    await store.putObject({ kind: PROJECT_SETTINGS_KIND, tenant, id: req.params.name, body: req.body, updatedAt });
    return { project: req.params.name, settings: req.body, updatedAt };
  });
}
