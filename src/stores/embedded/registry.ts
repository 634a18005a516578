/**
 * @module Device registry of the embedded store: one row per (tenant, device id), a unique
 * index on the token hash so authentication is one lookup. Creating an existing device is
 * DEVICE_EXISTS; reusing another device's token hash is BAD_REQUEST (hashes of random tokens
 * collide only through a bug, and two devices must never share a credential).
 */
import { FluxgateError } from '../../core/errors.js';
import type { DevicePatch, DeviceRecord, Page } from '../store.js';
import { checkBatch, devicesExist, overQuota } from '../device-batch.js';
import { decodeCursor, encodeCursor } from './codec.js';
import { checkLimit } from './read.js';
import { writeTransaction, type Db } from './schema.js';

interface DeviceRow { tenant: string; id: string; project: string; token_hash: string; disabled: number; created_at: number }

function toRecord(r: DeviceRow): DeviceRecord {
  return { tenant: r.tenant, id: r.id, project: r.project, tokenHash: r.token_hash, disabled: r.disabled !== 0, createdAt: r.created_at };
}

export class Registry {
  private readonly insert;
  private readonly get;
  private readonly list;
  private readonly update;
  private readonly del;
  private readonly byToken;
  private readonly count;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(`INSERT INTO devices (tenant, id, project, token_hash, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?)`);
    this.get = db.prepare('SELECT * FROM devices WHERE tenant = ? AND id = ?');
    this.list = db.prepare('SELECT * FROM devices WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?');
    this.update = db.prepare('UPDATE devices SET project = ?, token_hash = ?, disabled = ? WHERE tenant = ? AND id = ?');
    this.del = db.prepare('DELETE FROM devices WHERE tenant = ? AND id = ?');
    this.byToken = db.prepare('SELECT * FROM devices WHERE token_hash = ?');
    this.count = db.prepare('SELECT count(*) AS n FROM devices WHERE tenant = ?').pluck();
  }

  /** All or none, in one transaction (see RegistryStore.createDevices). */
  createDevices(devices: DeviceRecord[], opts: { maxDevices?: number } = {}): void {
    const tenant = checkBatch(devices);
    if (tenant === undefined) return;
    writeTransaction(this.db, () => {
      const existing = devices.filter((d) => this.get.get(tenant, d.id)).map((d) => d.id);
      if (existing.length > 0) throw devicesExist(tenant, existing);
      const max = opts.maxDevices ?? 0;
      if (max > 0) {
        const have = this.count.get(tenant) as number;
        if (have + devices.length > max) throw overQuota(tenant, have, devices.length, max);
      }
      for (const d of devices) {
        this.checkTokenFree(d.tokenHash);
        this.insert.run(d.tenant, d.id, d.project, d.tokenHash, d.disabled ? 1 : 0, d.createdAt);
      }
    })();
  }

  createDevice(d: DeviceRecord): void {
    writeTransaction(this.db, () => {
      if (this.get.get(d.tenant, d.id)) throw new FluxgateError('DEVICE_EXISTS', `device ${d.id} already exists in tenant ${d.tenant}`);
      this.checkTokenFree(d.tokenHash);
      this.insert.run(d.tenant, d.id, d.project, d.tokenHash, d.disabled ? 1 : 0, d.createdAt);
    })();
  }

  getDevice(tenant: string, id: string): DeviceRecord | undefined {
    const r = this.get.get(tenant, id) as DeviceRow | undefined;
    return r && toRecord(r);
  }

  listDevices(tenant: string, limit: number, after?: string): Page<DeviceRecord> {
    checkLimit(limit);
    const from = after === undefined ? '' : decodeCursor(after, 's')[0] as string;
    // '' sorts before every id, and ids are non-empty, so the first page starts at the start.
    const rows = this.list.all(tenant, from, limit + 1) as DeviceRow[];
    const items = rows.slice(0, limit).map(toRecord);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: encodeCursor([last.id]) } : { items };
  }

  updateDevice(tenant: string, id: string, patch: DevicePatch): DeviceRecord | undefined {
    return writeTransaction(this.db, () => {
      const cur = this.getDevice(tenant, id);
      if (!cur) return undefined;
      const next: DeviceRecord = {
        ...cur,
        project: patch.project ?? cur.project,
        tokenHash: patch.tokenHash ?? cur.tokenHash,
        disabled: patch.disabled ?? cur.disabled,
      };
      if (next.tokenHash !== cur.tokenHash) this.checkTokenFree(next.tokenHash);
      this.update.run(next.project, next.tokenHash, next.disabled ? 1 : 0, tenant, id);
      return next;
    })();
  }

  deleteDevice(tenant: string, id: string): boolean {
    return this.del.run(tenant, id).changes > 0;
  }

  findDeviceByTokenHash(tokenHash: string): DeviceRecord | undefined {
    const r = this.byToken.get(tokenHash) as DeviceRow | undefined;
    return r && toRecord(r);
  }

  private checkTokenFree(tokenHash: string): void {
    if (this.byToken.get(tokenHash)) throw new FluxgateError('BAD_REQUEST', 'this token hash is already used by another device; issue a new token');
  }
}

