/**
 * @module A tenant's effective settings: its own (TenantRecord.settings) where set, the node's
 * defaults from configuration (`tenants.*`) elsewhere. Quotas (src/sources/quota.ts), retention
 * and the REST view read settings only through here, so "absent means the default" lives in
 * one place. Quotas: 0 = unlimited; retention days: 0 = kept forever.
 */
import type { Config } from '../config/schema.js';
import type { TenantSettings } from '../stores/store.js';

export type EffectiveSettings = Required<TenantSettings>;

/** Setting names, in the order the REST API and the CLI list them. */
export const SETTING_NAMES = [
  'maxDevices', 'messagesPerSecond', 'burstMessages', 'maxPayloadBytes', 'rawRetentionDays', 'rollup1mRetentionDays', 'rollup1hRetentionDays',
] as const satisfies ReadonlyArray<keyof TenantSettings>;

/** Every setting of a tenant, each from the tenant or else from `config.tenants`. */
export function effectiveSettings(tenant: { settings?: TenantSettings }, config: Pick<Config, 'tenants'>): EffectiveSettings {
  const own = tenant.settings ?? {};
  const d = config.tenants;
  const messagesPerSecond = own.messagesPerSecond ?? d.defaultMessagesPerSecond;
  const burst = own.burstMessages ?? d.defaultBurstMessages;
  return {
    maxDevices: own.maxDevices ?? d.defaultMaxDevices,
    messagesPerSecond,
    // 0 = one second's worth of the rate (at least one message, so a small rate still passes).
    burstMessages: burst > 0 ? burst : messagesPerSecond > 0 ? Math.max(1, Math.ceil(messagesPerSecond)) : 0,
    maxPayloadBytes: own.maxPayloadBytes ?? d.defaultMaxPayloadBytes,
    rawRetentionDays: own.rawRetentionDays ?? d.defaultRawRetentionDays,
    rollup1mRetentionDays: own.rollup1mRetentionDays ?? d.defaultRollup1mRetentionDays,
    rollup1hRetentionDays: own.rollup1hRetentionDays ?? d.defaultRollup1hRetentionDays,
  };
}
