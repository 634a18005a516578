/**
 * @module The embedded store as the main thread sees it: a `Store` whose every call is a
 * message to a worker thread that owns a SQLite connection, so the event loop never waits on
 * the disk. Two workers: the writer (writes, compaction, retention, registry changes) and a
 * reader (latest state, history, archive, dead letters, registry lookups) whose own
 * connection reads the last commit without waiting behind writes or compaction. Each worker answers in the order
 * it received; errors keep their FluxgateError code across the boundary. `close()` waits for
 * calls in flight, closes both connections and lets the workers exit; calls after it (or
 * before `open()`) reject with STORE_UNAVAILABLE.
 *
 * Memory: at most `maxQueuedRequests` calls per worker are sent and unanswered; later callers
 * wait their turn in order (backpressure, nothing is dropped). Each worker reports its heap
 * and what its SQLite connection and in-memory maps hold every few seconds; both are gauges
 * (`fluxgate_store_queue_requests{role,state}`, `fluxgate_store_worker_*`).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { FluxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type {
  AggregateQuery, ApiKeyInfo, DeadLetterFilter, DeviceSeen, SeenMessageId, ApiKeyRecord, Bucket, DevicePatch, DeviceRecord, LatestValue, MessageQuery, Page, ProjectRecord,
  RangeQuery, RawMessage, Resolution, Rollup, RollupQuery, Store, StoredDeadLetter, StoredObject, TelemetryPoint, NewTenant, TenantPatch, TenantRecord, WriteBatch,
} from '../store.js';
import { fromWireError, type Op, type Response, type WorkerEvent } from './protocol.js';
import { encodeBatch } from './wire.js';

export interface EmbeddedStoreOptions {
  /** Directory of the store; created if missing. The database is `store.db` inside it. */
  dir: string;
  metrics?: Metrics;
  logger?: Logger;
  /** SQLite page cache per connection (two connections: writer and reader), bytes; default ./schema.ts DEFAULT_CACHE_BYTES. */
  cacheBytes?: number;
  /**
   * V8 old-generation limit of each worker thread, bytes (store.workerHeapBytes; 0 or absent:
   * V8's default, a share of the machine's memory). The collector then keeps the heap under
   * it; a worker whose live data passes it stops, and the store fails (/readyz says why).
   */
  workerHeapBytes?: number;
  /** Calls sent to one worker and not yet answered before further callers wait (default 1,024). */
  maxQueuedRequests?: number;
}

interface Pending { resolve: (v: unknown) => void; reject: (e: unknown) => void; role: Role; op: Op }

/** A call accepted but not yet sent: its worker had `maxQueuedRequests` unanswered. */
interface Waiting { send: () => void; reject: (e: unknown) => void }

type MemoryReport = Extract<WorkerEvent, { event: 'memory' }>;

/** How the worker is started: from sources through tsx, or compiled JavaScript directly. */
function workerEntry(): { url: URL; entry?: string } {
  const fromSources = import.meta.url.endsWith('.ts');
  if (!fromSources) return { url: new URL('./worker.js', import.meta.url) };
  return { url: new URL('./worker-bootstrap.mjs', import.meta.url), entry: new URL('./worker.ts', import.meta.url).href };
}

/** Calls a read connection can answer: they never wait behind writes or compaction. */
const READS: ReadonlySet<Op> = new Set<Op>(['latest', 'range', 'aggregate', 'messages', 'deadLetters', 'getDevice', 'listDevices', 'findDeviceByTokenHash',
  'getTenant', 'listTenants', 'getProject', 'listProjects', 'listApiKeys', 'findApiKeyByHash', 'getObject', 'listObjects',
  'rollups', 'deviceSeen', 'recentMessageIds']);

type Role = 'writer' | 'reader';

export class EmbeddedStore implements Store {
  private readonly workers = new Map<Role, Worker>();
  /** Workers told to close: their exit is expected. */
  private readonly released = new Set<Worker>();
  private closing: Promise<void> | undefined;
  private state: 'new' | 'open' | 'closing' | 'closed' | 'failed' = 'new';
  private failure = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly compaction: Histogram | undefined;
  private readonly maxQueued: number;
  /** Per worker: calls sent and unanswered, and callers waiting to send (in call order). */
  private readonly inFlight: Record<Role, number> = { writer: 0, reader: 0 };
  private readonly waiting: Record<Role, Waiting[]> = { writer: [], reader: [] };
  private readonly memory = new Map<Role, MemoryReport>();

