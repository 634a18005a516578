/**
 * @module Device authentication for every source: token → device identity, with an
 * in-memory cache over the registry so a hot ingest path neither queries the store nor hashes
 * the token per message (keyed by the token itself; only the hash is ever stored). Registry
 * changes on this node (disable, delete, rotate) call `forget` so they apply at once; with a
 * relay (src/cluster/revocations.ts, a nats:// log) `forget` also tells every other node, which
 * applies it with `forgetHere`. Without one, other nodes apply it when the entry expires (`ttlMs`).
 * A lookup that raced with a revocation is not cached and is asked again.
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
  private readonly byToken = new Map<string, { record: DeviceRecord; until: number }>();
  private readonly listeners: Array<(tenant: string, device: string) => void> = [];
  /** Bumped by every revocation, so a lookup that raced with one does not cache the old record. */
  private revocations = 0;
  private relay: ((tenant: string, device: string) => void) | undefined;

  constructor(private readonly registry: RegistryStore, private readonly maxCached = 500_000, private readonly ttlMs = 30_000) {}

  /**
   * Resolves a device token. Rejects UNAUTHENTICATED (unknown token) or DEVICE_DISABLED.
   * When `deviceId` is given, the token must belong to that device (DEVICE_MISMATCH).
   */
  async authenticate(token: string | undefined, deviceId?: string): Promise<DeviceIdentity> {
    if (!token) throw new FluxgateError('UNAUTHENTICATED', 'no device token: send it as `Authorization: Bearer <token>` (HTTP) or as the MQTT username');
    const now = Date.now();
    let record = this.byToken.get(token);
    if (record && record.until < now) record = undefined;
    if (!record) {
      const generation = this.revocations;
      let found = await this.registry.findDeviceByTokenHash(hashToken(token));
      if (generation !== this.revocations) found = await this.registry.findDeviceByTokenHash(hashToken(token));
      if (!found) throw new FluxgateError('UNAUTHENTICATED', 'the device token is not known: create the device (POST /api/v1/devices) and use the token it returned');
      if (this.byToken.size >= this.maxCached) this.byToken.clear();
      record = { record: found, until: now + this.ttlMs };
      this.byToken.set(token, record);
    }
    return this.check(record.record, deviceId);
  }

  private check(record: DeviceRecord, deviceId: string | undefined): DeviceIdentity {
    if (deviceId !== undefined && record.id !== deviceId) {
      throw new FluxgateError('DEVICE_MISMATCH', `the token belongs to another device than ${deviceId}: send to your own device id`);
    }
    if (record.disabled) throw new FluxgateError('DEVICE_DISABLED', `device ${record.id} is disabled: enable it again to send`);
    return { tenant: record.tenant, project: record.project, device: record.id };
  }

  /** A device was disabled, deleted or its token rotated through this node: applies here, and on every other node through the relay. */
  forget(tenant: string, device: string): void {
    this.forgetHere(tenant, device);
    this.relay?.(tenant, device);
  }

  /** Drops cached credentials of a device and tells listeners (sources disconnect its sessions). */
  forgetHere(tenant: string, device: string): void {
    this.revocations++;
    for (const [token, { record }] of this.byToken) if (record.tenant === tenant && record.id === device) this.byToken.delete(token);
    for (const l of this.listeners) l(tenant, device);
  }

  /** Sends this node's revocations to the other nodes (undefined: stop). */
  useRelay(relay: ((tenant: string, device: string) => void) | undefined): void {
    this.relay = relay;
  }

  /** Called with (tenant, device) whenever a device is disabled, deleted or its token rotated. */
  onRevoked(listener: (tenant: string, device: string) => void): void {
    this.listeners.push(listener);
  }
}
