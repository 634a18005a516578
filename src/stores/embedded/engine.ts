/**
 * @module The embedded store's synchronous engine: one SQLite connection and the parts that
 * use it (writes, reads, archive, registry, retention). It runs inside the store's worker
 * thread (./worker.ts); nothing on the main thread touches the database. `call` is the one
 * dispatch point, so the wire protocol and the Store contract cannot drift apart silently.
 */
import { Archive } from './archive.js';
import { Names } from './names.js';
import { Objects } from './objects.js';
import type { Op } from './protocol.js';
import { Reader } from './read.js';
import { Registry } from './registry.js';
import { Retention } from './retention.js';
import { SeenReader } from './seen.js';
import { RollupReader } from './rollups.js';
import { Tenants } from './tenants.js';
import { openDatabase, type Db } from './schema.js';
import { COMPACT_ROWS, MAX_PENDING_SERIES, Writer, type MemoryLimits } from './write.js';

export interface StoreMemory {
  /** SQLite's page cache ceiling of this connection (PRAGMA cache_size), bytes. */
  cacheLimitBytes: number;
  /** The database file's size (page_count × page_size), bytes: the cache never holds more. */
  fileBytes: number;
  /** Memory-mapped I/O limit (PRAGMA mmap_size), bytes; 0 = none. */
  mmapBytes: number;
  /** Entries of the engine's in-memory maps, by name. */
  entries: Record<string, number>;
}

export class Engine {
  readonly db: Db;
  private readonly writerPart: Writer | undefined;
  private readonly reader: Reader;
  private readonly archive: Archive;
  private readonly registry: Registry;
  private readonly tenants: Tenants;
  private readonly objects: Objects;
  private readonly names: Names;
  private readonly rollupReader: RollupReader;
  private readonly retention: Retention | undefined;
  private readonly seen: SeenReader;
  private readonly maxPendingSeries: number;

  /** A read-only engine (the store's reader worker) refuses writes. `cacheBytes`: SQLite's page cache of this connection. */
  constructor(file: string, opts: { readonly?: boolean; cacheBytes?: number; limits?: MemoryLimits } = {}) {
    this.db = openDatabase(file, opts);
    this.maxPendingSeries = opts.limits?.pendingSeries ?? MAX_PENDING_SERIES;
    const names = this.names = new Names(this.db, opts.limits?.names);
    this.rollupReader = new RollupReader(this.db, names);
    if (!opts.readonly) {
      this.writerPart = new Writer(this.db, names, opts.limits);
      this.retention = new Retention(this.db, names, this.writerPart);
    }
    this.seen = new SeenReader(this.db, names);
    this.reader = new Reader(this.db, names, this.seen);
    this.archive = new Archive(this.db, names);
    this.registry = new Registry(this.db);
    this.tenants = new Tenants(this.db);
    this.objects = new Objects(this.db);
  }

  get writer(): Writer {
    if (!this.writerPart) throw new Error('embedded store: this engine is read-only');
    return this.writerPart;
  }

