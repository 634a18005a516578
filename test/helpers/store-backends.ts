/**
 * @module The two store backends for tests that run over both: the embedded store, and
 * PostgreSQL in a fresh random schema dropped afterwards. `PG_URL` is the machine's test
 * database (FLUXGATE_TEST_POSTGRES_URL overrides it); `pgAvailable` lets a suite skip the
 * PostgreSQL run with a reason when the server cannot be reached.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { DeepPartial } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

export const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function pgAvailable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try { await c.connect(); return true; } catch { return false; } finally { await c.end().catch(() => undefined); }
}

/** Drops a PostgreSQL schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`); } finally { await c.end(); }
}

export interface StoreBackend {
  name: 'embedded' | 'postgres';
  /** The `store` settings of a node on this backend, and how to remove what it left. */
  setup(): { store: DeepPartial<Config['store']>; cleanup(): Promise<void> };
}

export const STORE_BACKENDS: StoreBackend[] = [
  { name: 'embedded', setup: () => ({ store: {}, cleanup: async () => undefined }) },
  {
    name: 'postgres',
    setup: () => {
      const schema = `fluxgate_test_${randomBytes(6).toString('hex')}`;
      return { store: { backend: PG_URL, schema }, cleanup: () => dropSchema(schema) };
    },
  },
];
