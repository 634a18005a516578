/**
 * @module REST: send a command to a device and wait for its reply. The command goes to the
 * device's MQTT topic `devices/{id}/commands/{commandId}` (QoS 1); the device answers on
 * `devices/{id}/commands/{commandId}/reply`. The request waits up to `timeoutMs` for the
 * reply (200 with it) and then answers 504 COMMAND_TIMEOUT (a device that is offline or does
 * not answer). Commands are routed, not logged. In a cluster the command reaches the device on
 * whichever node it is connected and the reply comes back here, both through the MQTT broker's
 * cross-node deliveries (src/sources/mqtt/cluster/).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { randomUUID } from 'node:crypto';
import { FluxgateError } from '../../core/errors.js';
import type { Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import type { MqttSource } from '../../sources/mqtt/index.js';
import { errors, security } from './schemas.js';
import { payloadView } from './payload-view.js';

export type CommandChannel = Pick<MqttSource, 'publish' | 'onMessage'>;

export async function commandRoutes(app: FastifyInstance, opts: { store: Store; apiAuth: ApiAuth; channel?: CommandChannel }): Promise<void> {
  const { store, apiAuth, channel } = opts;
  app.post<{ Params: { id: string }; Body: { name?: string; params?: unknown; timeoutMs: number } }>('/api/v1/devices/:id/commands', {
    schema: {
      tags: ['commands'], summary: 'Send a command to a device over MQTT and wait for its reply', security,
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
      body: Type.Object({
        name: Type.Optional(Type.String({ maxLength: 200, description: 'Command name, passed to the device.' })),
        params: Type.Optional(Type.Unknown({ description: 'Any JSON, passed to the device.' })),
        timeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long to wait for the reply, ms.' }),
      }),
      response: { 200: Type.Object({ commandId: Type.String(), reply: Type.String(), encoding: Type.String() }), ...errors(400, 401, 404, 503, 504) },
    },
  }, async (req) => {
    const { tenant } = await apiAuth.principalOf(req);
    if (!channel) throw new FluxgateError('COMMANDS_UNAVAILABLE', 'commands travel over MQTT and mqtt.enabled is false on this node');
    const device = await store.getDevice(tenant, req.params.id);
    if (!device) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${req.params.id} in tenant ${tenant}`);
    const commandId = randomUUID();
    const topic = `devices/${device.id}/commands/${commandId}`;
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const off = channel.onMessage(tenant, `${topic}/reply`, (msg) => { clearTimeout(timer); off(); resolve(msg.payload); });
      const timer = setTimeout(() => { off(); reject(new FluxgateError('COMMAND_TIMEOUT', `device ${device.id} did not reply within ${req.body.timeoutMs} ms: is it connected and subscribed to devices/${device.id}/commands/#?`)); }, req.body.timeoutMs);
      channel.publish(tenant, { topic, payload: JSON.stringify({ id: commandId, name: req.body.name, params: req.body.params }), qos: 1 });
    });
    const view = payloadView(reply);
    return { commandId, reply: view.payload, encoding: view.encoding };
  });
}
