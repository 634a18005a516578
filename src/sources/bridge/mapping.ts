/**
 * @module Topic → tenant, project, device and kind for a bridge, through its topic template,
 * with the registry checks a device's own connection would get: the tenant must exist (a
 * bridge never creates tenants); the device part is the node's template registry's admission
 * (src/templates: its device cache, revocations, auto-provisioning within the tenant's device
 * quota, and its refusal counter). A refusal is a policy decision, not a payload shape: the
 * bridge acknowledges it to the external broker (else the broker would redeliver it forever and
 * hold the session's window), counts it in fluxgate_bridge_refused_total{reason} and shows the
 * last one in the bridge's status. Tenants, once found, are cached for good (tenants are never
 * deleted); a missing one is asked again after MISSING_TENANT_CACHE_MS.
 */
import type { MessageKind } from '../../core/envelope.js';
import type { Store } from '../../stores/store.js';
import { matchTemplate, type CompiledTemplate } from '../../templates/template.js';
import type { DeviceAdmission, TemplateTarget } from '../../templates/index.js';

const MISSING_TENANT_CACHE_MS = 5_000;
const MAX_CACHED = 100_000;

export type RefusalReason = 'unmatched_topic' | 'unknown_tenant' | 'unknown_device' | 'device_disabled' | 'project_mismatch' | 'registry_error' | string;

/** Device admission of the template registry (src/templates): it owns the device cache, auto-provisioning and its own refusal counter. */
export interface DeviceAdmitter {
  admitCached?(target: TemplateTarget): DeviceAdmission | undefined;
  admitDevice(target: TemplateTarget): Promise<DeviceAdmission>;
}

export type Mapping =
  | { ok: true; tenant: string; project: string; device: string; kind: MessageKind }
  | { ok: false; reason: RefusalReason; detail: string };

export class TopicMapper {
  private readonly tenants = new Map<string, number>();

  constructor(private readonly store: Pick<Store, 'getTenant'>, private readonly template: () => CompiledTemplate, private readonly admitter: DeviceAdmitter) {}

  async map(topic: string): Promise<Mapping> {
    const m = matchTemplate(this.template(), topic);
    if (!m) return { ok: false, reason: 'unmatched_topic', detail: `topic ${topic} does not fit the template ${this.template().template.pattern}` };
    const tenant = m.tenant;
    if (!tenant) return { ok: false, reason: 'unknown_tenant', detail: `topic ${topic}: the template gives no tenant` };
    try {
      if (!(await this.tenantExists(tenant))) return { ok: false, reason: 'unknown_tenant', detail: `topic ${topic}: no tenant ${tenant} (create it with POST /api/v1/tenants)` };
      const target: TemplateTarget = { tenant, project: m.project, device: m.device, kind: m.kind, template: m.template };
      const a = this.admitter.admitCached?.(target) ?? await this.admitter.admitDevice(target);
      if (a.outcome === 'refused') return { ok: false, reason: a.reason, detail: `topic ${topic}: ${a.reason.replace(/_/g, ' ')} (device ${m.device}, tenant ${tenant}${m.project ? `, project ${m.project}` : ''})` };
      return { ok: true, tenant, project: a.project, device: m.device, kind: m.kind };
    } catch (err) {
      return { ok: false, reason: 'registry_error', detail: `topic ${topic}: the registry could not answer (${(err as Error).message})` };
    }
  }

  private async tenantExists(tenant: string): Promise<boolean> {
    const at = this.tenants.get(tenant);
    if (at === Infinity) return true;
    if (at !== undefined && at > Date.now()) return false;
    const found = (await this.store.getTenant(tenant)) !== undefined;
    if (this.tenants.size >= MAX_CACHED) this.tenants.clear();
    this.tenants.set(tenant, found ? Infinity : Date.now() + MISSING_TENANT_CACHE_MS);
    return found;
  }
}
