/**
 * @module Tenant quotas at the sources: decides whether a tenant's messages may pass (rate and
 * payload size) and how many devices it may have, and counts every refusal in
 * `fluxgate_quota_refused_total{tenant,quota}`. The rate is a token bucket per tenant
 * (messagesPerSecond tokens a second, up to burstMessages): a refused message takes no token.
 *
 * The decision is synchronous and touches only this tenant's bucket: no store call, no queue
 * shared between tenants, so one tenant's throttling never makes another wait. Settings come
 * from a cache of every tenant's settings, read at start, again every `tenants.settingsCacheMs`,
 * and at once when a tenant is changed through this node (`update`); a tenant not (yet) in the
 * cache has the node's defaults. Hand-written: a token bucket is a few lines of arithmetic,
 * and rate-limit libraries bring timers or stores per key that this hot path must not pay for.
 */
import { Counter } from 'prom-client';
import type { Config } from '../config/schema.js';
import { FluxgateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { effectiveSettings, type EffectiveSettings } from '../registry/tenant-settings.js';
import type { TenancyStore, TenantRecord } from '../stores/store.js';

export type QuotaKind = 'rate' | 'payload' | 'devices';

interface Bucket { tokens: number; at: number; rate: number; burst: number }

export class Quotas {
  private readonly settings = new Map<string, EffectiveSettings>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly refused: Counter<'tenant' | 'quota'>;
  private readonly defaults: EffectiveSettings;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly store: Pick<TenancyStore, 'listTenants'>, private readonly config: Pick<Config, 'tenants'>, metrics: Metrics, private readonly logger?: Logger, private readonly now: () => number = Date.now) {
    const name = 'fluxgate_quota_refused_total';
    this.refused = (metrics.registry.getSingleMetric(name) as Counter<'tenant' | 'quota'> | undefined) ?? new Counter({
      name, help: 'Messages (rate, payload) and device creations (devices) refused because a tenant was over its quota.', labelNames: ['tenant', 'quota'] as const, registers: [metrics.registry],
    });
    this.defaults = effectiveSettings({}, config);
  }

  /** Reads every tenant's settings, then again every tenants.settingsCacheMs. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => {
      this.refresh().catch((err) => this.logger?.warn({ err }, 'tenant settings not re-read; quotas keep the last ones and retry'));
    }, this.config.tenants.settingsCacheMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async refresh(): Promise<void> {
    for (const t of await this.store.listTenants()) this.update(t);
  }

  /** A tenant's settings changed (or were read): quotas follow at once. */
  update(tenant: Pick<TenantRecord, 'id' | 'settings'>): void {
    this.settings.set(tenant.id, effectiveSettings(tenant, this.config));
  }

  /** A tenant's effective settings as the quotas see them (the node's defaults for a tenant not yet known). */
  of(tenant: string): EffectiveSettings {
    return this.settings.get(tenant) ?? this.defaults;
  }

  /**
   * May `count` messages of `tenant`, the largest `largestPayload` bytes, pass now? Undefined
   * when they may (their tokens are taken); otherwise the refusal, already counted: QUOTA_PAYLOAD,
   * or QUOTA_RATE with details.retryAfterSeconds (when the bucket refills enough).
   */
  check(tenant: string, count: number, largestPayload: number): FluxgateError | undefined {
    const s = this.of(tenant);
    if (s.maxPayloadBytes > 0 && largestPayload > s.maxPayloadBytes) {
      this.refused.inc({ tenant, quota: 'payload' }, count);
      return new FluxgateError('QUOTA_PAYLOAD', `a message of ${largestPayload} bytes is over tenant ${tenant}'s quota of ${s.maxPayloadBytes} bytes (setting maxPayloadBytes): send smaller messages`);
    }
    if (s.messagesPerSecond <= 0) return undefined;
    const b = this.bucket(tenant, s);
    if (b.tokens >= count) {
      b.tokens -= count;
      return undefined;
    }
    this.refused.inc({ tenant, quota: 'rate' }, count);
    if (count > b.burst) {
      return new FluxgateError('QUOTA_RATE', `${count} messages in one request are more than tenant ${tenant} may send at once (burstMessages ${b.burst}): send at most ${b.burst} per request`, { details: { retryAfterSeconds: Math.max(1, Math.ceil(count / b.rate)) } });
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((count - b.tokens) / b.rate));
    return new FluxgateError('QUOTA_RATE', `tenant ${tenant} is over its quota of ${s.messagesPerSecond} messages per second (settings messagesPerSecond, burstMessages ${b.burst}): retry after ${retryAfterSeconds} s`, { details: { retryAfterSeconds } });
  }

  /** The bucket of a tenant, refilled up to now; rebuilt full when its rate or burst changed. */
  private bucket(tenant: string, s: EffectiveSettings): Bucket {
    const now = this.now();
    let b = this.buckets.get(tenant);
    if (!b || b.rate !== s.messagesPerSecond || b.burst !== s.burstMessages) {
      b = { tokens: s.burstMessages, at: now, rate: s.messagesPerSecond, burst: s.burstMessages };
      this.buckets.set(tenant, b);
      return b;
    }
    if (now > b.at) {
      b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) * b.rate) / 1000);
      b.at = now;
    }
    return b;
  }

  /** How long a source holds an over-rate refusal before answering (tenants.refusalDelayMs): a flooding client then waits instead of costing CPU. */
  get refusalDelayMs(): number {
    return this.config.tenants.refusalDelayMs;
  }

  /** Counts `n` device creations refused by the device quota (enforced by the store, inside its transaction). */
  refusedDevices(tenant: string, n: number): void {
    this.refused.inc({ tenant, quota: 'devices' }, n);
  }
}
