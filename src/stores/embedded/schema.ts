/**
 * @module Opening the embedded store's SQLite file: connection settings and the schema,
 * migrated forward by `PRAGMA user_version`. Every telemetry key starts with the tenant.
 *
 * Why these settings (figures in docs/benchmarks.md, "Embedded store"):
 * - WAL + synchronous=NORMAL: the log, not the store, is the durability point; a commit lost
 *   to a power cut is replayed from the log, and every write is idempotent.
 * - Points land first in `points_recent`, ordered by time, so a batch appends to a few pages;
 *   `compact()` later moves them, sorted by series, into `points` (tenant, device, key, ts).
 *   Raw messages likewise go through `messages_recent` into `messages`.
 *   Inserting straight into the series-ordered table dirties one page per series per commit
 *   and measured 65k rows/s against 330k rows/s staged.
 * - Names (tenants, projects, devices, keys) are interned to small integers: keys stay short
 *   and comparisons cheap; the `names` table is the only place that holds the strings.
 */
import Database from 'better-sqlite3';
import { SEEN_MIGRATION } from './seen-schema.js';

export type Db = Database.Database;

/**
 * A write transaction, begun IMMEDIATE: it takes SQLite's write lock first, waiting for it
 * (better-sqlite3's busy timeout, 5 s) when another connection holds it for an instant. Every
 * transaction that writes uses this, not `db.transaction`: a deferred one that reads before it
 * writes must upgrade its read lock, and SQLite answers a blocked upgrade with SQLITE_BUSY at
 * once, without waiting — under load the reader connection holds the write lock for an instant
 * now and then (while it rebuilds a wal-index header it read torn), and device
 * auto-provisioning failed with "database is locked" (a publish refused, its connection closed).
 */
export function writeTransaction<F extends (...args: any[]) => any>(db: Db, fn: F): F {
  return db.transaction(fn).immediate as unknown as F;
}

/** Kinds of interned names; projects, devices and keys are scoped by their tenant's id. */
export const NameKind = { tenant: 0, project: 1, device: 2, key: 3 } as const;

