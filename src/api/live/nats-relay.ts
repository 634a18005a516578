/**
 * @module Live updates across a cluster: the node that processed a batch publishes each update
 * on NATS (`fluxgate.live`, core NATS, at most once: live views are a convenience, history is
 * the record), and every node hands what it receives to its own subscribers. Tenant scoping
 * is kept: the tenant travels with the update and `LiveHub.deliver` files it under that tenant.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../core/logger.js';
import type { LiveHub, LiveUpdate } from './hub.js';

const SUBJECT = 'fluxgate.live';

export async function relayLiveOverNats(hub: LiveHub, servers: string[], logger: Logger): Promise<{ close(): Promise<void> }> {
  const nc: NatsConnection = await connect({ servers, name: 'fluxgate-live', maxReconnectAttempts: -1 });
  const sub = nc.subscribe(SUBJECT);
  void (async () => {
    for await (const m of sub) {
      try {
        const { tenant, update } = m.json<{ tenant: string; update: LiveUpdate }>();
        hub.deliver(tenant, update);
      } catch (err) {
        logger.warn({ err }, 'ignoring a malformed live update from NATS');
      }
    }
  })();
  await nc.flush();
  hub.useRelay((tenant, update) => nc.publish(SUBJECT, JSON.stringify({ tenant, update })));
  return {
    async close() {
      hub.useRelay(undefined);
      await nc.drain();
    },
  };
}
