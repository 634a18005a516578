/**
 * @module Retention for the PostgreSQL store, per tenant. Each tenant has its own cutoff
 * (RawCutoffs; a plain number is one cutoff for all tenants or for the one named). A daily
 * partition is dropped whole (no row-by-row delete, no vacuum debt, the disk space comes back at
 * once) when every tenant that has rows in it is past it: its cutoff is at or after the
 * partition's end (and, for a tenant whose raw messages are exported first, no message in it
 * arrived after the export began). Otherwise each tenant's expired rows in it are deleted in
 * statements of at most CHUNK_ROWS rows, so no transaction grows large and writes interleave.
 * Which tenants a partition holds is read with a skip scan over the primary key (one index probe
 * per tenant), never a scan of the partition.
 *
 * The drop happens in a short transaction that first takes the parent table's lock (which
 * DROP needs anyway, so taking it first cannot deadlock with a writer) and re-reads the tenants,
 * so a row written meanwhile by a tenant that keeps it is never dropped. Latest state, dead
 * letters and the registry are not history and stay.
 *
 * A session advisory lock makes retention run on one node at a time; another node's call waits
 * and then finds less to do. Rows removed counts each dropped partition's rows just before the
 * drop; a late row of an expired tenant written into that partition in between is dropped with
 * it, uncounted.
 */
import type pg from 'pg';
import type { Logger } from '../../core/logger.js';
import type { RawCutoff, RawCutoffs } from '../store.js';
import { ident } from './codec.js';
import { LOCK_SPACE, LockKind } from './migrations.js';
import { PARTITIONED, type PartitionRange, type PartitionedTable, type Partitions } from './partitions.js';

/** Rows one DELETE statement removes at most (its own transaction). */
export const CHUNK_ROWS = 20_000;
/** How long the drop of one partition waits for the parent table's lock before trying next pass. */
const DROP_LOCK_TIMEOUT = '5s';

/** A plain cutoff as RawCutoffs: one tenant's, or everyone's. */
function asCutoffs(cutoff: number | RawCutoffs, tenant?: string): RawCutoffs {
  if (typeof cutoff !== 'number') return cutoff;
  return tenant === undefined ? { tenants: {}, others: { before: cutoff } } : { tenants: { [tenant]: { before: cutoff } } };
}

function cutFor(c: RawCutoffs, tenant: string): RawCutoff | undefined {
  return (Object.hasOwn(c.tenants, tenant) ? c.tenants[tenant] : c.others) ?? undefined;
}

export class Retention {
  constructor(private readonly pool: pg.Pool, private readonly schema: string, private readonly partitions: Partitions, private readonly logger?: Logger) {}

