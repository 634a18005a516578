/**
 * @module A tenant's retention windows and the cutoffs they give. Tiers: raw (points and the raw
 * archive), 1-minute roll-ups, 1-hour roll-ups; each in days, 0 = kept for ever. A tenant's own
 * setting wins; an absent one takes the node's default (config `tenants.default*RetentionDays`),
 * through effectiveSettings, the one place that rule lives.
 */
import type { Config } from '../config/schema.js';
import { effectiveSettings } from '../registry/tenant-settings.js';
import type { TenantRecord } from '../stores/store.js';

export const DAY_MS = 86_400_000;

export interface RetentionWindows {
  /** Points and raw messages, days (0 = for ever). */
  rawDays: number;
  rollup1mDays: number;
  rollup1hDays: number;
}

export type Tier = 'raw' | 'rollup_1m' | 'rollup_1h';

/** The node's default windows (a tenant without settings of its own). */
export function defaultWindows(config: Pick<Config, 'tenants'>): RetentionWindows {
  return windowsOf(undefined, config);
}

/** The tenant's windows: its settings over the node's defaults. */
export function windowsOf(tenant: Pick<TenantRecord, 'settings'> | undefined, config: Pick<Config, 'tenants'>): RetentionWindows {
  const e = effectiveSettings(tenant ?? {}, config);
  return { rawDays: e.rawRetentionDays, rollup1mDays: e.rollup1mRetentionDays, rollup1hDays: e.rollup1hRetentionDays };
}

/** Rows with device time before this go; undefined when the window keeps them for ever. */
export function cutoffOf(days: number, now: number): number | undefined {
  return days > 0 ? now - days * DAY_MS : undefined;
}