  constructor(private readonly opts: EmbeddedStoreOptions) {
    this.maxQueued = Math.max(1, opts.maxQueuedRequests ?? 1024);
    const registry = opts.metrics?.registry;
    if (registry) this.registerGauges(registry);
    const name = 'fluxgate_store_compaction_seconds';
    this.compaction = registry && ((registry.getSingleMetric(name) as Histogram | undefined) ?? new Histogram({
      name, help: 'Time to move staged points into the series-ordered table of the embedded store.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers: [registry],
    }));
  }

  /** Starts the writer (which creates and migrates the file), then the read connection's worker. */
  async open(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state !== 'new') throw new FluxgateError('STORE_UNAVAILABLE', `embedded store cannot reopen once ${this.state}; create a new one`);
    try {
      mkdirSync(this.opts.dir, { recursive: true });
    } catch (err) {
      throw new FluxgateError('DATA_DIR_UNUSABLE', `cannot create store directory ${this.opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      for (const role of ['writer', 'reader'] as const) this.workers.set(role, await this.start(role));
    } catch (err) {
      this.state = 'failed';
      this.failure = (err as Error).message;
      await Promise.all([...this.workers.values()].map((w) => w.terminate()));
      throw err;
    }
    for (const w of this.workers.values()) this.watch(w);
    this.state = 'open';
  }

  close(): Promise<void> {
    if (this.state === 'open') this.closing = this.shutDown();
    else if (this.state === 'new') this.state = 'closed';
    // A second close() waits for the first.
    return this.closing ?? Promise.resolve();
  }

  private async shutDown(): Promise<void> {
    this.state = 'closing';
    // Each worker answers in order, so 'close' is handled after every call already sent to it.
    await Promise.all([...this.workers].map(async ([role, worker]) => {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      this.released.add(worker);
      await this.send('close', [], true, undefined, role);
      await exited;
    }));
    this.state = 'closed';
  }

  status(): { ok: boolean; detail?: string } {
    if (this.state === 'open') return { ok: true };
    return { ok: false, detail: this.state === 'failed' ? `embedded store failed: ${this.failure}` : `embedded store is ${this.state}` };
  }

  /** Write latency and stored points are measured by processing (src/process/pipeline.ts), for every backend alike. */
  async writeBatch(batch: WriteBatch): Promise<void> {
    const { wire, transfer } = encodeBatch(batch);
    await this.send('writeBatch', [wire], false, transfer, 'writer');
  }

  latest(tenant: string, device: string): Promise<LatestValue[]> { return this.call('latest', [tenant, device]); }
  range(q: RangeQuery): Promise<Page<TelemetryPoint>> { return this.call('range', [q]); }
  aggregate(q: AggregateQuery): Promise<Bucket[]> { return this.call('aggregate', [q]); }
  messages(q: MessageQuery): Promise<Page<RawMessage>> { return this.call('messages', [q]); }
  deadLetters(tenant: string, limit: number, after?: string, filter?: DeadLetterFilter): Promise<Page<StoredDeadLetter>> { return this.call('deadLetters', [tenant, limit, after, filter]); }
  deleteDeadLetters(tenant: string, ids: string[], failedBefore?: number): Promise<number> { return this.call('deleteDeadLetters', [tenant, ids, failedBefore]); }
  deviceSeen(tenant: string, device: string): Promise<DeviceSeen | undefined> { return this.call('deviceSeen', [tenant, device]); }
  recentMessageIds(since: number, limit: number): Promise<SeenMessageId[]> { return this.call('recentMessageIds', [since, limit]); }
  forgetMessageIds(before: number): Promise<number> { return this.call('forgetMessageIds', [before]); }
  deleteBefore(cutoff: number, tenant?: string): Promise<number> { return this.call('deleteBefore', [cutoff, tenant]); }
  rollups(q: RollupQuery): Promise<Rollup[]> { return this.call('rollups', [q]); }
  deleteRollupsBefore(resolution: Resolution, cutoff: number, tenant?: string): Promise<number> { return this.call('deleteRollupsBefore', [resolution, cutoff, tenant]); }
  createDevice(device: DeviceRecord): Promise<void> { return this.call('createDevice', [device]); }
  createDevices(devices: DeviceRecord[], opts?: { maxDevices?: number }): Promise<void> { return this.call('createDevices', [devices, opts]); }
  getDevice(tenant: string, id: string): Promise<DeviceRecord | undefined> { return this.call('getDevice', [tenant, id]); }
  listDevices(tenant: string, limit: number, after?: string): Promise<Page<DeviceRecord>> { return this.call('listDevices', [tenant, limit, after]); }
  updateDevice(tenant: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined> { return this.call('updateDevice', [tenant, id, patch]); }
  deleteDevice(tenant: string, id: string): Promise<boolean> { return this.call('deleteDevice', [tenant, id]); }
  findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | undefined> { return this.call('findDeviceByTokenHash', [tokenHash]); }
  createTenant(tenant: NewTenant): Promise<void> { return this.call('createTenant', [tenant]); }
  getTenant(id: string): Promise<TenantRecord | undefined> { return this.call('getTenant', [id]); }
  listTenants(): Promise<TenantRecord[]> { return this.call('listTenants', []); }
  updateTenant(id: string, patch: TenantPatch): Promise<TenantRecord | undefined> { return this.call('updateTenant', [id, patch]); }
  createProject(project: ProjectRecord): Promise<void> { return this.call('createProject', [project]); }
  getProject(tenant: string, name: string): Promise<ProjectRecord | undefined> { return this.call('getProject', [tenant, name]); }
  listProjects(tenant: string): Promise<ProjectRecord[]> { return this.call('listProjects', [tenant]); }
  createApiKey(key: ApiKeyRecord): Promise<void> { return this.call('createApiKey', [key]); }
  listApiKeys(tenant: string): Promise<ApiKeyInfo[]> { return this.call('listApiKeys', [tenant]); }
  revokeApiKey(tenant: string, id: string): Promise<boolean> { return this.call('revokeApiKey', [tenant, id]); }
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> { return this.call('findApiKeyByHash', [keyHash]); }
  putObject(o: StoredObject): Promise<void> { return this.call('putObject', [o]); }
  getObject(kind: string, tenant: string, id: string): Promise<StoredObject | undefined> { return this.call('getObject', [kind, tenant, id]); }
  listObjects(kind: string, tenant?: string): Promise<StoredObject[]> { return this.call('listObjects', [kind, tenant]); }
  deleteObject(kind: string, tenant: string, id: string): Promise<boolean> { return this.call('deleteObject', [kind, tenant, id]); }

  /** Moves staged points into the series-ordered table now (tests and benchmarks). */
  compact(): Promise<number> { return this.call('compact', []); }

  private call<T>(op: Op, args: unknown[]): Promise<T> {
    return this.send(op, args, false) as Promise<T>;
  }

  private send(op: Op, args: unknown[], closing: boolean, transfer?: ArrayBuffer[], role: Role = READS.has(op) ? 'reader' : 'writer'): Promise<unknown> {
    if (this.state !== 'open' && !(closing && this.state === 'closing')) {
      return Promise.reject(new FluxgateError('STORE_UNAVAILABLE', this.state === 'failed' ? `embedded store failed: ${this.failure}` : `embedded store is ${this.state === 'new' ? 'not open' : this.state}`));
    }
    return new Promise((resolve, reject) => {
      const send = () => {
        const id = this.nextId++;
        this.inFlight[role]++;
        this.pending.set(id, { resolve, reject, role, op });
        this.workers.get(role)!.postMessage({ id, op, args }, transfer);
      };
      // Behind callers already waiting too, so calls reach the worker in call order.
      if (this.inFlight[role] < this.maxQueued && this.waiting[role].length === 0) send();
      else this.waiting[role].push({ send, reject });
    });
  }

  /** A worker answered one call: the next waiting caller may send. */
  private answered(role: Role): void {
    this.inFlight[role]--;
    const next = this.waiting[role].shift();
    next?.send();
  }

  /** Calls sent to a worker and unanswered, and callers waiting to send (tests and metrics). */
  queued(role: Role): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight[role], waiting: this.waiting[role].length };
  }

  /** The last memory report of each worker (bench/memory-overload.ts, metrics). */
  memoryReports(): Partial<Record<Role, MemoryReport>> {
    return Object.fromEntries(this.memory);
  }

  private registerGauges(registry: Registry): void {
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge<string>) => void) => {
      // One node per registry; a store reopened on the same registry (tests) takes the series over.
      if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
      new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); collect(this); } });
    };
    const roles: Role[] = ['writer', 'reader'];
    gauge('fluxgate_store_queue_requests', 'Embedded store calls per worker: sent and unanswered (state="in_flight", at most 1,024), or waiting for their turn to be sent (state="waiting").', ['role', 'state'], (g) => {
      for (const r of roles) { g.set({ role: r, state: 'in_flight' }, this.inFlight[r]); g.set({ role: r, state: 'waiting' }, this.waiting[r].length); }
    });
    const report = (g: Gauge<string>, pick: (m: MemoryReport) => number) => { for (const [r, m] of this.memory) g.set({ role: r }, pick(m)); };
    gauge('fluxgate_store_worker_heap_used_bytes', 'V8 heap in use of each embedded store worker thread (last report, every 5 s).', ['role'], (g) => report(g, (m) => m.heapUsedBytes));
    gauge('fluxgate_store_worker_heap_total_bytes', 'V8 heap reserved by each embedded store worker thread.', ['role'], (g) => report(g, (m) => m.heapTotalBytes));
    gauge('fluxgate_store_worker_heap_limit_bytes', 'V8 heap limit of each embedded store worker thread (store.workerHeapBytes, or V8\'s default).', ['role'], (g) => report(g, (m) => m.heapLimitBytes));
    gauge('fluxgate_store_worker_external_bytes', 'Memory outside the V8 heap held by JS objects of each embedded store worker thread (buffers).', ['role'], (g) => report(g, (m) => m.externalBytes));
    gauge('fluxgate_store_sqlite_cache_limit_bytes', 'SQLite page cache ceiling of each embedded store connection (store.cacheBytes); it fills up to the smaller of this and the database size.', ['role'], (g) => report(g, (m) => m.store.cacheLimitBytes));
    gauge('fluxgate_store_file_bytes', 'Size of the embedded store database file (page_count × page_size), as each connection sees it.', ['role'], (g) => report(g, (m) => m.store.fileBytes));
    gauge('fluxgate_store_cached_entries', 'Entries of the embedded store workers\' in-memory maps: names (interned tenants, projects, devices, keys), series (known to have latest state), pending_latest and pending_rollups (since the last compaction), rollup_series, staged_rows (rows awaiting compaction, on disk).', ['role', 'map'], (g) => {
      for (const [r, m] of this.memory) for (const [k, v] of Object.entries(m.store.entries)) g.set({ role: r, map: k }, v);
    });
  }

  private start(role: Role): Promise<Worker> {
    const { url, entry } = workerEntry();
    const heap = this.opts.workerHeapBytes ? { resourceLimits: { maxOldGenerationSizeMb: Math.max(64, Math.round(this.opts.workerHeapBytes / 2 ** 20)) } } : {};
    const worker = new Worker(url, { workerData: { file: join(this.opts.dir, 'store.db'), entry, role, cacheBytes: this.opts.cacheBytes }, ...heap });
    return new Promise<Worker>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new FluxgateError('STORE_UNAVAILABLE', `embedded store ${role} exited during open (code ${code})`)));
      worker.on('message', (m: Response | WorkerEvent) => {
        if ('event' in m) {
          if (m.event === 'ready') {
            worker.removeAllListeners('error').removeAllListeners('exit');
            resolve(worker);
          } else if (m.event === 'open-failed') {
            // A file SQLite may not create or write is the operator's to fix: name the directory.
            const dirProblem = /^SQLITE_(CANTOPEN|READONLY|PERM|FULL)/.test(m.error.sqlite ?? '');
            reject(new FluxgateError(dirProblem ? 'DATA_DIR_UNUSABLE' : 'STORE_UNAVAILABLE', `embedded store cannot open ${join(this.opts.dir, 'store.db')}: ${m.error.message}`, { cause: fromWireError(m.error) }));
          } else if (m.event === 'memory') {
            this.memory.set(role, m);
          } else if (m.event === 'compacted') {
            this.compaction?.observe(m.seconds);
            this.opts.logger?.debug({ rows: m.rows, seconds: m.seconds }, 'embedded store compacted staged rows');
          } else {
            this.opts.logger?.warn({ err: m.error }, 'embedded store compaction failed; rows stay staged and it retries');
          }
          return;
        }
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.answered(p.role);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromWireError(m.error, `${p.op} on the ${p.role}`));
      });
    });
  }

  /** A worker that dies fails every call in flight and every later one; /readyz shows why. */
  private watch(worker: Worker): void {
    const fail = (reason: string) => {
      if (this.released.has(worker) || this.state === 'failed') return;
      this.state = 'failed';
      this.failure = reason;
      this.opts.logger?.error({ reason }, 'embedded store worker stopped');
      const failed = new FluxgateError('STORE_UNAVAILABLE', `embedded store failed: ${reason}`);
      for (const p of this.pending.values()) p.reject(failed);
      this.pending.clear();
      for (const r of ['writer', 'reader'] as const) {
        for (const w of this.waiting[r].splice(0)) w.reject(failed);
        this.inFlight[r] = 0;
      }
      // The other worker would hold the file open for nothing.
      for (const w of this.workers.values()) if (w !== worker) void w.terminate();
    };
    worker.on('error', (err) => fail(err.message));
    worker.on('exit', (code) => fail(`worker exited with code ${code}`));
  }
}
