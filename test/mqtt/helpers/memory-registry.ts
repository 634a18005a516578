/**
 * @module STAND-IN for tests only: a tiny in-memory RegistryStore (devices by tenant and by
 * token hash) until the embedded store is used everywhere.
 */
import { FluxgateError } from '../../../src/core/errors.js';
import type { DevicePatch, DeviceRecord, Page, RegistryStore } from '../../../src/stores/store.js';

export class MemoryRegistry implements RegistryStore {
  private readonly devices = new Map<string, DeviceRecord>();

  async createDevice(d: DeviceRecord): Promise<void> {
    const k = `${d.tenant}/${d.id}`;
    if (this.devices.has(k)) throw new FluxgateError('DEVICE_EXISTS', `device ${d.id} exists`);
    this.devices.set(k, { ...d });
  }

  async getDevice(tenant: string, id: string): Promise<DeviceRecord | undefined> {
    return this.devices.get(`${tenant}/${id}`);
  }

  async listDevices(tenant: string, limit: number): Promise<Page<DeviceRecord>> {
    return { items: [...this.devices.values()].filter((d) => d.tenant === tenant).slice(0, limit) };
  }

  async updateDevice(tenant: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined> {
    const d = this.devices.get(`${tenant}/${id}`);
    if (d) Object.assign(d, patch);
    return d;
  }

  async deleteDevice(tenant: string, id: string): Promise<boolean> {
    return this.devices.delete(`${tenant}/${id}`);
  }

  async findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | undefined> {
    for (const d of this.devices.values()) if (d.tokenHash === tokenHash) return d;
    return undefined;
  }
}
