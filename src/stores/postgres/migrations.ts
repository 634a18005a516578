/**
 * @module The PostgreSQL store's schema, migrated forward at open(). Every node runs this at
 * start, so it is idempotent and safe to run concurrently: one transaction holds an advisory
 * lock keyed by the schema name, and each migration's version is recorded in
 * `schema_migrations` in the same transaction as its DDL (PostgreSQL DDL is transactional).
 * A second node waits on the lock, then finds nothing left to do.
 *
 * Layout: every table starts its key with the tenant. Names are text with the "C" collation:
 * byte order, the order the embedded store and JavaScript compare in (the latest-state tie rule
 * compares message ids), and cheaper than a linguistic collation.
 * - `points` and `messages` are partitioned by range of device time (ms since the epoch), see
 *   ./partitions.ts; retention drops whole partitions.
 * - `latest` is rewritten by every batch: free space on each page (fillfactor 70) lets those
 *   updates stay on their page without touching the index (HOT updates).
 * - Raw messages are unique on (tenant, ts, device, message id): a unique key on a partitioned
 *   table must contain the partition key. A replay carries the same device time, so it is stored
 *   once; two copies of one message id with different device times would be two rows.
 */
import type pg from 'pg';
import { ident } from './codec.js';
import { SEEN_MIGRATION } from './seen.js';
import { OBJECTS_MIGRATION } from './objects.js';
import { ROLLUPS_MIGRATION } from './rollups.js';
import { TENANCY_MIGRATION, TENANT_SETTINGS_MIGRATION } from './tenants.js';

/** First key of every advisory lock this store takes: 'FLUX' as an int4. */
export const LOCK_SPACE = 0x464c5558;
/** Second keys, combined with the schema so two schemas never wait on each other. */
export const LockKind = { migrate: 1, partitions: 2, retention: 3 } as const;

export function lockSql(kind: number): string {
  return `SELECT pg_advisory_xact_lock(${LOCK_SPACE}, hashtext($1) # ${kind})`;
}

const MIGRATIONS: Array<(s: string) => string> = [
  (s) => `
  CREATE TABLE ${s}.points (
    tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
    ts bigint NOT NULL, message_id text COLLATE "C" NOT NULL, project text COLLATE "C" NOT NULL,
    num float8, txt text, bool boolean,
    PRIMARY KEY (tenant, device, key, ts, message_id)
  ) PARTITION BY RANGE (ts);
  CREATE TABLE ${s}.latest (
    tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
    ts bigint NOT NULL, message_id text COLLATE "C" NOT NULL,
    num float8, txt text, bool boolean,
    PRIMARY KEY (tenant, device, key)
  ) WITH (fillfactor = 70);
  CREATE TABLE ${s}.messages (
    tenant text COLLATE "C" NOT NULL, ts bigint NOT NULL, device text COLLATE "C" NOT NULL, message_id text COLLATE "C" NOT NULL,
    project text COLLATE "C" NOT NULL, topic text NOT NULL, kind text NOT NULL, receive_time bigint NOT NULL, payload bytea NOT NULL,
    PRIMARY KEY (tenant, ts, device, message_id)
  ) PARTITION BY RANGE (ts);
  CREATE INDEX messages_by_device ON ${s}.messages (tenant, device, ts, message_id);
  CREATE TABLE ${s}.dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL, project text NOT NULL, device text COLLATE "C" NOT NULL, topic text NOT NULL,
    message_id text COLLATE "C" NOT NULL, receive_time bigint NOT NULL, reason text NOT NULL, payload bytea NOT NULL,
    failed_at bigint NOT NULL,
    UNIQUE (tenant, device, message_id)
  );
  CREATE INDEX dead_letters_by_tenant ON ${s}.dead_letters (tenant, id);
  CREATE TABLE ${s}.devices (
    tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, project text NOT NULL,
    token_hash text COLLATE "C" NOT NULL CONSTRAINT devices_token_hash_key UNIQUE,
    disabled boolean NOT NULL, created_at bigint NOT NULL,
    PRIMARY KEY (tenant, id)
  );`,
  TENANCY_MIGRATION,
  OBJECTS_MIGRATION,
  ROLLUPS_MIGRATION,
  TENANT_SETTINGS_MIGRATION,
  SEEN_MIGRATION,
];

/** Brings `schema` to the current version; returns the versions this call applied. */
export async function migrate(client: pg.PoolClient, schema: string): Promise<number[]> {
  const s = ident(schema);
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    // The lock comes first: CREATE SCHEMA IF NOT EXISTS alone still races on the catalog.
    await client.query(lockSql(LockKind.migrate), [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${s}.schema_migrations`);
    const current = rows[0]?.v ?? 0;
    if (current > MIGRATIONS.length) {
      throw new Error(`schema ${schema} is at version ${current}, newer than this program's ${MIGRATIONS.length}; upgrade this node`);
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      await client.query(MIGRATIONS[v](s));
      await client.query(`INSERT INTO ${s}.schema_migrations (version) VALUES ($1)`, [v + 1]);
      applied.push(v + 1);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
