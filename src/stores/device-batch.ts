/**
 * @module What both stores' createDevices (RegistryStore) share: the batch check (one tenant,
 * no id twice) and the errors, so both backends answer in the same words.
 */
import { FluxgateError } from '../core/errors.js';
import type { DeviceRecord } from './store.js';

/** The one tenant of a createDevices batch (undefined when empty); BAD_REQUEST for mixed tenants or a repeated id. */
export function checkBatch(devices: DeviceRecord[]): string | undefined {
  const tenant = devices[0]?.tenant;
  const ids = new Set<string>();
  for (const d of devices) {
    if (d.tenant !== tenant) throw new FluxgateError('BAD_REQUEST', 'createDevices takes devices of one tenant');
    if (ids.has(d.id)) throw new FluxgateError('BAD_REQUEST', `device ${d.id} is given twice`);
    ids.add(d.id);
  }
  return tenant;
}

export const devicesExist = (tenant: string, ids: string[]) => new FluxgateError('DEVICE_EXISTS',
  ids.length === 0 ? `a device of this batch was created meanwhile in tenant ${tenant} by another request; nothing was created: retry to see which` : ids.length === 1 ? `device ${ids[0]} already exists in tenant ${tenant}` : `${ids.length} devices already exist in tenant ${tenant} (${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', …' : ''}); nothing was created`,
  { details: { ids } });

export const overQuota = (tenant: string, have: number, adding: number, max: number) => new FluxgateError('QUOTA_DEVICES',
  `tenant ${tenant} has ${have} devices and may have ${max} (setting maxDevices): ${adding === 1 ? 'one more' : `${adding} more`} would be over its quota; nothing was created`,
  { details: { have, adding, maxDevices: max } });
