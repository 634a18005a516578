/**
 * @module REST: bridges from external MQTT brokers (src/sources/bridge/). Platform admin only:
 * a bridge's template may route messages into any tenant ({tenant} in the topic) and it logs
 * in to infrastructure outside Fluxgate, so tenant keys (even tenant admin) get 403. A created
 * bridge is stored and started at once; DELETE stops it. Passwords and TLS keys are never
 * echoed (`hasPassword`, `tls.hasKey` instead). A malformed body gets 400 BAD_REQUEST naming
 * every wrong field at once (the body is checked against BridgeSchema here, not by Fastify,
 * which would stop at the first problem).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import { BridgeSchema } from '../../config/schema.js';
import type { BridgeSource } from '../../sources/bridge/index.js';
import type { ApiAuth } from '../auth.js';
import { errors, security } from './schemas.js';

const Open = Type.Object({}, { additionalProperties: true });
const BridgeView = Type.Object({
  definition: Open,
  origin: Type.String({ description: '`config` (configuration file) or `api` (created over REST).' }),
  status: Type.Object({}, { additionalProperties: true, description: 'state (connecting, connected, waiting, stopped), lag (received, not yet acknowledged), lastError, lastRefusal, counters.' }),
});
const Id = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export async function bridgeRoutes(app: FastifyInstance, opts: { bridges?: BridgeSource; apiAuth: ApiAuth }): Promise<void> {
  const { apiAuth } = opts;
  const tags = ['bridges'];
  const bridges = () => {
    if (!opts.bridges) throw new FluxgateError('SHUTTING_DOWN', 'bridges are not running on this node');
    return opts.bridges;
  };

  app.post('/api/v1/bridges', {
    schema: { tags, summary: 'Create a bridge from an external MQTT broker and start it (platform admin)', description: 'Body: see BridgeSchema (name, url, username, password, clientId, topics, qos, protocolVersion, template, tls, sessionExpirySeconds, receiveMaximum, keepaliveSeconds, connectTimeoutMs, reconnect).', security, body: BridgeSchema, response: { 201: BridgeView, ...errors(400, 401, 403, 409) } },
    // Checked in the handler against the same schema, so the answer names every field at once.
    validatorCompiler: () => () => true,
  }, async (req, reply) => {
    await apiAuth.principalOf(req, 'platform');
    if (req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) throw new FluxgateError('BAD_REQUEST', 'the body must be a JSON object describing one bridge');
    return reply.status(201).send(await bridges().create(req.body));
  });

  app.get('/api/v1/bridges', {
    schema: { tags, summary: 'List bridges with their status (platform admin)', security, response: { 200: Type.Object({ items: Type.Array(BridgeView) }), ...errors(401, 403) } },
  }, async (req) => {
    await apiAuth.principalOf(req, 'platform');
    return { items: bridges().list() };
  });

  app.get<{ Params: { id: string } }>('/api/v1/bridges/:id', {
    schema: { tags, summary: 'One bridge with status, lag and counters (platform admin)', security, params: Id, response: { 200: BridgeView, ...errors(401, 403, 404) } },
  }, async (req) => {
    await apiAuth.principalOf(req, 'platform');
    return bridges().get(req.params.id);
  });

  app.delete<{ Params: { id: string } }>('/api/v1/bridges/:id', {
    schema: { tags, summary: 'Stop and delete a bridge created over REST (platform admin)', security, params: Id, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    await apiAuth.principalOf(req, 'platform');
    await bridges().remove(req.params.id);
    return reply.status(204).send();
  });
}