const MIGRATIONS: string[] = [
  `
  CREATE TABLE names (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    tenant_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, tenant_id, name)
  );
  -- v holds a number (INTEGER/REAL), a string (TEXT) or a boolean as a one-byte BLOB, so the
  -- type survives a round trip and numeric aggregates can skip non-numbers by typeof(v).
  CREATE TABLE points (
    tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    message_id TEXT NOT NULL, project_id INTEGER NOT NULL, v,
    PRIMARY KEY (tenant_id, device_id, key_id, ts, message_id)
  ) WITHOUT ROWID;
  CREATE TABLE points_recent (
    tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    message_id TEXT NOT NULL, project_id INTEGER NOT NULL, v,
    PRIMARY KEY (tenant_id, ts, device_id, key_id, message_id)
  ) WITHOUT ROWID;
  CREATE TABLE latest (
    tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    message_id TEXT NOT NULL, v,
    PRIMARY KEY (tenant_id, device_id, key_id)
  ) WITHOUT ROWID;
  -- Raw messages are kept in time order, so payloads are appended, not spread over devices;
  -- the two device-ordered indexes hold only short keys.
  CREATE TABLE messages (
    tenant_id INTEGER NOT NULL, ts INTEGER NOT NULL, device_id INTEGER NOT NULL, message_id TEXT NOT NULL,
    project_id INTEGER NOT NULL, topic TEXT NOT NULL, kind TEXT NOT NULL,
    receive_time INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (tenant_id, ts, device_id, message_id)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX messages_by_id ON messages (tenant_id, device_id, message_id);
  CREATE INDEX messages_by_device ON messages (tenant_id, device_id, ts);
  CREATE TABLE messages_recent (
    tenant_id INTEGER NOT NULL, ts INTEGER NOT NULL, device_id INTEGER NOT NULL, message_id TEXT NOT NULL,
    project_id INTEGER NOT NULL, topic TEXT NOT NULL, kind TEXT NOT NULL,
    receive_time INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (tenant_id, ts, device_id, message_id)
  ) WITHOUT ROWID;
  CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL, project TEXT NOT NULL, device TEXT NOT NULL, topic TEXT NOT NULL,
    message_id TEXT NOT NULL, receive_time INTEGER NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL,
    failed_at INTEGER NOT NULL,
    UNIQUE (tenant_id, device, message_id)
  );
  CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, id);
  CREATE TABLE devices (
    tenant TEXT NOT NULL, id TEXT NOT NULL, project TEXT NOT NULL, token_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX devices_by_token_hash ON devices (token_hash);
  `,
  // v2: tenants, projects and API keys (./tenants.ts). `default` exists from the start; tenants
  // and projects that devices already name are registered so an upgraded store keeps them.
  `
  CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE projects (
    tenant TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
  ) WITHOUT ROWID;
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL,
    key_hash TEXT NOT NULL, created_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX api_keys_by_hash ON api_keys (key_hash);
  CREATE INDEX api_keys_by_tenant ON api_keys (tenant, id);
  INSERT INTO tenants (id, name, created_at) VALUES ('default', 'default', 0);
  INSERT OR IGNORE INTO tenants (id, name, created_at) SELECT DISTINCT tenant, tenant, 0 FROM devices;
  INSERT INTO projects (tenant, name, created_at) SELECT id, 'default', 0 FROM tenants;
  INSERT OR IGNORE INTO projects (tenant, name, created_at) SELECT DISTINCT tenant, project, 0 FROM devices;
  `,
  // v3: configuration objects of every kind (./objects.ts): templates, bridges, settings.
  `
  CREATE TABLE objects (
    kind TEXT NOT NULL, tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, tenant, id)
  ) WITHOUT ROWID;
  `,
  // v4: 1-minute and 1-hour roll-ups (./rollups.ts), keyed by series and bucket start.
  ['1m', '1h'].map((r) => `
  CREATE TABLE rollup_${r} (
    tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, key_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    n INTEGER NOT NULL, num_n INTEGER NOT NULL, min, max, sum,
    first_ts INTEGER NOT NULL, first_mid TEXT NOT NULL, first_v, last_ts INTEGER NOT NULL, last_mid TEXT NOT NULL, last_v,
    PRIMARY KEY (tenant_id, device_id, key_id, bucket)
  ) WITHOUT ROWID;`).join('\n'),
  // v5: tenant settings (quotas, retention) as a JSON object; {} = the node's defaults (./tenants.ts).
  `ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';`,
  // message ids and last seen kept with each batch; a dead letter's kind (./seen.ts, ./seen-schema.ts).
  SEEN_MIGRATION,
];

/** SQLite page cache of one connection when no size is given, bytes (store.cacheBytes: 64 MiB). */
export const DEFAULT_CACHE_BYTES = 64 * 2 ** 20;

/**
 * Opens (creating if needed) the store file and migrates it to the current schema; with
 * `readonly`, opens a reading connection to a file the writer has already migrated.
 */
export function openDatabase(file: string, opts: { readonly?: boolean; cacheBytes?: number } = {}): Db {
  const db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  try {
    // A ceiling, not an allocation: SQLite fills it as pages are read and keeps it full (it is
    // the connection's largest share of memory). Negative = KiB. No memory-mapped I/O (mmap_size
    // stays 0), so the file's pages count only here and in the OS page cache.
    db.pragma(`cache_size = -${Math.max(1, Math.round((opts.cacheBytes ?? DEFAULT_CACHE_BYTES) / 1024))}`);
    db.pragma('mmap_size = 0');
    db.pragma('temp_store = MEMORY');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`store file ${file} has schema version ${version}, newer than this program's ${MIGRATIONS.length}`);
    }
    if (opts.readonly) {
      if (version !== MIGRATIONS.length) throw new Error(`store file ${file} is at schema version ${version}; the writer migrates it first`);
      return db;
    }
    // page_size only takes effect before the first table exists; harmless afterwards.
    db.pragma('page_size = 8192');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('wal_autocheckpoint = 4000'); // pages (32 MiB): fewer, larger checkpoints
    for (let v = version; v < MIGRATIONS.length; v++) {
      writeTransaction(db, () => {
        db.exec(MIGRATIONS[v]);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
