/**
 * @module The ONE configuration schema. Every setting has a description, a default with its
 * unit, a `FLUXGATE_*` environment twin and a `--flag` (derived from its path unless named).
 * docs/configuration.md is generated from this file (`npm run docs:config`).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TopicTemplateSchema } from '../templates/schema.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HOUR = 3600 * 1000;

/** Extra metadata: `env` / `flag` override the names derived from the path. */
interface Meta { env?: string; flag?: string }
const port = (def: number, description: string, meta: Meta = {}) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: def, description, ...meta });

/** One bridge from an external MQTT broker (src/sources/bridge/): the configuration file's `bridges` items and POST /api/v1/bridges bodies. */
export const BridgeTemplateSchema = Type.Object({
  pattern: Type.String({ minLength: 1, description: 'Topic layout, e.g. mtic/msg/client/realtime/{tenant}/{project}/{device}/#.' }),
  tenant: Type.Optional(Type.String({ description: 'Fixed tenant when the pattern has no {tenant}.' })),
  project: Type.Optional(Type.String({ description: 'Fixed project when the pattern has no {project} (else `default`).' })),
  kind: Type.Optional(Type.Union([Type.Literal('telemetry'), Type.Literal('event'), Type.Literal('snapshot'), Type.Literal('attributes')], { description: 'Kind when the pattern has no {kind} (default telemetry).' })),
  kinds: Type.Optional(Type.Record(Type.String(), Type.Union([Type.Literal('telemetry'), Type.Literal('event'), Type.Literal('snapshot'), Type.Literal('attributes')]), { description: 'Extra words a {kind} level may take.' })),
  autoProvision: Type.Optional(Type.Boolean({ description: 'Register unknown devices (and projects) on first message; else they are refused and counted.' })),
}, { additionalProperties: false });

export const BridgeSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'Bridge name (letters, digits, . _ -; up to 64): metric label, /readyz component bridge:<name>, REST id.' }),
  url: Type.String({ pattern: '^(mqtts?|wss?)://[^\\s]+$', description: 'External broker: mqtt://host:1883, mqtts://host:8883, ws:// or wss://.' }),
  username: Type.Optional(Type.String({ description: 'Login at the external broker.' })),
  password: Type.Optional(Type.String({ description: 'Password at the external broker; never shown by the REST API.' })),
  clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'MQTT client id of the persistent session (default fluxgate-bridge-<name>). Keep it stable: the external broker holds the session\'s messages under it.' })),
  topics: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 100, description: 'Topic filters to subscribe to; wildcards + and #, and $share/<group>/<filter>.' }),
  qos: Type.Union([Type.Literal(1), Type.Literal(2)], { default: 1, description: 'Subscription QoS (1 or 2).' }),
  protocolVersion: Type.Union([Type.Literal(4), Type.Literal(5)], { default: 5, description: 'MQTT 3.1.1 (4) or 5.' }),
  template: Type.Union([Type.String({ minLength: 1, description: 'Id of a topic template of the template registry.' }), BridgeTemplateSchema], { description: 'How topics map to tenant, project, device and kind: a template id or an inline template.' }),
  tls: Type.Optional(Type.Object({
    caFile: Type.Optional(Type.String({ description: 'PEM CA bundle file for mqtts:// / wss://.' })),
    certFile: Type.Optional(Type.String({ description: 'PEM client certificate file.' })),
    keyFile: Type.Optional(Type.String({ description: 'PEM client key file.' })),
    ca: Type.Optional(Type.String({ description: 'PEM CA bundle text (instead of caFile).' })),
    cert: Type.Optional(Type.String({ description: 'PEM client certificate text.' })),
    key: Type.Optional(Type.String({ description: 'PEM client key text; never shown by the REST API.' })),
    rejectUnauthorized: Type.Boolean({ default: true, description: 'Refuse a broker certificate that does not verify.' }),
    servername: Type.Optional(Type.String({ description: 'TLS server name (SNI) when it differs from the URL host.' })),
  }, { additionalProperties: false })),
  sessionExpirySeconds: Type.Integer({ minimum: 60, default: 7 * 24 * 3600, description: 'How long the external broker keeps the session (and its messages) while Fluxgate is away, s (MQTT 5; 3.1.1 uses clean=false).' }),
  receiveMaximum: Type.Integer({ minimum: 1, maximum: 65535, default: 1000, description: 'Unacknowledged QoS 1/2 messages the external broker may send at once (MQTT 5); more share one log sync.' }),
  keepaliveSeconds: Type.Integer({ minimum: 5, maximum: 65535, default: 30, description: 'MQTT keepalive towards the external broker, s.' }),
  connectTimeoutMs: Type.Integer({ minimum: 500, default: 10000, description: 'A connection attempt without CONNACK within this many ms fails and is retried.' }),
  reconnect: Type.Object({
    initialMs: Type.Integer({ minimum: 10, default: 500, description: 'First reconnect delay, ms.' }),
    maxMs: Type.Integer({ minimum: 10, default: 30000, description: 'Longest reconnect delay, ms; delays double up to it, with jitter.' }),
  }, { default: {}, additionalProperties: false }),
}, { additionalProperties: false });
export type BridgeConfig = Static<typeof BridgeSchema>;

