/**
 * @module Retention for the PostgreSQL store. For all tenants, a partition that ends at or
 * before the cutoff is dropped whole (no row-by-row delete, no vacuum debt, the disk space comes
 * back at once); rows before the cutoff in the partition that straddles it are deleted. For one
 * tenant, its rows before the cutoff are deleted (other tenants share the partitions).
 * Latest state, dead letters and the registry are not history and stay.
 *
 * A session advisory lock makes retention run on one node at a time; another node's call waits
 * and then finds less to do. Rows removed counts each dropped partition's rows just before the
 * drop; a late point written into that partition in between is dropped with it, uncounted.
 */
import type pg from 'pg';
import type { Logger } from '../../core/logger.js';
import { ident } from './codec.js';
import { LOCK_SPACE, LockKind } from './migrations.js';
import { PARTITIONED, type Partitions } from './partitions.js';

export class Retention {
  constructor(private readonly pool: pg.Pool, private readonly schema: string, private readonly partitions: Partitions, private readonly logger?: Logger) {}

  /** Returns the points plus raw messages removed. */
  async deleteBefore(cutoff: number, tenant?: string): Promise<number> {
    const s = ident(this.schema);
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query(`SELECT pg_advisory_lock(${LOCK_SPACE}, hashtext($1) # ${LockKind.retention})`, [this.schema]);
      try {
        let removed = 0;
        if (tenant !== undefined) {
          for (const table of PARTITIONED) {
            removed += (await client.query(`DELETE FROM ${s}.${table} WHERE tenant = $1 AND ts < $2`, [tenant, cutoff])).rowCount ?? 0;
          }
          return removed;
        }
        await this.partitions.reload();
        for (const table of PARTITIONED) {
          for (const p of this.partitions.list(table)) {
            if (p.to > cutoff) break;
            const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM ONLY ${s}.${ident(p.name)}`);
            await client.query(`DROP TABLE IF EXISTS ${s}.${ident(p.name)}`);
            this.partitions.forget(table, p.name);
            removed += rows[0]?.n ?? 0;
            this.logger?.info({ partition: `${this.schema}.${p.name}`, rows: rows[0]?.n ?? 0, cutoff }, 'postgres store: retention dropped a partition');
          }
          // The partition holding the cutoff: pruning keeps this delete inside it.
          removed += (await client.query(`DELETE FROM ${s}.${table} WHERE ts < $1`, [cutoff])).rowCount ?? 0;
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
}
