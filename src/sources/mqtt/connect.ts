/**
 * @module CONNECT (§3.1) → CONNACK (§3.2): device authentication, client identifier
 * assignment, session start or resumption, keepalive, will, and the v5 limits both sides
 * announce (Receive Maximum, Maximum Packet Size, Topic Alias Maximum, Server Keep Alive).
 */
import { randomBytes } from 'node:crypto';
import type { IConnackPacket, IConnectPacket } from 'mqtt-packet';
import { isFluxgateError } from '../../core/errors.js';
import type { Connection } from './connection.js';
import { NEVER_EXPIRES } from './session.js';

/** v3.1.1 CONNACK return codes (§3.2.2.3). */
const V3 = { identifierRejected: 2, serverUnavailable: 3, badCredentials: 4, notAuthorized: 5 } as const;

function refuse(conn: Connection, v5Code: number, v3Code: number, outcome: string): void {
  conn.broker.metrics.connects.labels(outcome).inc();
  const connack: IConnackPacket = conn.v5
    ? { cmd: 'connack', reasonCode: v5Code, sessionPresent: false }
    : { cmd: 'connack', returnCode: v3Code, sessionPresent: false };
  // The CONNACK goes out before the state turns closed; then only this connection closes [MQTT-3.2.2-5].
  conn.state = 'open';
  conn.send(connack);
  conn.close(undefined, outcome);
}

export async function handleConnect(conn: Connection, p: IConnectPacket): Promise<void> {
  const broker = conn.broker;
  const cfg = broker.config;
  conn.state = 'connecting';
  conn.version = p.protocolVersion ?? 4;
  conn.updateReading();
  const v5 = conn.v5;

  if (broker.stopping) return refuse(conn, 0x8b, V3.serverUnavailable, 'refused');
  if (conn.overLimit) return refuse(conn, 0x97, V3.serverUnavailable, 'refused');
  // We offer no enhanced authentication (§4.12).
  if (v5 && p.properties?.authenticationMethod) return refuse(conn, 0x8c, V3.badCredentials, 'unauthenticated');

  let identity;
  try {
    identity = await broker.authenticate(p.username, p.password);
  } catch (err) {
    if (conn.closed) return;
    if (!isFluxgateError(err)) {
      // The registry failed, not the client: "server unavailable", so the device retries.
      broker.logger.error({ err }, 'mqtt authentication failed');
      return refuse(conn, 0x80, V3.serverUnavailable, 'error');
    }
    const spec = err.spec;
    const outcome = err.code === 'UNAUTHENTICATED' ? 'unauthenticated' : 'forbidden';
    return refuse(conn, spec.mqtt5 ?? 0x87, spec.mqtt3 ?? (err.code === 'UNAUTHENTICATED' ? V3.badCredentials : V3.notAuthorized), outcome);
  }
  if (conn.closed) return;

  // [MQTT-3.1.3-7] a v3.1.1 client with no id must ask for a clean session; otherwise we assign one [MQTT-3.1.3-6].
  let clientId = p.clientId;
  let assigned: string | undefined;
  if (clientId === '') {
    if (!v5 && !p.clean) return refuse(conn, 0x85, V3.identifierRejected, 'refused');
    clientId = assigned = `fg-${randomBytes(9).toString('base64url')}`;
  }

  // Session expiry: v5 property (default 0), v3.1.1 CleanSession = 0 keeps the session (capped by configuration).
  const asked = v5 ? (p.properties?.sessionExpiryInterval ?? 0) : p.clean ? 0 : NEVER_EXPIRES;
  const expiry = Math.min(asked, cfg.maxSessionExpirySeconds);

  // [MQTT-3.1.2-24] the connection closes after 1.5 × keepalive without a packet; v5 clients get Server Keep Alive when we cap it.
  let keepalive = p.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (v5 && (keepalive === 0 || keepalive > cfg.maxKeepAliveSeconds)) keepalive = serverKeepAlive = cfg.maxKeepAliveSeconds;
  else if (keepalive > cfg.maxKeepAliveSeconds) keepalive = cfg.maxKeepAliveSeconds;
  conn.keepaliveMs = keepalive * 1000;

  if (v5) {
    const props = p.properties ?? {};
    // §3.1.2.11.3 / §3.1.2.11.4: Receive Maximum 0 and Maximum Packet Size 0 are protocol errors.
    if (props.receiveMaximum === 0 || props.maximumPacketSize === 0) return refuse(conn, 0x82, V3.serverUnavailable, 'protocol');
    conn.clientReceiveMaximum = props.receiveMaximum ?? 65535;
    conn.clientMaxPacket = props.maximumPacketSize ?? 0;
    conn.clientAliasMax = props.topicAliasMaximum ?? 0;
  }

  if (p.will) {
    const w = p.will;
    const { willDelayInterval, messageExpiryInterval, ...passThrough } = w.properties ?? {};
    const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload;
    conn.will = {
      msg: { topic: w.topic, payload, qos: w.qos ?? 0, retain: w.retain ?? false, ...(v5 && Object.keys(passThrough).length ? { properties: passThrough } : {}) },
      delaySeconds: v5 ? (willDelayInterval ?? 0) : 0,
      expirySeconds: messageExpiryInterval,
    };
  }

  if (broker.cluster) {
    // Cluster mode: the client id is taken over from whichever node holds it (cluster/index.ts).
    try {
      await broker.claim(identity, clientId, p.clean ?? true);
    } catch (err) {
      broker.logger.error({ err, client: clientId }, 'mqtt session could not be claimed in the cluster');
      return refuse(conn, 0x88, V3.serverUnavailable, 'error');
    }
    if (conn.closed) return;
  }
  const { sessionPresent } = broker.attach(conn, identity, clientId, p.clean ?? true, expiry);
  conn.state = 'open';
  broker.metrics.connects.labels('accepted').inc();

  const connack: IConnackPacket = v5
    ? { cmd: 'connack', reasonCode: 0, sessionPresent }
    : { cmd: 'connack', returnCode: 0, sessionPresent };
  if (v5) {
    connack.properties = {
      receiveMaximum: cfg.receiveMaximum,
      maximumPacketSize: cfg.maxPacketBytes,
      topicAliasMaximum: cfg.topicAliasMaximum,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
      ...(assigned ? { assignedClientIdentifier: assigned } : {}),
      ...(serverKeepAlive !== undefined ? { serverKeepAlive } : {}),
      ...(expiry !== asked ? { sessionExpiryInterval: expiry } : {}),
      // Request/response (§4.10): a device's replies belong under its own topics.
      ...(p.properties?.requestResponseInformation && identity.kind === 'device' ? { responseInformation: `devices/${identity.id}/commands/` } : {}),
    };
  }
  conn.send(connack);
  conn.resume();

  for (const early of conn.early.splice(0)) conn.dispatch(early);
  conn.updateReading();
}
