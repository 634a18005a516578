/**
 * @module Wires one node from configuration: log → processing → store, the sources (HTTP
 * ingest, MQTT) and the API. `startNode` returns once every listener is bound and the node
 * is ready; `stop` stops accepting, drains in-flight appends, lets processing finish its
 * batch, and closes the log and the store.
 */
import { mkdir, access, constants } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Config } from './config/schema.js';
import { FluxgateError } from './core/errors.js';
import { createLogger, type Logger } from './core/logger.js';
import { Metrics } from './observability/metrics.js';
import type { Log } from './log/log.js';
import type { Store } from './stores/store.js';
import { createFileLaneLog, createJetStreamLaneLog } from './log/lanes/index.js';
import { createEmbeddedStore } from './stores/embedded/index.js';
import { createPostgresStore } from './stores/postgres/index.js';
import { DeviceAuth } from './registry/device-auth.js';
import { ApiKeyApps } from './registry/api-key-apps.js';
import { resolveAdminKey } from './registry/admin-key.js';
import { Pipeline } from './process/pipeline.js';
import { clusterNodeId, startProcessing } from './cluster/process-lease.js';
import { createApiServer, routeTable, type RouteEntry } from './api/server.js';
import { LiveHub } from './api/live/hub.js';
import { relayLiveOverNats } from './api/live/nats-relay.js';
import { Admission } from './sources/admission.js';
import { Quotas } from './sources/quota.js';
import { relayRevocationsOverNats } from './cluster/revocations.js';
import { createMqttSource } from './sources/mqtt/index.js';
import type { Source, SourceAddress } from './sources/source.js';
import { TemplateRegistry } from './templates/index.js';
import { createBridgeSource } from './sources/bridge/index.js';
import type { Envelope } from './core/envelope.js';
import { RetentionScheduler } from './retention/index.js';

export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

export interface RunningNode {
  config: Readonly<Config>;
  dataDir: string;
  adminKey: string;
  adminKeyGenerated: boolean;
  /** http://host:port of the REST/ingest listener (port 0 resolved). */
  httpUrl: string;
  addresses: SourceAddress[];
  log: Log;
  store: Store;
  metrics: Metrics;
  logger: Logger;
  /** Every HTTP route (method, URL pattern) of the node's API server. */
  routes: RouteEntry[];
  stop(): Promise<void>;
}

function createLog(config: Config, dataDir: string, metrics: Metrics, logger: Logger): Log {
  if (config.log.backend === 'file') {
    // Two lanes (src/log/lanes/): <dataDir>/log/events and <dataDir>/log/snapshots; processing takes events first, keeping log.snapshotShare for snapshots.
    return createFileLaneLog({ dir: join(dataDir, 'log'), segmentBytes: config.log.segmentBytes, retentionHours: config.log.retentionHours, retentionBytes: config.log.retentionBytes, maxLagRecords: config.log.maxLagRecords, snapshotShare: config.log.snapshotShare, metrics, logger: logger.child({ component: 'log' }) });
  }
  if (/^nats:\/\//.test(config.log.backend)) {
    return createJetStreamLaneLog({ servers: config.log.backend.split(','), replicas: config.log.replicas, retentionHours: config.log.retentionHours, retentionBytes: config.log.retentionBytes, maxLagRecords: config.log.maxLagRecords, snapshotShare: config.log.snapshotShare, metrics, logger: logger.child({ component: 'log' }) });
  }
  throw new FluxgateError('CONFIG_INVALID', `log.backend ${JSON.stringify(config.log.backend)} (--log, FLUXGATE_LOG) is not understood: use "file" or nats://HOST:PORT`);
}

function createStore(config: Config, dataDir: string, metrics: Metrics, logger: Logger): Store {
  if (config.store.backend === 'embedded') return createEmbeddedStore({ dir: join(dataDir, 'store'), cacheBytes: config.store.cacheBytes, workerHeapBytes: config.store.workerHeapBytes || undefined, metrics, logger: logger.child({ component: 'store' }) });
  if (/^postgres(ql)?:\/\//.test(config.store.backend)) return createPostgresStore({ url: config.store.backend, schema: config.store.schema, metrics, logger: logger.child({ component: 'store' }) });
  throw new FluxgateError('CONFIG_INVALID', `store.backend ${JSON.stringify(config.store.backend)} (--store, FLUXGATE_STORE) is not understood: use "embedded" or postgres://user@host:5432/db`);
}

/** /readyz view of the log: not ready only when it cannot log at all; being behind is shown, not failed. */
function logStatus(log: Log): { ok: boolean; detail: string } {
  const p = log.pressure();
  if (p.unavailable) return { ok: false, detail: `lag ${p.lagRecords} records; the log backend is unavailable: appends are refused` };
  const lanes = p.lanes ? ` (${Object.entries(p.lanes).map(([lane, l]) => `${lane} ${l.lagRecords}`).join(', ')})` : '';
  return { ok: true, detail: `lag ${p.lagRecords} records${lanes}${p.overLimit ? ' (over log.maxLagRecords: sources are slowed)' : ''}` };
}

async function prepareDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    throw new FluxgateError('DATA_DIR_UNUSABLE', `data directory ${dir} cannot be created or written (${(err as Error).message}): set dataDir (--data-dir, FLUXGATE_DATA_DIR) to a writable directory`, { cause: err });
  }
}

