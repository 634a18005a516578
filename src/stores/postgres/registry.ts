/**
 * @module Device registry of the PostgreSQL store: one row per (tenant, device id), a unique
 * constraint on the token hash so authentication is one index lookup and two devices never
 * share a credential, even when two nodes create devices at the same moment. Creating an
 * existing device is DEVICE_EXISTS; reusing another device's token hash is BAD_REQUEST, as in
 * the embedded store.
 */
import type pg from 'pg';
import { FluxgateError } from '../../core/errors.js';
import type { DevicePatch, DeviceRecord, Page } from '../store.js';
import { checkBatch, devicesExist, overQuota } from '../device-batch.js';
import { checkLimit, decodeCursor, encodeCursor, ident, sqlState } from './codec.js';

interface DeviceRow { tenant: string; id: string; project: string; token_hash: string; disabled: boolean; created_at: number }

function toRecord(r: DeviceRow): DeviceRecord {
  return { tenant: r.tenant, id: r.id, project: r.project, tokenHash: r.token_hash, disabled: r.disabled, createdAt: r.created_at };
}

const COLS = 'tenant, id, project, token_hash, disabled, created_at';

export class Registry {
  private readonly s: string;

  constructor(private readonly pool: pg.Pool, schema: string) {
    this.s = ident(schema);
  }

  async createDevice(d: DeviceRecord): Promise<void> {
    // ON CONFLICT on the key answers DEVICE_EXISTS first, whatever the token; a token clash still raises.
    const r = await tokenFree(this.pool.query(`INSERT INTO ${this.s}.devices (${COLS}) VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (tenant, id) DO NOTHING`, [d.tenant, d.id, d.project, d.tokenHash, d.disabled, d.createdAt]));
    if (r.rowCount === 0) throw new FluxgateError('DEVICE_EXISTS', `device ${d.id} already exists in tenant ${d.tenant}`);
  }

  /**
   * All or none, in one transaction (see RegistryStore.createDevices). The tenant's row is locked
   * first, so two creators of one tenant take turns and the device count cannot pass the quota.
   */
  async createDevices(devices: DeviceRecord[], opts: { maxDevices?: number } = {}): Promise<void> {
    const tenant = checkBatch(devices);
    if (tenant === undefined) return;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT 1 FROM ${this.s}.tenants WHERE id = $1 FOR UPDATE`, [tenant]);
      const ids = devices.map((d) => d.id);
      const { rows } = await client.query<{ id: string }>(`SELECT id FROM ${this.s}.devices WHERE tenant = $1 AND id = ANY($2::text[]) ORDER BY id`, [tenant, ids]);
      if (rows.length > 0) throw devicesExist(tenant, rows.map((r) => r.id));
      const max = opts.maxDevices ?? 0;
      if (max > 0) {
        const { rows: [c] } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.s}.devices WHERE tenant = $1`, [tenant]);
        const have = Number(c.n);
        if (have + devices.length > max) throw overQuota(tenant, have, devices.length, max);
      }
      await tokenFree(client.query(`INSERT INTO ${this.s}.devices (${COLS})
        SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[])`,
        [tenant, ids, devices.map((d) => d.project), devices.map((d) => d.tokenHash), devices.map((d) => d.disabled), devices.map((d) => d.createdAt)]));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      // Another node inserted one of these ids after our check: the same answer as if we had seen it.
      if (sqlState(err) === '23505' && (err as { constraint?: string }).constraint !== 'devices_token_hash_key') throw devicesExist(tenant, []);
      throw err;
    } finally {
      client.release();
    }
  }

  async getDevice(tenant: string, id: string): Promise<DeviceRecord | undefined> {
    const { rows } = await this.pool.query<DeviceRow>(`SELECT ${COLS} FROM ${this.s}.devices WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return rows[0] && toRecord(rows[0]);
  }

  async listDevices(tenant: string, limit: number, after?: string): Promise<Page<DeviceRecord>> {
    checkLimit(limit);
    const from = after === undefined ? '' : decodeCursor(after, 's')[0] as string;
    const { rows } = await this.pool.query<DeviceRow>(`SELECT ${COLS} FROM ${this.s}.devices WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3`,
      [tenant, from, limit + 1]);
    const items = rows.slice(0, limit).map(toRecord);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.id]) } : { items };
  }

  async updateDevice(tenant: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined> {
    const { rows } = await tokenFree(this.pool.query<DeviceRow>(`UPDATE ${this.s}.devices
      SET project = coalesce($3, project), token_hash = coalesce($4, token_hash), disabled = coalesce($5, disabled)
      WHERE tenant = $1 AND id = $2 RETURNING ${COLS}`, [tenant, id, patch.project ?? null, patch.tokenHash ?? null, patch.disabled ?? null]));
    return rows[0] && toRecord(rows[0]);
  }

  async deleteDevice(tenant: string, id: string): Promise<boolean> {
    const r = await this.pool.query(`DELETE FROM ${this.s}.devices WHERE tenant = $1 AND id = $2`, [tenant, id]);
    return (r.rowCount ?? 0) > 0;
  }

  async findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | undefined> {
    const { rows } = await this.pool.query<DeviceRow>(`SELECT ${COLS} FROM ${this.s}.devices WHERE token_hash = $1`, [tokenHash]);
    return rows[0] && toRecord(rows[0]);
  }
}

/** Turns a clash on the token hash's unique constraint into BAD_REQUEST. */
async function tokenFree<T>(q: Promise<T>): Promise<T> {
  try {
    return await q;
  } catch (err) {
    if (sqlState(err) === '23505' && (err as { constraint?: string }).constraint === 'devices_token_hash_key') {
      throw new FluxgateError('BAD_REQUEST', 'this token hash is already used by another device; issue a new token');
    }
    throw err;
  }
}
