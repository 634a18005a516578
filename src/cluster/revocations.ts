/**
 * @module Registry changes across a cluster (log.backend nats://…): a device disabled, deleted
 * or given a new token through one node is forgotten by every node at once — each drops the
 * cached credential and disconnects the device's sessions (DeviceAuth.forgetHere) — instead of
 * after the device cache's 30 s expiry. A tenant's settings changed through one node likewise
 * reach every node's quotas at once, not after tenants.settingsCacheMs.
 *
 * Core NATS, at most once (subject `fluxgate.revocations`): a node that misses a message (NATS
 * down, reconnecting) still applies the change when its cache entries expire, so the cache TTLs
 * remain the bound and this is the fast path. The connection does not echo this node's own
 * messages back (it applied them already).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { DeviceAuth } from '../registry/device-auth.js';

const SUBJECT = 'fluxgate.revocations';

type Message = { device: { tenant: string; id: string } } | { tenant: string };

export interface RevocationRelay {
  /** Tells the other nodes that a tenant's settings changed (they read it again). */
  tenantChanged(tenant: string): void;
  close(): Promise<void>;
}

export async function relayRevocationsOverNats(opts: {
  servers: string[];
  deviceAuth: DeviceAuth;
  /** Called when another node changed a tenant's settings. */
  onTenantChanged?: (tenant: string) => void;
  logger: Logger;
}): Promise<RevocationRelay> {
  const nc: NatsConnection = await connect({ servers: opts.servers, name: 'fluxgate-revocations', noEcho: true, maxReconnectAttempts: -1 });
  const sub = nc.subscribe(SUBJECT);
  void (async () => {
    for await (const m of sub) {
      try {
        const msg = m.json<Message>();
        if ('device' in msg && typeof msg.device?.tenant === 'string' && typeof msg.device.id === 'string') opts.deviceAuth.forgetHere(msg.device.tenant, msg.device.id);
        else if ('tenant' in msg && typeof msg.tenant === 'string') opts.onTenantChanged?.(msg.tenant);
        else throw new Error('neither a device nor a tenant');
      } catch (err) {
        opts.logger.warn({ err }, 'ignoring a malformed revocation from NATS');
      }
    }
  })();
  // Subscribed at the server before this node sends anything or serves a request.
  await nc.flush();
  const send = (msg: Message) => {
    try {
      nc.publish(SUBJECT, JSON.stringify(msg));
    } catch (err) {
      // Closed or draining: other nodes fall back to their cache expiry.
      opts.logger.warn({ err }, 'revocation not sent to the other nodes; they apply it when their cache expires');
    }
  };
  opts.deviceAuth.useRelay((tenant, id) => send({ device: { tenant, id } }));
  return {
    tenantChanged: (tenant) => send({ tenant }),
    async close() {
      opts.deviceAuth.useRelay(undefined);
      await nc.drain();
    },
  };
}