export const ConfigSchema = Type.Object({
  dataDir: Type.String({ default: './data', minLength: 1, description: 'Directory for the log, the embedded store and the admin key.', env: 'FLUXGATE_DATA_DIR', flag: 'data-dir' }),
  adminKey: Type.Optional(Type.String({ minLength: 16, description: 'Platform admin API key. Unset: generated on first start and kept in <dataDir>/admin.key.', env: 'FLUXGATE_ADMIN_KEY', flag: 'admin-key' })),
  logLevel: Type.Union([Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')], { default: 'info', description: 'Node log level (pino), written as JSON lines to stderr.', env: 'FLUXGATE_LOG_LEVEL', flag: 'log-level' }),
  http: Type.Object({
    host: Type.String({ default: '0.0.0.0', description: 'Address the HTTP listener (REST, ingest, /metrics, MQTT over WebSocket at /mqtt) binds.' }),
    port: port(8080, 'HTTP port; 0 picks any free port.', { env: 'FLUXGATE_HTTP_PORT', flag: 'http-port' }),
    bodyLimitBytes: Type.Integer({ minimum: 1 * KiB, default: 1 * MiB, description: 'Largest HTTP ingest body, bytes (1 MiB). Larger bodies get 413.' }),
    retryAfterSeconds: Type.Integer({ minimum: 1, default: 1, description: 'Retry-After seconds sent with 503 when the log is over its limit.' }),
  }, { default: {} }),
  mqtt: Type.Object({
    host: Type.String({ default: '0.0.0.0', description: 'Address the MQTT listeners bind.' }),
    port: port(1883, 'MQTT TCP port; 0 picks any free port.', { env: 'FLUXGATE_MQTT_PORT', flag: 'mqtt-port' }),
    enabled: Type.Boolean({ default: true, description: 'Run the MQTT broker.' }),
    tlsPort: port(8883, 'MQTT over TLS port; used only when mqtt.tlsCertFile and mqtt.tlsKeyFile are set.'),
    tlsCertFile: Type.Optional(Type.String({ description: 'PEM certificate for MQTT over TLS.' })),
    tlsKeyFile: Type.Optional(Type.String({ description: 'PEM private key for MQTT over TLS.' })),
    maxConnections: Type.Integer({ minimum: 1, default: 200000, description: 'Concurrent MQTT connections per node; more are refused (CONNACK 0x97 / server unavailable).' }),
    maxPacketBytes: Type.Integer({ minimum: 1 * KiB, default: 1 * MiB, description: 'Largest MQTT packet accepted, bytes (1 MiB); larger closes the connection (v5: DISCONNECT 0x95).' }),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 10000, description: 'A connection that has not sent CONNECT within this many ms is closed (slowloris guard).' }),
    receiveMaximum: Type.Integer({ minimum: 1, maximum: 65535, default: 100, description: 'QoS 1/2 publishes a client may have unacknowledged towards the broker (MQTT 5 Receive Maximum).' }),
    maxQueuedMessages: Type.Integer({ minimum: 1, default: 1000, description: 'Messages queued for one subscriber before it is disconnected as too slow (counted).' }),
    maxOfflineMessages: Type.Integer({ minimum: 0, default: 10000, description: 'QoS 1/2 messages kept for one offline persistent session; further messages are dropped for it and counted.' }),
    topicAliasMaximum: Type.Integer({ minimum: 0, maximum: 65535, default: 100, description: 'Topic aliases a MQTT 5 client may use towards the broker (0 disables them).' }),
    maxKeepAliveSeconds: Type.Integer({ minimum: 1, maximum: 65535, default: 3600, description: 'Largest keepalive a client may ask for, seconds (1 hour); MQTT 5 clients asking for more (or 0) get Server Keep Alive.' }),
    maxSessionExpirySeconds: Type.Integer({ minimum: 0, default: 7 * 24 * 3600, description: 'Longest time an offline persistent session is kept, seconds (7 days); MQTT 3.1.1 clean-session=false sessions get this.' }),
  }, { default: {} }),
  coap: Type.Object({
    port: port(5683, 'CoAP UDP port; 0 picks any free port.', { env: 'FLUXGATE_COAP_PORT', flag: 'coap-port' }),
  }, { default: {} }),
  log: Type.Object({
    backend: Type.String({ default: 'file', description: '"file" for the embedded write-ahead log in <dataDir>/log, or nats://HOST:PORT[,nats://HOST2:PORT…] for a NATS JetStream stream.', env: 'FLUXGATE_LOG', flag: 'log' }),
    segmentBytes: Type.Integer({ minimum: 64 * KiB, default: 128 * MiB, description: 'Size at which the embedded log starts a new segment file, bytes (128 MiB).' }),
    retentionHours: Type.Number({ minimum: 0, default: 72, description: 'Processed log segments older than this are deleted, hours (3 days; 0 = no age limit).' }),
    retentionBytes: Type.Integer({ minimum: 0, default: 10 * 1024 * MiB, description: 'Processed log segments beyond this total size are deleted oldest first, bytes (10 GiB; 0 = no size limit).' }),
    replicas: Type.Integer({ minimum: 1, maximum: 5, default: 1, description: 'JetStream stream replicas (log.backend nats://…); 3 in production on a 3-server NATS cluster.' }),
    shedSnapshotsAtRecords: Type.Integer({ minimum: 1, default: 250000, description: 'When processing is this many records behind, sources refuse snapshots (counted) and still take events and telemetry. Keep it below log.maxLagRecords.' }),
    snapshotShare: Type.Number({ minimum: 0, maximum: 1, default: 0.1, description: 'Share of each processing batch kept for snapshots while any wait (0.1 = one record in ten; at least one, and events always keep one place). Processing prefers events, but with 0 (strict priority) a steady stream of events starves snapshots, so latest state and "last seen" from snapshots stop advancing until events let up. A lane with nothing waiting leaves its room to the other.' }),
    maxLagRecords: Type.Integer({ minimum: 1, default: 500000, description: 'When processing is this many records behind, sources slow down (HTTP 503, MQTT stops reading).' }),
  }, { default: {} }),
  store: Type.Object({
    backend: Type.String({ default: 'embedded', description: '"embedded" (SQLite in <dataDir>/store) or postgres://user[:password]@host:5432/db for PostgreSQL.', env: 'FLUXGATE_STORE', flag: 'store' }),
    schema: Type.String({ default: 'fluxgate', minLength: 1, pattern: '^[a-z_][a-z0-9_]*$', description: 'PostgreSQL schema for the store tables (store.backend postgres://…); created if missing.' }),
    retentionIntervalMs: Type.Integer({ minimum: 1000, default: HOUR, description: 'How often retention runs, ms (1 hour).' }),
    cacheBytes: Type.Integer({ minimum: 1048576, default: 67108864, description: 'Embedded store: SQLite page cache of each of its two connections (writer and reader), bytes (64 MiB). It fills up to this as the database grows and stays full; the node\'s memory includes twice this. Larger speeds up compaction and reads of a large fleet.' }),
    workerHeapBytes: Type.Integer({ minimum: 0, default: 0, description: 'Embedded store: V8 heap limit (old generation) of each of its two worker threads, bytes (0 = V8\'s default, a share of the machine\'s memory, which lets garbage pile up to several GiB under load). The writer\'s live data stays under ~600 MB with the built-in bounds; 1073741824 (1 GiB) keeps its heap near that. A worker that needs more stops and the store fails (/readyz says so).' }),
  }, { default: {} }),
  tenants: Type.Object({
    defaultMaxDevices: Type.Integer({ minimum: 0, default: 0, description: 'Devices a tenant may have, unless its own setting maxDevices says otherwise (0 = unlimited). More are refused with QUOTA_DEVICES.' }),
    defaultMessagesPerSecond: Type.Number({ minimum: 0, default: 0, description: 'Messages per second a tenant may send over all its devices (token bucket), unless its setting messagesPerSecond says otherwise (0 = unlimited). More get HTTP 429 / MQTT 5 0x97.' }),
    defaultBurstMessages: Type.Integer({ minimum: 0, default: 0, description: 'Messages a tenant may send at once above its rate (token bucket size), unless its setting burstMessages says otherwise (0 = one second of messagesPerSecond).' }),
    defaultMaxPayloadBytes: Type.Integer({ minimum: 0, default: 0, description: 'Largest message payload a tenant may send, bytes, unless its setting maxPayloadBytes says otherwise (0 = only the protocol limits http.bodyLimitBytes and mqtt.maxPacketBytes).' }),
    defaultRawRetentionDays: Type.Number({ minimum: 0, default: 3, description: 'Raw history and archived messages older than this are deleted, days (3; 0 keeps them forever), unless the tenant\'s setting rawRetentionDays says otherwise.' }),
    defaultRollup1mRetentionDays: Type.Number({ minimum: 0, default: 30, description: '1-minute roll-ups older than this are deleted, days (30; 0 keeps them forever), unless the tenant\'s setting rollup1mRetentionDays says otherwise.' }),
    defaultRollup1hRetentionDays: Type.Number({ minimum: 0, default: 365, description: '1-hour roll-ups older than this are deleted, days (365; 0 keeps them forever), unless the tenant\'s setting rollup1hRetentionDays says otherwise.' }),
    refusalDelayMs: Type.Integer({ minimum: 0, maximum: 10000, default: 500, description: 'An HTTP request over its tenant\'s messagesPerSecond is answered (429) after this many ms, ms (0.5 s; 0 = at once): a client that floods waits instead of spending the node\'s CPU on refusals that other tenants need. Requests of other tenants are never delayed.' }),
    settingsCacheMs: Type.Integer({ minimum: 100, default: 5000, description: 'How long a node trusts its copy of tenant settings (quotas) before reading them again, ms (5 s). A change through this node applies at once; through another node, within this time.' }),
  }, { default: {} }),
  retention: Type.Object({
    exportDir: Type.Optional(Type.String({ minLength: 1, description: 'Directory for the Parquet cold tier: before raw data expires, each tenant\'s raw messages are written to <exportDir>/<tenant>/<YYYY-MM-DD>.parquet (one file per tenant and UTC day). Unset: no export. Retention runs every store.retentionIntervalMs; windows are tenants.default*RetentionDays or the tenant\'s settings.' })),
  }, { default: {} }),
  process: Type.Object({
    enabled: Type.Boolean({ default: true, description: 'Run processing (log → store) on this node. Off: the node only ingests and serves; messages wait in the log.' }),
    dedupWindowMs: Type.Integer({ minimum: 0, default: 600000, description: 'A message whose id was already stored within this many ms (by receive time) is dropped as a duplicate and counted (10 min; 0 = off). Covers retries without `ts`.' }),
    dedupMaxIds: Type.Integer({ minimum: 1, default: 1000000, description: 'Most message ids the de-duplication window holds in memory (~30 bytes each, whatever the length of the id: a 64-bit keyed hash and its receive time); past it the oldest are forgotten before process.dedupWindowMs ends (a retry without `ts` after that is stored again). Gauge fluxgate_dedup_window_ids.' }),
    suppressMaxKeys: Type.Integer({ minimum: 1, default: 1000000, description: 'Most keys (tenant, device, key) whose last stored value same-value suppression remembers; past it the least recently stored are forgotten (their next point is stored as history). Gauge fluxgate_suppress_keys.' }),
    batchSize: Type.Integer({ minimum: 1, default: 5000, description: 'Records processing takes from the log per batch.' }),
    retryMaxAttempts: Type.Integer({ minimum: 0, default: 10, description: 'Attempts at a store write that fails transiently (store unreachable, timeout, busy) before its messages go to the dead-letter queue with reason "store write failed after N attempts" (replay them over REST). The log holds the batch meanwhile. 0: retry for ever.' }),
    retryBaseMs: Type.Integer({ minimum: 1, default: 200, description: 'First back-off between store write attempts, ms; it doubles each attempt up to process.retryMaxMs, with jitter (half fixed, half random).' }),
    retryMaxMs: Type.Integer({ minimum: 1, default: 30000, description: 'Longest back-off between store write attempts, ms.' }),
  }, { default: {} }),
  templates: Type.Array(TopicTemplateSchema, { default: [], description: 'Platform topic templates (JSON array of {id, pattern, tenant?, project?, kind?, kinds?, autoProvision?}): other topic layouts mapped to tenant, project, device and kind; only these may capture {tenant}. Tenants add their own over REST (/api/v1/templates). README "Topic templates and gateways".' }),
  bridges: Type.Array(BridgeSchema, { default: [], description: 'Bridges from external MQTT brokers (JSON array; README "Bridges" lists the fields: name, url, username, password, clientId, topics, qos, template, tls, reconnect…). Bridges created over REST are kept in the store.' }),
  cluster: Type.Object({
    nodeId: Type.Optional(Type.String({ minLength: 1, description: 'Name of this node in a cluster (log.backend nats://…), shown in other nodes\' /readyz as the processing leader. Unset: the host name and the process id.', env: 'FLUXGATE_NODE_ID', flag: 'node-id' })),
    leaseTtlMs: Type.Integer({ minimum: 500, default: 4000, description: 'Processing lease time-to-live, ms (4 s): with a nats:// log one node at a time processes; when it dies another takes over after about this long. The first node creates the lease bucket with its value; the others use the bucket\'s.' }),
  }, { default: {} }),
});

export type Config = Static<typeof ConfigSchema>;

/** One leaf setting, as the loader and the docs generator see it. */
export interface Setting {
  path: string[];
  schema: TSchema;
  env: string;
  flag: string;
}

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
const kebab = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** Every leaf setting with its env and flag names. */
export function settings(schema: TSchema = ConfigSchema, path: string[] = []): Setting[] {
  if (schema.type === 'object' && schema.properties) {
    return Object.entries(schema.properties as Record<string, TSchema>).flatMap(([k, s]) => settings(s, [...path, k]));
  }
  return [{
    path,
    schema,
    env: (schema as Meta).env ?? `FLUXGATE_${path.map(snake).join('_')}`,
    flag: (schema as Meta).flag ?? path.map(kebab).join('-'),
  }];
}