  /** Returns the points plus raw messages removed. */
  async deleteBefore(cutoff: number | RawCutoffs, tenant?: string): Promise<number> {
    const cutoffs = asCutoffs(cutoff, tenant);
    const all = [...Object.values(cutoffs.tenants), cutoffs.others].filter((c): c is RawCutoff => !!c);
    if (all.length === 0) return 0;
    const latest = Math.max(...all.map((c) => c.before));
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query(`SELECT pg_advisory_lock(${LOCK_SPACE}, hashtext($1) # ${LockKind.retention})`, [this.schema]);
      try {
        let removed = 0;
        await this.partitions.reload();
        for (const table of PARTITIONED) {
          for (const p of this.partitions.list(table)) {
            if (p.from >= latest) break;
            removed += await this.purgePartition(client, table, p, cutoffs);
          }
        }
        return removed;
      } finally {
        await client.query(`SELECT pg_advisory_unlock(${LOCK_SPACE}, hashtext($1) # ${LockKind.retention})`, [this.schema]);
      }
    } catch (err) {
      // A connection that failed mid-way may still hold the session lock: never reuse it.
      broken = true;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Drops the partition when every tenant in it is past it; else deletes each tenant's expired rows. */
  private async purgePartition(client: pg.PoolClient, table: PartitionedTable, p: PartitionRange, cutoffs: RawCutoffs): Promise<number> {
    const part = `${ident(this.schema)}.${ident(p.name)}`;
    const present = await this.tenantsIn(client, part);
    if (await this.droppable(client, table, part, p, present, cutoffs)) {
      const dropped = await this.drop(client, table, part, p, cutoffs);
      if (dropped !== undefined) return dropped;
    }
    let removed = 0;
    for (const tenant of present) {
      const cut = cutFor(cutoffs, tenant);
      if (!cut || cut.before <= p.from) continue;
      const received = table === 'messages' && cut.receivedBefore !== undefined ? ' AND receive_time < $3' : '';
      const params = received ? [tenant, cut.before, cut.receivedBefore] : [tenant, cut.before];
      // ctid is unique within one (leaf) table: each statement deletes one bounded chunk and commits.
      const sql = `DELETE FROM ONLY ${part} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM ONLY ${part} WHERE tenant = $1 AND ts < $2${received} LIMIT ${CHUNK_ROWS}))`;
      for (;;) {
        const n = (await client.query(sql, params)).rowCount ?? 0;
        removed += n;
        if (n < CHUNK_ROWS) break;
      }
    }
    return removed;
  }

  /** The tenants with rows in a partition: a skip scan over the primary key, which leads with tenant. */
  private async tenantsIn(client: pg.PoolClient, part: string): Promise<string[]> {
    const { rows } = await client.query<{ tenant: string }>(`WITH RECURSIVE t AS (
        (SELECT tenant FROM ONLY ${part} ORDER BY tenant LIMIT 1)
        UNION ALL
        SELECT (SELECT tenant FROM ONLY ${part} WHERE tenant > t.tenant ORDER BY tenant LIMIT 1) FROM t WHERE t.tenant IS NOT NULL
      ) SELECT tenant FROM t WHERE tenant IS NOT NULL`);
    return rows.map((r) => r.tenant);
  }

  /** True when no tenant in the partition keeps any of its rows. */
  private async droppable(client: pg.PoolClient, table: PartitionedTable, part: string, p: PartitionRange, present: string[], cutoffs: RawCutoffs): Promise<boolean> {
    if (present.length === 0) {
      // An empty partition of the past goes when the longest window has passed it too; a late row recreates it.
      const all = [...Object.values(cutoffs.tenants), cutoffs.others];
      return all.every((c) => !!c && c.before >= p.to);
    }
    for (const tenant of present) {
      const cut = cutFor(cutoffs, tenant);
      if (!cut || cut.before < p.to) return false;
      if (table === 'messages' && cut.receivedBefore !== undefined) {
        // A message received after its tenant's export began is not in the export yet: keep it.
        const { rowCount } = await client.query(`SELECT 1 FROM ONLY ${part} WHERE tenant = $1 AND receive_time >= $2 LIMIT 1`, [tenant, cut.receivedBefore]);
        if (rowCount) return false;
      }
    }
    return true;
  }

  /** Drops the partition if, under the parent's lock, its tenants still allow it; undefined when it did not. */
  private async drop(client: pg.PoolClient, table: PartitionedTable, part: string, p: PartitionRange, cutoffs: RawCutoffs): Promise<number | undefined> {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*)::int8 AS n FROM ONLY ${part}`);
    const n = Number(rows[0]?.n ?? 0);
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL lock_timeout = '${DROP_LOCK_TIMEOUT}'`);
      await client.query(`LOCK TABLE ${ident(this.schema)}.${table} IN ACCESS EXCLUSIVE MODE`);
      const now = await this.tenantsIn(client, part);
      if (now.some((t) => { const c = cutFor(cutoffs, t); return !c || c.before < p.to; })) {
        await client.query('ROLLBACK');
        return undefined;
      }
      await client.query(`DROP TABLE IF EXISTS ${part}`);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if ((err as { code?: string }).code === '55P03') {
        // lock_timeout: long reads hold the table; its rows are deleted in chunks instead.
        this.logger?.warn({ partition: `${this.schema}.${p.name}` }, 'postgres store: retention could not lock the table to drop a partition; deleting its rows instead');
        return undefined;
      }
      throw err;
    }
    this.partitions.forget(table, p.name);
    this.logger?.info({ partition: `${this.schema}.${p.name}`, rows: n }, 'postgres store: retention dropped a partition');
    return n;
  }
}