/** `wrapStore` puts a layer around the store every part of the node uses (fault-injection tests). */
export async function startNode(config: Readonly<Config>, opts: { logger?: Logger; metrics?: Metrics; wrapStore?: (store: Store) => Store } = {}): Promise<RunningNode> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const metrics = opts.metrics ?? new Metrics();
  const dataDir = resolve(config.dataDir);
  await prepareDataDir(dataDir);
  const admin = await resolveAdminKey(dataDir, config.adminKey);

  const log = createLog(config, dataDir, metrics, logger);
  const created = createStore(config, dataDir, metrics, logger);
  const store = opts.wrapStore ? opts.wrapStore(created) : created;
  const cleanups: Array<() => Promise<void>> = [];
  let accepting = false;
  // A nats:// log makes this node one of a cluster: NATS relays, the processing lease, lease-bound bridges and retention.
  const clustered = /^nats:\/\//.test(config.log.backend);
  const natsServers = config.log.backend.split(',').map((u) => u.trim());
  try {
    await log.open();
    cleanups.push(() => log.close());
    await store.open();
    cleanups.push(() => store.close());

    const deviceAuth = new DeviceAuth(store);
    // Tenant quotas (rate, payload, devices) from a cache of every tenant's settings.
    const quotas = new Quotas(store, config, metrics, logger.child({ component: 'quotas' }));
    await quotas.start();
    cleanups.push(async () => quotas.stop());
    // A nats:// log: device revocations and tenant settings changes reach every node at once.
    const revocations = clustered ? await relayRevocationsOverNats({
      servers: natsServers, deviceAuth, logger: logger.child({ component: 'cluster' }),
      onTenantChanged: (id) => { store.getTenant(id).then((t) => t && quotas.update(t), (err) => logger.warn({ err, tenant: id }, 'tenant settings not re-read; the periodic refresh will')); },
    }) : undefined;
    if (revocations) cleanups.push(() => revocations.close());
    // Topic templates: configuration's and the tenants' (store); MQTT and bridges resolve topics through it.
    const templates = new TemplateRegistry({ store, config: config.templates, metrics, logger: logger.child({ component: 'templates' }), maxDevices: (t) => quotas.of(t).maxDevices, onDeviceQuota: (t) => quotas.refusedDevices(t, 1) });
    await templates.open();
    cleanups.push(async () => templates.close());
    deviceAuth.onRevoked((tenant, device) => templates.forgetDevice(tenant, device));
    const hub = new LiveHub(metrics);
    const admission = new Admission(log, config.log.shedSnapshotsAtRecords, metrics);
    if (clustered) {
      const relay = await relayLiveOverNats(hub, natsServers, logger.child({ component: 'live' }));
      cleanups.push(() => relay.close());
    }
    const pipeline = new Pipeline({ log, store, metrics, logger: logger.child({ component: 'process' }), batchSize: config.process.batchSize, dedupWindowMs: config.process.dedupWindowMs, dedupMaxIds: config.process.dedupMaxIds, suppressMaxKeys: config.process.suppressMaxKeys,
      retry: { maxAttempts: config.process.retryMaxAttempts, baseMs: config.process.retryBaseMs, maxMs: config.process.retryMaxMs }, onStored: (write) => hub.publishPoints(write.points) });
    // With a nats:// log, only the node holding the processing lease runs the pipeline (src/cluster/process-lease.ts).
    const processing = config.process.enabled ? await startProcessing(config, pipeline, logger.child({ component: 'cluster' }), log) : undefined;
    if (processing) cleanups.push(() => processing.stop());

    // With a nats:// log only the processing-lease holder runs scheduled retention passes (one exporter per tenant and day).
    const lease = processing?.lease;
    const standbyDetail = clustered ? () => (lease ? lease.describe() : 'processing is disabled on this node (process.enabled=false)') : undefined;
    const retention = new RetentionScheduler({
      store, log, metrics, logger: logger.child({ component: 'retention' }), intervalMs: config.store.retentionIntervalMs, exportDir: config.retention.exportDir,
      config, active: clustered ? () => lease?.state === 'leader' : undefined, standbyDetail,
    });
    cleanups.push(() => retention.stop());
    const sources: Source[] = [];
    const mqtt = config.mqtt.enabled ? createMqttSource({ config: config.mqtt, dataDir, log, auth: deviceAuth, admission, apps: new ApiKeyApps(store), templates, quotas, metrics, logger: logger.child({ component: 'mqtt' }),
      // A nats:// log: MQTT deliveries, shared subscriptions and sessions span the nodes (src/sources/mqtt/cluster/).
      cluster: clustered ? { servers: natsServers, nodeId: clusterNodeId(config), replicas: config.log.replicas } : undefined }) : undefined;
    const routeToSubscribers = mqtt ? (envelopes: Envelope[]) => { for (const e of envelopes) mqtt.publish(e.tenant, { topic: e.topic, payload: Buffer.from(e.payload), qos: 1 }); } : undefined;
    // Bridges from external brokers; started once the node is up, stopped first (before the log closes).
    // With a nats:// log only the processing-lease holder runs them (one session per bridge in the cluster).
    const bridges = createBridgeSource({
      configured: config.bridges, log, store, metrics, logger: logger.child({ component: 'bridge' }), dataDir, templates, onDurable: routeToSubscribers,
      active: clustered ? () => lease?.state === 'leader' : undefined,
      standbyDetail,
      // Their redelivery journals then live in JetStream, so the next lease holder has them after a crash.
      cluster: clustered ? { servers: natsServers, replicas: config.log.replicas } : undefined,
    });
    const app = await createApiServer({
      logger, log, store, deviceAuth, adminKey: admin.key, metrics, version: VERSION, hub, admission, commands: mqtt, templates,
      // Telemetry that arrived over HTTP reaches MQTT subscribers too, as a device's own publish would.
      onIngested: mqtt ? (envelopes) => { for (const e of envelopes) mqtt.publish(e.tenant, { topic: e.topic, payload: Buffer.from(e.payload), qos: 1 }, { ifSubscribed: true }); } : undefined,
      bodyLimitBytes: config.http.bodyLimitBytes, retryAfterSeconds: config.http.retryAfterSeconds,
      tenantConfig: config, quotas, onTenantChanged: (t) => { quotas.update(t); revocations?.tenantChanged(t.id); },
      accepting: () => accepting,
      bridges,
      retention,
      components: () => ({
        log: logStatus(log),
        store: store.status(),
        retention: retention.status(),
        admission: admission.status(),
        process: processing ? processing.status() : { ok: true, detail: 'disabled on this node (process.enabled=false)' },
        ...Object.fromEntries(sources.map((s) => [s.name, s.status()])),
        ...bridges.components(),
      }),
    });
    if (mqtt) mqtt.attachWebSocket(app.server, '/mqtt');
    try {
      await app.listen({ host: config.http.host, port: config.http.port });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || (err as NodeJS.ErrnoException).code === 'EACCES') {
        throw new FluxgateError('PORT_IN_USE', `HTTP port ${config.http.port} on ${config.http.host} cannot be bound (${(err as NodeJS.ErrnoException).code}): set http.port (--http-port, FLUXGATE_HTTP_PORT) to a free port, or 0 for any free port`, { cause: err });
      }
      throw err;
    }
    cleanups.push(() => app.close());
    const httpPort = (app.server.address() as AddressInfo).port;
    const httpHost = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
    const addresses: SourceAddress[] = [{ name: 'http', url: `http://${httpHost}:${httpPort}`, port: httpPort }];
    if (mqtt) {
      addresses.push(...(await mqtt.start()));
      addresses.push({ name: 'mqtt-ws', url: `ws://${httpHost}:${httpPort}/mqtt`, port: httpPort });
      sources.push(mqtt);
      cleanups.push(() => mqtt.stop());
    }
    await bridges.start();
    cleanups.push(() => bridges.stop());

    retention.start();
    await admin.persist();
    accepting = true;

    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= (async () => {
        accepting = false;
        await retention.stop();
        // Reverse order of start: sources first (nothing new arrives), then processing, then the log and the store.
        for (const cleanup of cleanups.reverse()) {
          try { await cleanup(); } catch (err) { logger.error({ err }, 'error while stopping'); }
        }
      })();
      return stopping;
    };
    return { config, dataDir, adminKey: admin.key, adminKeyGenerated: admin.generated, httpUrl: addresses[0].url, addresses, log, store, metrics, logger, routes: routeTable(app), stop };
  } catch (err) {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    throw err;
  }
}