  /** Runs one operation; deleteBefore and deleteRollupsBefore return a generator the caller steps chunk by chunk. */
  // The args were checked by the main-thread Store's types; the worker boundary erases them.
  /* eslint-disable @typescript-eslint/no-explicit-any */
  call(op: Op, a: any[]): unknown {
    switch (op) {
      case 'writeBatch': return this.writer.write(a[0]);
      case 'latest': return this.reader.latest(a[0], a[1]);
      case 'range': return this.reader.range(a[0]);
      case 'aggregate': return this.reader.aggregate(a[0]);
      case 'messages': return this.archive.messages(a[0]);
      case 'deadLetters': return this.archive.deadLetters(a[0], a[1], a[2], a[3]);
      case 'deleteDeadLetters': return this.archive.deleteDeadLetters(a[0], a[1], a[2]);
      case 'deviceSeen': return this.seen.deviceSeen(a[0], a[1]);
      case 'recentMessageIds': return this.seen.recentMessageIds(a[0], a[1]);
      case 'forgetMessageIds': return this.writer.seen.forgetBefore(a[0]);
      case 'deleteBefore': return this.retention!.deleteBefore(a[0], a[1]);
      case 'createDevice': return this.registry.createDevice(a[0]);
      case 'createDevices': return this.registry.createDevices(a[0], a[1]);
      case 'getDevice': return this.registry.getDevice(a[0], a[1]);
      case 'listDevices': return this.registry.listDevices(a[0], a[1], a[2]);
      case 'updateDevice': return this.registry.updateDevice(a[0], a[1], a[2]);
      case 'deleteDevice': return this.registry.deleteDevice(a[0], a[1]);
      case 'findDeviceByTokenHash': return this.registry.findDeviceByTokenHash(a[0]);
      case 'createTenant': return this.tenants.createTenant(a[0]);
      case 'updateTenant': return this.tenants.updateTenant(a[0], a[1]);
      case 'getTenant': return this.tenants.getTenant(a[0]);
      case 'listTenants': return this.tenants.listTenants();
      case 'createProject': return this.tenants.createProject(a[0]);
      case 'getProject': return this.tenants.getProject(a[0], a[1]);
      case 'listProjects': return this.tenants.listProjects(a[0]);
      case 'createApiKey': return this.tenants.createApiKey(a[0]);
      case 'listApiKeys': return this.tenants.listApiKeys(a[0]);
      case 'revokeApiKey': return this.tenants.revokeApiKey(a[0], a[1]);
      case 'findApiKeyByHash': return this.tenants.findApiKeyByHash(a[0]);
      case 'putObject': return this.objects.putObject(a[0]);
      case 'getObject': return this.objects.getObject(a[0], a[1], a[2]);
      case 'listObjects': return this.objects.listObjects(a[0], a[1]);
      case 'deleteObject': return this.objects.deleteObject(a[0], a[1], a[2]);
      case 'rollups': return this.rollupReader.rollups(a[0]);
      case 'deleteRollupsBefore': return this.writer.rollups.deleteBefore(this.writer, this.names, a[0], a[1], a[2]);
      case 'compact': return this.writer.compact();
      case 'close': return this.close();
    }
  }
  /* eslint-enable @typescript-eslint/no-explicit-any */

  /** True when enough rows are staged that a compaction pays for itself, or enough series hold pending state in memory. */
  shouldCompact(): boolean {
    return this.writer.stagedRows >= COMPACT_ROWS || this.writer.pending.size >= this.maxPendingSeries;
  }

  /**
   * What this connection holds in memory besides the thread's JS heap: SQLite's page cache
   * ceiling (better-sqlite3 does not expose what is in use; it is at most the file's size), and
   * the entries of the in-memory maps (interned names, known series, pending latest state and
   * roll-ups since the last compaction, per-series compaction bounds).
   */
  memory(): StoreMemory {
    const pragma = (name: string) => Number(this.db.pragma(name, { simple: true }));
    const pageSize = pragma('page_size');
    const cacheSize = pragma('cache_size');
    const w = this.writerPart;
    return {
      cacheLimitBytes: cacheSize < 0 ? -cacheSize * 1024 : cacheSize * pageSize,
      fileBytes: pragma('page_count') * pageSize,
      mmapBytes: pragma('mmap_size'),
      entries: {
        names: this.names.cached,
        ...(w ? { series: w.seriesKnown, pending_latest: w.pending.size, pending_rollups: w.rollups.size, rollup_series: w.rollups.seriesTracked, staged_rows: w.stagedRows } : {}),
      },
    };
  }

  close(): void {
    if (!this.db.open) return;
    // Staged rows stay staged (they are durable); the checkpoint leaves a small WAL behind.
    if (!this.db.readonly) this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}
