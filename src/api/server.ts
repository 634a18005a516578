/**
 * @module The HTTP server of a node (Fastify): ingest, REST, OpenAPI at /docs, /metrics,
 * health. Errors become `{ code, message }` in exactly one place (./errors.ts).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger } from '../core/logger.js';
import type { Log } from '../log/log.js';
import type { Store, TenantRecord } from '../stores/store.js';
import type { Config } from '../config/schema.js';
import type { DeviceAuth } from '../registry/device-auth.js';
import type { Metrics } from '../observability/metrics.js';
import { FluxgateError } from '../core/errors.js';
import { ApiAuth } from './auth.js';
import { errorHandler } from './errors.js';
import { healthRoutes, type Components } from './health.js';
import { httpIngestRoutes } from '../sources/http/ingest.js';
import { deviceRoutes } from './rest/devices.js';
import { telemetryRoutes } from './rest/telemetry.js';
import { messageRoutes } from './rest/messages.js';
import { deadLetterRoutes } from './rest/dead-letters.js';
import { tenantRoutes } from './rest/tenants.js';
import { keyRoutes } from './rest/keys.js';
import { projectRoutes } from './rest/projects.js';
import { templateRoutes } from './rest/templates.js';
import type { TemplateRegistry } from '../templates/index.js';
import { bridgeRoutes } from './rest/bridges.js';
import type { BridgeSource } from '../sources/bridge/index.js';
import { liveRoutes } from './live/routes.js';
import { commandRoutes, type CommandChannel } from './rest/commands.js';
import type { LiveHub } from './live/hub.js';
import type { Admission } from '../sources/admission.js';
import type { Quotas } from '../sources/quota.js';
import type { Envelope } from '../core/envelope.js';
import { retentionRoutes, type RetentionScheduler } from '../retention/index.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const higher = (a: string, b: string) => (LEVELS.indexOf(a) > LEVELS.indexOf(b) ? a : b);

export interface ApiServerOptions {
  logger: Logger;
  log: Log;
  store: Store;
  deviceAuth: DeviceAuth;
  adminKey: string;
  metrics: Metrics;
  bodyLimitBytes: number;
  retryAfterSeconds: number;
  components: Components;
  accepting: () => boolean;
  version: string;
  hub: LiveHub;
  admission: Admission;
  /** Where device commands go (the MQTT source); absent when MQTT is off. */
  commands?: CommandChannel;
  /** Told what HTTP ingest made durable. */
  onIngested?: (envelopes: Envelope[]) => void;
  /** Topic templates (/api/v1/templates); absent: the routes are not served. */
  templates?: TemplateRegistry;
  /** Bridges from external MQTT brokers (/api/v1/bridges). */
  bridges?: BridgeSource;
  /** Retention passes (GET /api/v1/retention, POST /api/v1/retention/run); absent: the routes are not served. */
  retention?: RetentionScheduler;
  /** The node's tenant defaults (settings a tenant does not set). */
  tenantConfig: Pick<Config, 'tenants'>;
  /** Told of a tenant's settings change made through this node. */
  onTenantChanged?: (tenant: TenantRecord) => void;
  /** Tenant quotas: HTTP ingest (rate, payload) and device creation (devices). */
  quotas?: Quotas;
}

/** One route of the server (method and URL pattern), as Fastify's onRoute hook saw it. */
export interface RouteEntry { method: string; url: string }
const ROUTES = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route of a server made by createApiServer, so a test can walk them all (test/integration/tenant-isolation.test.ts). */
export function routeTable(app: FastifyInstance): RouteEntry[] {
  return ROUTES.get(app) ?? [];
}

export async function createApiServer(opts: ApiServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // Per-request lines are info-level in Fastify: keep them for debug/trace, drop them otherwise (hot path).
    loggerInstance: opts.logger.child({ component: 'http' }, { level: ['debug', 'trace'].includes(opts.logger.level) ? opts.logger.level : higher(opts.logger.level, 'warn') }) as unknown as FastifyBaseLogger,
    bodyLimit: opts.bodyLimitBytes,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, useDefaults: true } },
  });
  const routes: RouteEntry[] = [];
  ROUTES.set(app, routes);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url });
  });
  app.setErrorHandler(errorHandler(opts.bodyLimitBytes));
  app.setNotFoundHandler((req, reply) => {
    const err = new FluxgateError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}: /docs lists the API`);
    void reply.status(404).send({ code: err.code, message: err.message });
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'Fluxgate', description: 'IoT telemetry platform: ingest, latest state, history, registry.', version: opts.version },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'For REST: the platform admin key (acts on the tenant named by header X-Fluxgate-Tenant or query tenant=, else `default`) or a tenant API key (its own tenant; role read, write or admin). For ingest: the device token.' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const apiAuth = new ApiAuth(opts.adminKey, opts.store);
  await app.register(healthRoutes, { components: opts.components });
  app.get('/metrics', { schema: { tags: ['health'], summary: 'Prometheus metrics' } }, async (_req, reply) => {
    return reply.header('content-type', opts.metrics.registry.contentType).send(await opts.metrics.registry.metrics());
  });
  await app.register(httpIngestRoutes, { log: opts.log, auth: opts.deviceAuth, metrics: opts.metrics, bodyLimitBytes: opts.bodyLimitBytes, retryAfterSeconds: opts.retryAfterSeconds, admission: opts.admission, quotas: opts.quotas, onDurable: opts.onIngested, accepting: opts.accepting });
  await app.register(deviceRoutes, { store: opts.store, deviceAuth: opts.deviceAuth, apiAuth, tenantConfig: opts.tenantConfig, quotas: opts.quotas });
  await app.register(telemetryRoutes, { store: opts.store, apiAuth });
  await app.register(messageRoutes, { store: opts.store, apiAuth });
  await app.register(deadLetterRoutes, { store: opts.store, log: opts.log, apiAuth, metrics: opts.metrics });
  await app.register(liveRoutes, { hub: opts.hub, store: opts.store, apiAuth });
  await app.register(commandRoutes, { store: opts.store, apiAuth, channel: opts.commands });
  await app.register(tenantRoutes, { store: opts.store, apiAuth, config: opts.tenantConfig, onTenantChanged: opts.onTenantChanged });
  await app.register(keyRoutes, { store: opts.store, apiAuth });
  await app.register(projectRoutes, { store: opts.store, apiAuth });
  if (opts.templates) await app.register(templateRoutes, { templates: opts.templates, apiAuth });
  await app.register(bridgeRoutes, { bridges: opts.bridges, apiAuth });
  if (opts.retention) await app.register(retentionRoutes, { retention: opts.retention, store: opts.store, apiAuth });
  return app;
}
