/**
 * @module Device authentication for every source: token → device identity, with an
 * in-memory cache over the registry so a hot ingest path does not query the store per
 * message. Registry changes (disable, delete, rotate) call `forget` so they apply at once.
 */
import { FluxgateError } from '../core/errors.js';
import { hashToken } from '../core/ids.js';
import type { RegistryStore, DeviceRecord } from '../stores/store.js';

export interface DeviceIdentity {
  tenant: string;
  project: string;
  device: string;
}

export class DeviceAuth {
  private readonly byHash = new Map<string, DeviceRecord>();
  private readonly listeners: Array<(tenant: string, device: string) => void> = [];

  constructor(private readonly registry: RegistryStore, private readonly maxCached = 500_000) {}

  /**
   * Resolves a device token. Rejects UNAUTHENTICATED (unknown token) or DEVICE_DISABLED.
   * When `deviceId` is given, the token must belong to that device (DEVICE_MISMATCH).
   */
  async authenticate(token: string | undefined, deviceId?: string): Promise<DeviceIdentity> {
    if (!token) throw new FluxgateError('UNAUTHENTICATED', 'no device token: send it as `Authorization: Bearer <token>` (HTTP) or as the MQTT username');
    const hash = hashToken(token);
    let record = this.byHash.get(hash);
    if (!record) {
      record = await this.registry.findDeviceByTokenHash(hash);
      if (!record) throw new FluxgateError('UNAUTHENTICATED', 'the device token is not known: create the device (POST /api/v1/devices) and use the token it returned');
      if (this.byHash.size >= this.maxCached) this.byHash.clear();
      this.byHash.set(hash, record);
    }
    if (deviceId !== undefined && record.id !== deviceId) {
      throw new FluxgateError('DEVICE_MISMATCH', `the token belongs to another device than ${deviceId}: send to your own device id`);
    }
    if (record.disabled) throw new FluxgateError('DEVICE_DISABLED', `device ${record.id} is disabled: enable it again to send`);
    return { tenant: record.tenant, project: record.project, device: record.id };
  }

  /** Drops cached credentials of a device and tells listeners (sources disconnect its sessions). */
  forget(tenant: string, device: string): void {
    for (const [hash, rec] of this.byHash) if (rec.tenant === tenant && rec.id === device) this.byHash.delete(hash);
    for (const l of this.listeners) l(tenant, device);
  }

  /** Called with (tenant, device) whenever a device is disabled, deleted or its token rotated. */
  onRevoked(listener: (tenant: string, device: string) => void): void {
    this.listeners.push(listener);
  }
}
