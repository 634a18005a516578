/**
 * @module The server store: PostgreSQL through `pg`, for a cluster of nodes sharing one
 * database. The only public surface of this folder. open() migrates the schema (safe when
 * several nodes start at once, ./migrations.ts) and creates the time partitions ahead
 * (./partitions.ts); a timer keeps them ahead while the store is open. Every call is scoped by
 * tenant; any failure to reach the server is STORE_UNAVAILABLE (retryable) with the driver's
 * error as `cause`, and status() reports the pool's health for /readyz.
 */
import pg from 'pg';
import { Gauge } from 'prom-client';
import { FluxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type {
  AggregateQuery, ApiKeyInfo, DeadLetterFilter, DeviceSeen, SeenMessageId, ApiKeyRecord, Bucket, DevicePatch, DeviceRecord, LatestValue, MessageQuery, Page, ProjectRecord,
  RangeQuery, RawMessage, Resolution, Rollup, RollupQuery, Store, StoredDeadLetter, StoredObject, TelemetryPoint, NewTenant, TenantPatch, TenantRecord, WriteBatch,
} from '../store.js';
import { Archive } from './archive.js';
import { CHECKOUT_TIMEOUT_MS, CONNECT_TIMEOUT_MS, isUnavailable, SCHEMA_NAME, storeError } from './codec.js';

export { CONNECT_TIMEOUT_MS } from './codec.js';
import { migrate } from './migrations.js';
import { Objects } from './objects.js';
import { Partitions } from './partitions.js';
import { Reader } from './read.js';
import { Registry } from './registry.js';
import { Retention } from './retention.js';
import { Rollups } from './rollups.js';
import { Tenancy } from './tenants.js';
import { Writer, type IngestMode } from './write.js';

export interface PostgresStoreOptions {
  /** postgres://user[:password]@host:port/db (libpq-style parameters such as sslmode work too). */
  url: string;
  /** Schema holding the store's tables; created if missing. Default `fluxgate`. */
  schema?: string;
  /** Length of one time partition of points and raw messages, in days. Default 1. */
  partitionDays?: number;
  metrics?: Metrics;
  logger?: Logger;
  /** Connections in the pool. Default 10. */
  poolSize?: number;
  /** How points are inserted (bench/postgres-ingest.ts compares them). Default 'insert'. */
  ingest?: IngestMode;
}

/** How often the window of partitions ahead of now is extended: hourly, well inside a day. */
const MAINTAIN_MS = 60 * 60_000;

/** bigint (int8) columns hold ms timestamps, counts and ids, all inside 2^53: read them as numbers. */
/** pg's client with its own connect timeout, whatever the pool's checkout timeout is. */
class ConnectBoundedClient extends pg.Client {
  constructor(config?: pg.ClientConfig) {
    super({ ...config, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  }
}

const types = new pg.TypeOverrides();
types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));

export class PostgresStore implements Store {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly partitions: Partitions;
  private readonly writer: Writer;
  private readonly rollupStore: Rollups;
  private readonly reader: Reader;
  private readonly archive: Archive;
  private readonly registry: Registry;
  private readonly retention: Retention;
  private readonly tenancy: Tenancy;
  private readonly objects: Objects;
  private state: 'new' | 'open' | 'closed' = 'new';
  private lastFailure: string | undefined;
  private probing = false;
  private opening: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PostgresStoreOptions) {
    this.schema = opts.schema ?? 'fluxgate';
    if (!SCHEMA_NAME.test(this.schema)) throw new FluxgateError('CONFIG_INVALID', `store schema "${this.schema}" must be lower-case letters, digits and _ (at most 63)`);
    const days = opts.partitionDays ?? 1;
    if (!Number.isInteger(days) || days < 1) throw new FluxgateError('CONFIG_INVALID', `store partitionDays must be a whole number of days ≥ 1, not ${days}`);
    this.pool = new pg.Pool({
      connectionString: opts.url, max: opts.poolSize ?? 10, types,
      // Two timeouts, which pg.Pool would otherwise share: connecting to the server gives up after
      // CONNECT_TIMEOUT_MS (the client's own), while a call waiting for a connection the pool's
      // other calls hold waits up to CHECKOUT_TIMEOUT_MS — a burst (100,000 devices
      // auto-registering at once) queues here, and with one 5 s bound for both it failed calls
      // of a healthy server with "timeout exceeded when trying to connect".
      Client: ConnectBoundedClient, connectionTimeoutMillis: CHECKOUT_TIMEOUT_MS,
      // The schema in the application name tells an operator's pg_stat_activity which store a session serves.
      idleTimeoutMillis: 30_000, application_name: `fluxgate ${this.schema}`,
    });
    // An idle connection the server closes must not crash the process; the next query reconnects.
    this.pool.on('error', (err) => {
      opts.logger?.warn({ err }, 'postgres store: idle connection failed');
    });
    this.partitions = new Partitions(this.pool, this.schema, days);
    this.rollupStore = new Rollups(this.pool, this.schema);
    this.writer = new Writer(this.pool, this.schema, this.partitions, opts.ingest ?? 'insert');
    this.reader = new Reader(this.pool, this.schema);
    this.archive = new Archive(this.pool, this.schema);
    this.registry = new Registry(this.pool, this.schema);
    this.retention = new Retention(this.pool, this.schema, this.partitions, opts.logger);
    this.tenancy = new Tenancy(this.pool, this.schema);
    this.objects = new Objects(this.pool, this.schema);
    this.registerMetrics();
  }

  open(): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new FluxgateError('STORE_UNAVAILABLE', 'postgres store cannot reopen once closed; create a new one'));
    // Two open() calls at once share one migration and one maintenance timer.
    this.opening ??= this.openOnce().finally(() => { this.opening = undefined; });
    return this.opening;
  }

  private async openOnce(): Promise<void> {
    try {
      const client = await this.pool.connect();
      try {
        const applied = await migrate(client, this.schema);
        if (applied.length > 0) this.opts.logger?.info({ schema: this.schema, applied }, 'postgres store: schema migrated');
      } finally {
        client.release();
      }
      await this.partitions.reload();
      await this.partitions.ensureAhead();
    } catch (err) {
      const e = storeError(err, `open (schema ${this.schema})`);
      this.lastFailure = e.message;
      throw e;
    }
    this.state = 'open';
    this.lastFailure = undefined;
    this.timer = setInterval(() => {
      this.partitions.ensureAhead().catch((err: unknown) => this.opts.logger?.warn({ err }, 'postgres store: creating partitions ahead failed; writes create them on demand'));
    }, MAINTAIN_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer) clearInterval(this.timer);
    // end() waits for checked-out clients to be released: calls in flight finish first.
    await this.pool.end();
  }

  status(): { ok: boolean; detail?: string } {
    if (this.state !== 'open') return { ok: false, detail: `postgres store is ${this.state === 'new' ? 'not open' : 'closed'}` };
    const p = this.pool;
    const pool = `${p.totalCount} connections, ${p.idleCount} idle, ${p.waitingCount} waiting`;
    if (this.lastFailure !== undefined) {
      // Readiness must come back without traffic: a failed store probes the server once per status() call at most.
      if (!this.probing) {
        this.probing = true;
        this.pool.query('SELECT 1').then(() => { this.lastFailure = undefined; }, () => undefined).finally(() => { this.probing = false; });
      }
      return { ok: false, detail: `postgres store: ${this.lastFailure} (${pool})` };
    }
    return { ok: true, detail: `postgres schema ${this.schema}: ${pool}` };
  }

  writeBatch(batch: WriteBatch): Promise<void> { return this.run('writeBatch', () => this.writer.write(batch)); }
  latest(tenant: string, device: string): Promise<LatestValue[]> { return this.run('latest', () => this.reader.latest(tenant, device)); }
  range(q: RangeQuery): Promise<Page<TelemetryPoint>> { return this.run('range', () => this.reader.range(q)); }
  aggregate(q: AggregateQuery): Promise<Bucket[]> { return this.run('aggregate', () => this.reader.aggregate(q)); }
  messages(q: MessageQuery): Promise<Page<RawMessage>> { return this.run('messages', () => this.archive.messages(q)); }
  deadLetters(tenant: string, limit: number, after?: string, filter?: DeadLetterFilter): Promise<Page<StoredDeadLetter>> { return this.run('deadLetters', () => this.archive.deadLetters(tenant, limit, after, filter)); }
  deleteDeadLetters(tenant: string, ids: string[], failedBefore?: number): Promise<number> { return this.run('deleteDeadLetters', () => this.archive.deleteDeadLetters(tenant, ids, failedBefore)); }
  deviceSeen(tenant: string, device: string): Promise<DeviceSeen | undefined> { return this.run('deviceSeen', () => this.writer.seen.deviceSeen(tenant, device)); }
  recentMessageIds(since: number, limit: number): Promise<SeenMessageId[]> { return this.run('recentMessageIds', () => this.writer.seen.recentMessageIds(since, limit)); }
  forgetMessageIds(before: number): Promise<number> { return this.run('forgetMessageIds', () => this.writer.seen.forgetMessageIds(before)); }
  deleteBefore(cutoff: number, tenant?: string): Promise<number> { return this.run('deleteBefore', () => this.retention.deleteBefore(cutoff, tenant)); }
  rollups(q: RollupQuery): Promise<Rollup[]> { return this.run('rollups', () => this.rollupStore.rollups(q)); }
  deleteRollupsBefore(resolution: Resolution, cutoff: number, tenant?: string): Promise<number> { return this.run('deleteRollupsBefore', () => this.rollupStore.deleteBefore(resolution, cutoff, tenant)); }
  createDevice(device: DeviceRecord): Promise<void> { return this.run('createDevice', () => this.registry.createDevice(device)); }
  createDevices(devices: DeviceRecord[], opts?: { maxDevices?: number }): Promise<void> { return this.run('createDevices', () => this.registry.createDevices(devices, opts)); }
  getDevice(tenant: string, id: string): Promise<DeviceRecord | undefined> { return this.run('getDevice', () => this.registry.getDevice(tenant, id)); }
  listDevices(tenant: string, limit: number, after?: string): Promise<Page<DeviceRecord>> { return this.run('listDevices', () => this.registry.listDevices(tenant, limit, after)); }
  updateDevice(tenant: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined> { return this.run('updateDevice', () => this.registry.updateDevice(tenant, id, patch)); }
  deleteDevice(tenant: string, id: string): Promise<boolean> { return this.run('deleteDevice', () => this.registry.deleteDevice(tenant, id)); }
  findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | undefined> { return this.run('findDeviceByTokenHash', () => this.registry.findDeviceByTokenHash(tokenHash)); }
  createTenant(t: NewTenant): Promise<void> { return this.run('createTenant', () => this.tenancy.createTenant(t)); }
  getTenant(id: string): Promise<TenantRecord | undefined> { return this.run('getTenant', () => this.tenancy.getTenant(id)); }
  listTenants(): Promise<TenantRecord[]> { return this.run('listTenants', () => this.tenancy.listTenants()); }
  updateTenant(id: string, patch: TenantPatch): Promise<TenantRecord | undefined> { return this.run('updateTenant', () => this.tenancy.updateTenant(id, patch)); }
  createProject(p: ProjectRecord): Promise<void> { return this.run('createProject', () => this.tenancy.createProject(p)); }
  getProject(tenant: string, name: string): Promise<ProjectRecord | undefined> { return this.run('getProject', () => this.tenancy.getProject(tenant, name)); }
  listProjects(tenant: string): Promise<ProjectRecord[]> { return this.run('listProjects', () => this.tenancy.listProjects(tenant)); }
  createApiKey(k: ApiKeyRecord): Promise<void> { return this.run('createApiKey', () => this.tenancy.createApiKey(k)); }
  listApiKeys(tenant: string): Promise<ApiKeyInfo[]> { return this.run('listApiKeys', () => this.tenancy.listApiKeys(tenant)); }
  revokeApiKey(tenant: string, id: string): Promise<boolean> { return this.run('revokeApiKey', () => this.tenancy.revokeApiKey(tenant, id)); }
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> { return this.run('findApiKeyByHash', () => this.tenancy.findApiKeyByHash(keyHash)); }
  putObject(o: StoredObject): Promise<void> { return this.run('putObject', () => this.objects.putObject(o)); }
  getObject(kind: string, tenant: string, id: string): Promise<StoredObject | undefined> { return this.run('getObject', () => this.objects.getObject(kind, tenant, id)); }
  listObjects(kind: string, tenant?: string): Promise<StoredObject[]> { return this.run('listObjects', () => this.objects.listObjects(kind, tenant)); }
  deleteObject(kind: string, tenant: string, id: string): Promise<boolean> { return this.run('deleteObject', () => this.objects.deleteObject(kind, tenant, id)); }

  /** Runs one call: refused unless open; driver errors mapped; pool health tracked for status(). */
  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.state !== 'open') throw new FluxgateError('STORE_UNAVAILABLE', `postgres store is ${this.state === 'new' ? 'not open' : 'closed'}`);
    try {
      const v = await fn();
      this.lastFailure = undefined;
      return v;
    } catch (err) {
      if (isUnavailable(err) && !(err instanceof FluxgateError)) this.lastFailure = (err as Error).message;
      throw storeError(err, what);
    }
  }

  private registerMetrics(): void {
    const registry = this.opts.metrics?.registry;
    if (!registry) return;
    const name = 'fluxgate_store_pool_connections';
    const existing = registry.getSingleMetric(name);
    if (existing) registry.removeSingleMetric(name);
    const pool = this.pool;
    new Gauge({
      name, help: 'Connections of the PostgreSQL store pool, by state (total, idle, waiting: calls queued for a connection).',
      labelNames: ['state'] as const, registers: [registry],
      collect() {
        this.set({ state: 'total' }, pool.totalCount);
        this.set({ state: 'idle' }, pool.idleCount);
        this.set({ state: 'waiting' }, pool.waitingCount);
      },
    });
  }
}

/** Creates the store; call `open()` before use and `close()` when done. */
export function createPostgresStore(opts: { url: string; schema?: string; partitionDays?: number; metrics?: Metrics; logger?: Logger }): Store {
  return new PostgresStore(opts);
}
