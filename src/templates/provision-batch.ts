/**
 * @module Auto-provisioning creates devices in batches: the single-device creations that
 * arrive together (a fleet of gateways whose devices publish for the first time after an
 * outage, 100,000 at once) are gathered per tenant and written with one Store.createDevices
 * call per batch instead of one transaction each. On PostgreSQL one transaction per device
 * registered ~420 devices/s on the test machine and queued every other store call behind them.
 *
 * Each caller still gets its own device's outcome: a batch is all-or-none in the store, so
 * - DEVICE_EXISTS (some were created meanwhile elsewhere; details.ids names them): those callers
 *   get DEVICE_EXISTS and the rest are written again as a batch;
 * - QUOTA_DEVICES (the batch does not fit the tenant's maxDevices): the batch's devices are
 *   created one at a time in arrival order, so exactly as many as fit are created and the
 *   others get QUOTA_DEVICES, as without batching;
 * - anything else (unknown tenant, store unavailable) is every caller's answer.
 * A batch is written on the next turn of the event loop, or at once when it holds
 * `maxBatch` devices; one batch per tenant is in the store at a time (the next gathers
 * meanwhile), so a burst costs a few large transactions.
 */
import { isFluxgateError } from '../core/errors.js';
import type { DeviceRecord, RegistryStore } from '../stores/store.js';

interface Waiting { device: DeviceRecord; resolve: () => void; reject: (err: unknown) => void }

export class DeviceCreationBatcher {
  private readonly gathering = new Map<string, Waiting[]>();
  private readonly writing = new Set<string>();

  constructor(
    private readonly store: Pick<RegistryStore, 'createDevices'>,
    /** The tenant's device quota when a batch is written (0 = unlimited). */
    private readonly maxDevices: (tenant: string) => number,
    private readonly maxBatch = 500,
  ) {}

  /** Creates `device`; rejects as Store.createDevices would for it alone. */
  create(device: DeviceRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const tenant = device.tenant;
      let batch = this.gathering.get(tenant);
      if (!batch) {
        this.gathering.set(tenant, (batch = []));
        if (!this.writing.has(tenant)) setImmediate(() => void this.flush(tenant));
      }
      batch.push({ device, resolve, reject });
      if (batch.length >= this.maxBatch && !this.writing.has(tenant)) void this.flush(tenant);
    });
  }

  /** Writes what `tenant` has gathered, then whatever gathered meanwhile. */
  private async flush(tenant: string): Promise<void> {
    if (this.writing.has(tenant)) return;
    this.writing.add(tenant);
    try {
      for (let batch = this.take(tenant); batch.length > 0; batch = this.take(tenant)) await this.write(tenant, batch);
    } finally {
      this.writing.delete(tenant);
    }
  }

  /** At most maxBatch of what `tenant` gathered; the rest keeps gathering. */
  private take(tenant: string): Waiting[] {
    const all = this.gathering.get(tenant) ?? [];
    this.gathering.delete(tenant);
    if (all.length > this.maxBatch) this.gathering.set(tenant, all.slice(this.maxBatch));
    return all.slice(0, this.maxBatch);
  }

  private async write(tenant: string, batch: Waiting[]): Promise<void> {
    try {
      await this.store.createDevices(batch.map((w) => w.device), { maxDevices: this.maxDevices(tenant) });
      for (const w of batch) w.resolve();
    } catch (err) {
      if (batch.length > 1 && isFluxgateError(err, 'DEVICE_EXISTS')) {
        const exist = new Set((err.details as { ids?: string[] } | undefined)?.ids ?? []);
        // No ids named (a device created meanwhile by another request): one at a time tells which.
        if (exist.size === 0) return this.oneByOne(tenant, batch);
        const rest: Waiting[] = [];
        for (const w of batch) if (exist.has(w.device.id)) w.reject(err); else rest.push(w);
        if (rest.length > 0) await this.write(tenant, rest);
      } else if (batch.length > 1 && isFluxgateError(err, 'QUOTA_DEVICES')) {
        await this.oneByOne(tenant, batch);
      } else {
        for (const w of batch) w.reject(err);
      }
    }
  }

  private async oneByOne(tenant: string, batch: Waiting[]): Promise<void> {
    for (const w of batch) await this.write(tenant, [w]);
  }
}
