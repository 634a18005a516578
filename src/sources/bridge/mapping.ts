/**
 * @module Topic → tenant, project, device and kind for a bridge, through its topic template,
 * with the registry checks a device's own connection would get: the tenant must exist; an
 * unknown device is registered when the template says `autoProvision` (its project too),
 * otherwise refused; a disabled device, or a device registered in another project than the
 * topic names, is refused. A refusal is a policy decision, not a payload shape: the bridge
 * acknowledges it to the external broker (else the broker would redeliver it forever and
 * hold the session's window), counts it in fluxgate_bridge_refused_total{reason} and shows the
 * last one in the bridge's status. With the node's template registry (src/templates) the device
 * part is its admitDevice (shared cache, revocations, provisioning counter); without one (unit
 * use) this module asks the store itself. Registry answers are cached (tenants: once found, for good —
 * tenants are never deleted; devices: DEVICE_CACHE_MS), like device authentication does.
 */
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import { generateToken, hashToken } from '../../core/ids.js';
import type { MessageKind } from '../../core/envelope.js';
import type { Store } from '../../stores/store.js';
import { matchTemplate, type CompiledTemplate } from '../../templates/template.js';
import type { DeviceAdmission, TemplateTarget } from '../../templates/index.js';

export const DEVICE_CACHE_MS = 30_000;
const MISSING_TENANT_CACHE_MS = 5_000;
const MAX_CACHED = 100_000;

export type RefusalReason = 'unmatched_topic' | 'unknown_tenant' | 'unknown_device' | 'device_disabled' | 'project_mismatch' | 'registry_error' | string;

/** Device admission of the template registry (src/templates), when the node has one: it owns the device cache, auto-provisioning and its own refusal counter. */
export interface DeviceAdmitter {
  admitCached?(target: TemplateTarget): DeviceAdmission | undefined;
  admitDevice(target: TemplateTarget): Promise<DeviceAdmission>;
}

export type Mapping =
  | { ok: true; tenant: string; project: string; device: string; kind: MessageKind }
  | { ok: false; reason: RefusalReason; detail: string };

export class TopicMapper {
  private readonly tenants = new Map<string, number>();
  private readonly devices = new Map<string, { project: string; disabled: boolean; until: number }>();

  constructor(private readonly store: Store, private readonly template: () => CompiledTemplate, private readonly admitter?: DeviceAdmitter) {}

  async map(topic: string): Promise<Mapping> {
    const m = matchTemplate(this.template(), topic);
    if (!m) return { ok: false, reason: 'unmatched_topic', detail: `topic ${topic} does not fit the template ${this.template().template.pattern}` };
    const tenant = m.tenant;
    if (!tenant) return { ok: false, reason: 'unknown_tenant', detail: `topic ${topic}: the template gives no tenant` };
    try {
      if (!(await this.tenantExists(tenant))) return { ok: false, reason: 'unknown_tenant', detail: `topic ${topic}: no tenant ${tenant} (create it with POST /api/v1/tenants)` };
      if (this.admitter) {
        const target: TemplateTarget = { tenant, project: m.project, device: m.device, kind: m.kind, template: m.template };
        const a = this.admitter.admitCached?.(target) ?? await this.admitter.admitDevice(target);
        if (a.outcome === 'refused') return { ok: false, reason: a.reason, detail: `topic ${topic}: ${a.reason.replace(/_/g, ' ')} (device ${m.device}, tenant ${tenant}${m.project ? `, project ${m.project}` : ''})` };
        return { ok: true, tenant, project: a.project, device: m.device, kind: m.kind };
      }
      let known = await this.device(tenant, m.device);
      if (!known) {
        if (!m.template.autoProvision) return { ok: false, reason: 'unknown_device', detail: `topic ${topic}: device ${m.device} is not registered in tenant ${tenant} and the template does not auto-provision` };
        known = await this.provision(tenant, m.project ?? 'default', m.device);
      }
      if (known.disabled) return { ok: false, reason: 'device_disabled', detail: `device ${m.device} of tenant ${tenant} is disabled` };
      if (m.project !== undefined && m.project !== known.project) return { ok: false, reason: 'project_mismatch', detail: `topic ${topic} names project ${m.project}, but device ${m.device} belongs to project ${known.project}` };
      return { ok: true, tenant, project: known.project, device: m.device, kind: m.kind };
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

  private async device(tenant: string, id: string): Promise<{ project: string; disabled: boolean } | undefined> {
    const key = `${tenant}\u0000${id}`;
    const hit = this.devices.get(key);
    if (hit && hit.until > Date.now()) return hit;
    const d = await this.store.getDevice(tenant, id);
    if (!d) { this.devices.delete(key); return undefined; }
    if (this.devices.size >= MAX_CACHED) this.devices.clear();
    const entry = { project: d.project, disabled: d.disabled, until: Date.now() + DEVICE_CACHE_MS };
    this.devices.set(key, entry);
    return entry;
  }

  /** Registers the device (and its project when missing); a concurrent registration is fine. */
  private async provision(tenant: string, project: string, device: string): Promise<{ project: string; disabled: boolean }> {
    if (!(await this.store.getProject(tenant, project))) {
      await this.store.createProject({ tenant, name: project, createdAt: Date.now() }).catch((err) => {
        if (!(isFluxgateError(err) && err.code === 'PROJECT_EXISTS')) throw err;
      });
    }
    // The device gets a token nobody knows: it publishes through the bridge; rotate the token to let it connect itself.
    await this.store.createDevice({ tenant, id: device, project, tokenHash: hashToken(generateToken('fgd_')), disabled: false, createdAt: Date.now() }).catch((err) => {
      if (!(isFluxgateError(err) && err.code === 'DEVICE_EXISTS')) throw err;
    });
    const d = await this.store.getDevice(tenant, device);
    if (!d) throw new FluxgateError('INTERNAL', `device ${device} was registered but cannot be read back`);
    const entry = { project: d.project, disabled: d.disabled, until: Date.now() + DEVICE_CACHE_MS };
    this.devices.set(`${tenant}\u0000${device}`, entry);
    return entry;
  }
}
