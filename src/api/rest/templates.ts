/**
 * @module REST: topic templates of a tenant (src/templates/registry.ts). Creating and deleting
 * need the tenant admin role; listing shows the tenant's own templates (`source: "rest"`) and
 * the platform templates of the configuration file that can map into the tenant
 * (`source: "config"`, read-only). A template over REST maps into its own tenant only: a
 * pattern capturing {tenant} is refused for every caller, the platform admin too (it acts on
 * the tenant it names). A malformed template is answered 400 TEMPLATE_INVALID listing every
 * problem at once: the body is checked by hand (attachValidation), not stopped at the first
 * schema error.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { FluxgateError } from '../../core/errors.js';
import { restTemplateProblems, type TemplateRegistry, type TopicTemplate } from '../../templates/index.js';
import { TopicTemplateSchema } from '../../templates/schema.js';
import type { ApiAuth } from '../auth.js';
import { errors, security } from './schemas.js';

const TemplateView = Type.Object({
  ...TopicTemplateSchema.properties,
  source: Type.Union([Type.Literal('rest'), Type.Literal('config')], { description: 'rest: the tenant\'s own (deletable); config: a platform template of the configuration file.' }),
  updatedAt: Type.Optional(Type.Integer()),
});
const TemplateId = Type.String({ minLength: 1, maxLength: 128 });

/** Every problem of a posted body: its JSON types (TypeBox) and the template rules, one sentence per field. */
function problemsOf(body: unknown, tenant: string): string[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return ['body: must be a JSON object such as {"id": "gw", "pattern": "site/{project}/{device}/#"}'];
  const problems: string[] = [];
  const fields = new Set<string>();
  for (const e of Value.Errors(TopicTemplateSchema, body)) {
    const field = e.path.replace(/^\//, '').replace(/\//g, '.') || 'body';
    if (fields.has(field)) continue;
    fields.add(field);
    problems.push(`${field}: ${e.message}, got ${JSON.stringify(e.value)}`);
  }
  for (const p of restTemplateProblems(body as TopicTemplate, tenant)) {
    if (!fields.has(p.slice(0, p.indexOf(':')))) problems.push(p);
  }
  return problems;
}

export async function templateRoutes(app: FastifyInstance, opts: { templates: TemplateRegistry; apiAuth: ApiAuth }): Promise<void> {
  const { templates, apiAuth } = opts;
  const tags = ['templates'];

  app.post<{ Body: unknown }>('/api/v1/templates', {
    attachValidation: true,
    schema: {
      tags, summary: 'Create a topic template of the tenant (tenant admin); every problem of a bad one is listed', security, body: TopicTemplateSchema,
      response: { 201: TemplateView, ...errors(400, 401, 403, 409) },
    },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    const problems = problemsOf(req.body, tenant);
    if (problems.length) throw new FluxgateError('TEMPLATE_INVALID', `the template has ${problems.length} problem(s): ${problems.join('; ')}`, { details: { problems } });
    return reply.status(201).send(await templates.create(tenant, req.body as TopicTemplate));
  });

  app.get('/api/v1/templates', {
    schema: { tags, summary: 'List the tenant\'s topic templates and the platform templates that map into it', security, response: { 200: Type.Object({ items: Type.Array(TemplateView) }), ...errors(401, 403) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    return { items: await templates.list(tenant) };
  });

  const params = Type.Object({ id: TemplateId });
  app.get<{ Params: { id: string } }>('/api/v1/templates/:id', {
    schema: { tags, summary: 'Get a topic template', security, params, response: { 200: TemplateView, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    const t = await templates.get(tenant, req.params.id);
    if (!t) throw new FluxgateError('TEMPLATE_NOT_FOUND', `no topic template ${req.params.id} in tenant ${tenant}: list them with GET /api/v1/templates`);
    return t;
  });

  app.delete<{ Params: { id: string } }>('/api/v1/templates/:id', {
    schema: { tags, summary: 'Delete a topic template of the tenant (tenant admin); publishes under it are no longer taken', security, params, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    const { tenant } = await apiAuth.principalOf(req, 'admin');
    if (!(await templates.delete(tenant, req.params.id))) {
      const why = templates.isConfigTemplate(tenant, req.params.id) ? 'it is a platform template of the configuration file: change it there' : 'list them with GET /api/v1/templates';
      throw new FluxgateError('TEMPLATE_NOT_FOUND', `no topic template ${req.params.id} of tenant ${tenant} to delete: ${why}`);
    }
    return reply.status(204).send();
  });
}
