/** @module /livez (the process answers) and /readyz (each component's status; 503 when one is not ready). Unauthenticated, for load balancers. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';

export type ComponentStatus = { ok: boolean; detail?: string };
export type Components = () => Record<string, ComponentStatus>;

const Status = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });

export async function healthRoutes(app: FastifyInstance, opts: { components: Components }): Promise<void> {
  app.get('/livez', { schema: { tags: ['health'], summary: 'Liveness', response: { 200: Type.Object({ status: Type.String() }) } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', {
    schema: { tags: ['health'], summary: 'Readiness with each component', response: { 200: Type.Object({ ready: Type.Boolean(), components: Type.Record(Type.String(), Status) }), 503: Type.Object({ ready: Type.Boolean(), components: Type.Record(Type.String(), Status) }) } },
  }, async (_req, reply) => {
    const components = opts.components();
    const ready = Object.values(components).every((c) => c.ok);
    return reply.status(ready ? 200 : 503).send({ ready, components });
  });
}
