/** @module REST: projects of a tenant. Every tenant has the project `default`; a device belongs to one existing project (./devices.ts). Creating needs the tenant admin role. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ProjectRecord, Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import { errors, security } from './schemas.js';

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
}
