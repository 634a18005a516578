/**
 * @module The template registry of a node: the topic templates in force and what a topic
 * under them may do. Two sources:
 * - configuration (`templates` in the config file): platform templates. They may capture
 *   `{tenant}`, fix a tenant, or leave the tenant to the connection;
 * - REST (/api/v1/templates, ../api/rest/templates.ts): templates of one tenant, stored in the
 *   Store as objects of kind `template` under that tenant. They map into their tenant only: the
 *   tenant is fixed to the owner, and a pattern capturing `{tenant}` is refused over REST for
 *   every caller, the platform admin too (such layouts are the operator's: configuration).
 *
 * Matching order for a caller of tenant T: T's REST templates (by id), then the platform
 * templates in configuration order; the first that fits wins. Without a caller (a bridge of the
 * platform) only the platform templates apply.
 *
 * Who may publish what (`resolve` marks the refusals, the caller counts them with `refuse`):
 * the topic's tenant (captured, fixed, else the caller's) must be the caller's; a device
 * connection may publish only for itself (device in the topic = its id, project = its project).
 * A tenant-level gateway credential (the caller without a device) may publish for any device of
 * its tenant: `admitDevice` then checks that the device exists and is enabled, registers an
 * unknown device when the template says `autoProvision` (with a random token nobody is shown:
 * rotate it over REST to let the device connect itself; its project is created when missing,
 * `default` when the topic and template name none), and refuses it otherwise. A device known
 * in another project than the topic names is refused (`project_mismatch`). Refusals are
 * counted in `fluxgate_template_refused_total{tenant,reason}`, provisioning in
 * `fluxgate_template_provisioned_total{tenant}`.
 *
 * Caches: templates are compiled once per change. REST changes made on this node apply at once;
 * other nodes of a cluster re-read the store every `refreshMs` (default 5 s). Device lookups are
 * cached per (tenant, device): known devices for DEVICE_TTL_MS (30 s, like device
 * authentication; `forgetDevice` drops one at once when it is disabled or deleted on this
 * node), unknown ones for MISSING_TTL_MS (2 s), so a flood for an unknown device costs one store
 * read every 2 s, and one created meanwhile is taken within 2 s. Concurrent lookups of one device
 * share one store call, and its messages keep their order.
 */
import type { Counter } from 'prom-client';
import type { MessageKind } from '../core/envelope.js';
import { FluxgateError, isFluxgateError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { generateToken, hashToken } from '../core/ids.js';
import { counterOf, type Metrics } from '../observability/metrics.js';
import type { Store, StoredObject } from '../stores/store.js';
import { DeviceCreationBatcher } from './provision-batch.js';
import { compileTemplate, matchFirst, templateProblems, type CompiledTemplate, type TopicTemplate } from './template.js';

/** Object kind of REST templates in the Store. */
export const TEMPLATE_OBJECT_KIND = 'template';
/** Templates one tenant may keep over REST (each message is matched against its list). */
export const MAX_TENANT_TEMPLATES = 100;
export const DEFAULT_REFRESH_MS = 5_000;
export const DEVICE_TTL_MS = 30_000;
export const MISSING_TTL_MS = 2_000;
const MAX_CACHED_DEVICES = 200_000;
const MAX_CACHED_TOPICS = 200_000;

/** Why a templated publish was refused (the `reason` label of the refusal counter). */
export type RefusalReason =
  | 'other_tenant' | 'no_tenant' | 'other_device' | 'project_mismatch'
  | 'unknown_device' | 'device_disabled' | 'unknown_tenant' | 'quota_devices';

/** Who publishes: a tenant-level credential (gateway, bridge) or one device (`device` set). */
export interface TemplateCaller { tenant: string; device?: string; project?: string }

/** What a topic under a template stands for. */
export interface TemplateTarget {
  tenant: string;
  /** From the topic or the template; undefined: the device's registered project. */
  project?: string;
  device: string;
  kind: MessageKind;
  template: TopicTemplate;
  /** Set when the caller may not publish this topic: refuse and count it (`refuse`). */
  refused?: RefusalReason;
}

/** The outcome for a device under a template; `project` is where its messages go. */
export type DeviceAdmission =
  | { outcome: 'known' | 'provisioned'; project: string }
  | { outcome: 'refused'; reason: RefusalReason };

/** A template as the REST API shows it. */
export interface TemplateView extends TopicTemplate {
  /** `config`: platform template from the configuration file (read-only); `rest`: the tenant's own. */
  source: 'config' | 'rest';
  updatedAt?: number;
}

export interface TemplateRegistryOptions {
  store: Pick<Store, 'listObjects' | 'getObject' | 'putObject' | 'deleteObject' | 'getDevice' | 'createDevices' | 'getProject' | 'createProject'>;
  /** Platform templates from configuration, in matching order. */
  config?: readonly TopicTemplate[];
  metrics?: Metrics;
  logger?: Logger;
  /** The tenant's device quota (0 = unlimited); auto-provisioning past it is refused with reason quota_devices. */
  maxDevices?: (tenant: string) => number;
  /** Told when auto-provisioning was refused by the device quota (counted with the other quota refusals). */
  onDeviceQuota?: (tenant: string) => void;
  /** How often REST templates are re-read from the store (changes made on other nodes). */
  refreshMs?: number;
}

type DeviceEntry = { until: number; project?: string; disabled?: boolean; missing?: boolean; provisioned?: boolean; known?: DeviceAdmission };

/** Checks configuration templates: every problem, named `templates[i].field`; ids unique. */
export function configTemplateProblems(list: readonly TopicTemplate[]): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  list.forEach((t, i) => {
    for (const p of templateProblems(t)) problems.push(`templates[${i}].${p}`);
    if (ids.has(t.id)) problems.push(`templates[${i}].id: ${JSON.stringify(t.id)} is used twice; ids are unique in the file`);
    ids.add(t.id);
  });
  return problems;
}

/** Problems of a template posted over REST by (or for) `tenant`, beyond templateProblems. */
export function restTemplateProblems(t: TopicTemplate, tenant: string): string[] {
  const problems = templateProblems(t);
  if (typeof t.pattern === 'string' && t.pattern.split('/').includes('{tenant}')) {
    problems.push('pattern: {tenant} may only be captured by platform templates in the configuration file; a template over REST maps into its own tenant');
  }
  if (t.tenant !== undefined && t.tenant !== tenant) problems.push(`tenant: a template of tenant ${tenant} maps into ${tenant} only; leave tenant unset`);
  return problems;
}

export class TemplateRegistry {
  /** Bumped on every change of the templates in force: callers that cache a resolution compare it. */
  version = 0;
  private platform: CompiledTemplate[];
  private byTenant = new Map<string, CompiledTemplate[]>();
  private restRaw = new Map<string, StoredObject[]>();
  /** Device checks by tenant, then device id. */
  private readonly devices = new Map<string, Map<string, DeviceEntry>>();
  private cachedDevices = 0;
  /** resolve() answers by caller and topic (null: no template fits); emptied whenever the templates change. Shared: never mutate. */
  private readonly resolved = new Map<string, Map<string, TemplateTarget | null>>();
  private resolvedCount = 0;
  private readonly lookups = new Map<string, Promise<DeviceEntry>>();
  private readonly provisions = new Map<string, Promise<DeviceEntry | 'unknown_tenant' | 'quota_devices'>>();
  private readonly creations: DeviceCreationBatcher;
  private readonly refused: Counter<'tenant' | 'reason'> | undefined;
  private readonly provisioned: Counter<'tenant'> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly opts: TemplateRegistryOptions) {
    const problems = configTemplateProblems(opts.config ?? []);
    if (problems.length) {
      throw new FluxgateError('CONFIG_INVALID', `configuration has ${problems.length} problem(s) in templates:\n  - ${problems.join('\n  - ')}`, { details: { problems } });
    }
    this.platform = (opts.config ?? []).map((t) => compileTemplate(t));
    this.creations = new DeviceCreationBatcher(opts.store, (tenant) => opts.maxDevices?.(tenant) ?? 0);
    const registry = opts.metrics?.registry;
    this.refused = registry && counterOf(registry, 'fluxgate_template_refused_total', 'Publishes under a topic template refused, by tenant of the publisher and reason (other_tenant, no_tenant, other_device, project_mismatch, unknown_device, device_disabled, unknown_tenant, quota_devices).', ['tenant', 'reason'] as const);
    this.provisioned = registry && counterOf(registry, 'fluxgate_template_provisioned_total', 'Devices registered automatically on their first publish under a template with autoProvision.', ['tenant'] as const);
  }

  /** Loads the REST templates and starts re-reading them every refreshMs. */
  async open(): Promise<void> {
    await this.refresh();
    const every = this.opts.refreshMs ?? DEFAULT_REFRESH_MS;
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.opts.logger?.warn({ err }, 'topic templates: re-reading the store failed; the templates in force stay until the next try'));
    }, every);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Re-reads every tenant's REST templates; the version changes only when something did. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const all = await this.opts.store.listObjects(TEMPLATE_OBJECT_KIND);
        const next = new Map<string, StoredObject[]>();
        for (const o of all) {
          let list = next.get(o.tenant);
          if (!list) next.set(o.tenant, (list = []));
          list.push(o);
        }
        const tenants = new Set([...next.keys(), ...this.restRaw.keys()]);
        for (const tenant of tenants) {
          const a = this.restRaw.get(tenant) ?? [];
          const b = next.get(tenant) ?? [];
          if (a.length !== b.length || a.some((o, i) => o.id !== b[i].id || o.updatedAt !== b[i].updatedAt || JSON.stringify(o.body) !== JSON.stringify(b[i].body))) this.setTenant(tenant, b);
        }
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private setTenant(tenant: string, objects: StoredObject[]): void {
    const compiled: CompiledTemplate[] = [];
    for (const o of objects) {
      const t = { ...(o.body as TopicTemplate), id: o.id, tenant };
      try {
        compiled.push(compileTemplate(t));
      } catch (err) {
        // Only valid templates are stored; one written by a newer version with rules this one lacks is skipped, said once per change.
        this.opts.logger?.warn({ err, tenant, id: o.id }, 'topic template in the store is not valid here; it is skipped');
      }
    }
    if (objects.length) {
      this.restRaw.set(tenant, objects);
      this.byTenant.set(tenant, compiled);
    } else {
      this.restRaw.delete(tenant);
      this.byTenant.delete(tenant);
    }
    this.resolved.clear();
    this.resolvedCount = 0;
    this.version++;
  }

  /**
   * What `topic` stands for under the templates `caller` may use; undefined when none fits.
   * A fitting topic the caller may not publish comes back with `refused` set. Answers are
   * cached and shared: do not change the object.
   */
  resolve(topic: string, caller?: TemplateCaller): TemplateTarget | undefined {
    // A gateway publishing for thousands of devices outgrows the broker's per-connection route
    // cache; this one, per caller and topic, keeps a repeated topic at one Map lookup.
    const who = caller ? (caller.device === undefined ? caller.tenant : `${caller.tenant}\u0000${caller.device}\u0000${caller.project ?? ''}`) : '';
    let byTopic = this.resolved.get(who);
    const hit = byTopic?.get(topic);
    if (hit !== undefined) return hit ?? undefined;
    const target = this.resolveNow(topic, caller);
    if (++this.resolvedCount > MAX_CACHED_TOPICS) {
      this.resolved.clear();
      this.resolvedCount = 1;
      byTopic = undefined;
    }
    if (!byTopic) this.resolved.set(who, (byTopic = new Map()));
    byTopic.set(topic, target ?? null);
    return target;
  }

  private resolveNow(topic: string, caller?: TemplateCaller): TemplateTarget | undefined {
    const own = caller ? this.byTenant.get(caller.tenant) : undefined;
    const m = (own && matchFirst(own, topic)) ?? matchFirst(this.platform, topic);
    if (!m) return undefined;
    const tenant = m.tenant ?? caller?.tenant;
    const target: TemplateTarget = { tenant: tenant ?? '', project: m.project, device: m.device, kind: m.kind, template: m.template };
    if (tenant === undefined) target.refused = 'no_tenant';
    else if (caller && tenant !== caller.tenant) target.refused = 'other_tenant';
    else if (caller?.device !== undefined && m.device !== caller.device) target.refused = 'other_device';
    else if (caller?.device !== undefined && caller.project !== undefined && m.project !== undefined && m.project !== caller.project) target.refused = 'project_mismatch';
    return target;
  }

  /** Counts a refusal under the publisher's tenant. */
  refuse(tenant: string, reason: RefusalReason): void {
    this.refused?.labels(tenant, reason).inc();
  }

  /**
   * The admission of a target's device when the cache knows it (no store call), else undefined:
   * then call `admitDevice`. Refusals are counted here.
   */
  admitCached(target: TemplateTarget): DeviceAdmission | undefined {
    const e = this.devices.get(target.tenant)?.get(target.device);
    if (!e || e.until < Date.now()) return undefined;
    if (e.missing) return target.template.autoProvision ? undefined : this.refusal(target.tenant, 'unknown_device');
    return this.decide(target, e);
  }

  /**
   * Makes sure the device of a target may send: known (and enabled, in the project the topic
   * names) → known; unknown under an autoProvision template → registered; else refused
   * (counted). Rejects only when the store fails (STORE_UNAVAILABLE: retry later).
   */
  async admitDevice(target: TemplateTarget): Promise<DeviceAdmission> {
    if (target.refused) {
      this.refuse(target.tenant, target.refused);
      return { outcome: 'refused', reason: target.refused };
    }
    const cached = this.admitCached(target);
    if (cached) return cached;
    let e = this.devices.get(target.tenant)?.get(target.device);
    if (!e || e.until < Date.now()) e = await this.lookup(target.tenant, target.device);
    if (!e.missing) return this.decide(target, e);
    if (!target.template.autoProvision) return this.refusal(target.tenant, 'unknown_device');
    return this.provision(target);
  }

  /** The brief form of admitDevice: 'known' | 'provisioned' | 'refused' (counted). */
  async ensureDevice(tenant: string, project: string | undefined, device: string, template: TopicTemplate): Promise<'known' | 'provisioned' | 'refused'> {
    return (await this.admitDevice({ tenant, project, device, kind: template.kind ?? 'telemetry', template })).outcome;
  }

  /** A device was disabled, deleted or moved on this node: its cached state goes at once. */
  forgetDevice(tenant: string, device: string): void {
    this.devices.get(tenant)?.delete(device);
  }

  private decide(target: TemplateTarget, e: DeviceEntry): DeviceAdmission {
    if (e.disabled) return this.refusal(target.tenant, 'device_disabled');
    if (target.project !== undefined && target.project !== e.project) return this.refusal(target.tenant, 'project_mismatch');
    // One answer object per cache entry: the hot path allocates nothing.
    return (e.known ??= { outcome: 'known', project: e.project! });
  }

  private refusal(tenant: string, reason: RefusalReason): DeviceAdmission {
    this.refuse(tenant, reason);
    return { outcome: 'refused', reason };
  }

  /** One store read per device at a time; the answer is cached. */
  private lookup(tenant: string, device: string): Promise<DeviceEntry> {
    const k = key(tenant, device);
    let p = this.lookups.get(k);
    if (!p) {
      p = this.opts.store.getDevice(tenant, device).then((d) => {
        const now = Date.now();
        const e: DeviceEntry = d ? { until: now + DEVICE_TTL_MS, project: d.project, disabled: d.disabled } : { until: now + MISSING_TTL_MS, missing: true };
        this.remember(tenant, device, e);
        return e;
      }).finally(() => this.lookups.delete(k));
      this.lookups.set(k, p);
    }
    return p;
  }

  private remember(tenant: string, device: string, e: DeviceEntry): void {
    if (++this.cachedDevices > MAX_CACHED_DEVICES) {
      this.devices.clear();
      this.cachedDevices = 1;
    }
    let byDevice = this.devices.get(tenant);
    if (!byDevice) this.devices.set(tenant, (byDevice = new Map()));
    byDevice.set(device, e);
  }

  /** Registers an unknown device (and its project when missing); a device created meanwhile elsewhere is taken as known. */
  private provision(target: TemplateTarget): Promise<DeviceAdmission> {
    const k = key(target.tenant, target.device);
    let p = this.provisions.get(k);
    if (!p) {
      p = this.provisionOnce(target).finally(() => this.provisions.delete(k));
      this.provisions.set(k, p);
    }
    return p.then((e) => {
      if (e === 'unknown_tenant' || e === 'quota_devices') return this.refusal(target.tenant, e);
      if (e.missing) return this.refusal(target.tenant, 'unknown_device');
      const a = this.decide(target, e);
      return a.outcome === 'known' && e.provisioned ? { outcome: 'provisioned', project: a.project } : a;
    });
  }

  private async provisionOnce(target: TemplateTarget): Promise<DeviceEntry | 'unknown_tenant' | 'quota_devices'> {
    const { tenant, device } = target;
    const project = target.project ?? 'default';
    const now = Date.now();
    try {
      if (!(await this.opts.store.getProject(tenant, project))) {
        await this.opts.store.createProject({ tenant, name: project, createdAt: now }).catch((err: unknown) => {
          if (!isFluxgateError(err, 'PROJECT_EXISTS')) throw err;
        });
      }
      // createDevices counts the tenant's devices inside its transaction: the quota holds against concurrent creators.
      // Batched with the other first publishes of the moment (./provision-batch.ts), same outcomes.
      await this.creations.create({ tenant, id: device, project, tokenHash: hashToken(generateToken('fgd_')), disabled: false, createdAt: now });
      this.provisioned?.labels(tenant).inc();
      this.opts.logger?.info({ tenant, project, device, template: target.template.id }, 'device registered by topic template (autoProvision)');
      const e: DeviceEntry = { until: now + DEVICE_TTL_MS, project, disabled: false };
      this.remember(tenant, device, e);
      return { ...e, provisioned: true };
    } catch (err) {
      if (isFluxgateError(err, 'TENANT_NOT_FOUND')) return 'unknown_tenant';
      if (isFluxgateError(err, 'QUOTA_DEVICES')) {
        this.opts.onDeviceQuota?.(tenant);
        return 'quota_devices';
      }
      if (isFluxgateError(err, 'DEVICE_EXISTS')) {
        this.forgetDevice(tenant, device);
        return this.lookup(tenant, device);
      }
      throw err;
    }
  }

  // ---- REST (../api/rest/templates.ts) -------------------------------------------------

  /** The templates a tenant sees: its own (REST), then the platform templates that can map into it. */
  async list(tenant: string): Promise<TemplateView[]> {
    const own = (await this.opts.store.listObjects(TEMPLATE_OBJECT_KIND, tenant)).map((o) => restView(o));
    return [...own, ...this.platform.filter((c) => visibleTo(c.template, tenant)).map((c) => ({ ...c.template, source: 'config' as const }))];
  }

  async get(tenant: string, id: string): Promise<TemplateView | undefined> {
    const o = await this.opts.store.getObject(TEMPLATE_OBJECT_KIND, tenant, id);
    if (o) return restView(o);
    const c = this.platform.find((p) => p.template.id === id && visibleTo(p.template, tenant));
    return c && { ...c.template, source: 'config' };
  }

  /** Creates a REST template of `tenant`: TEMPLATE_INVALID with every problem, TEMPLATE_EXISTS on a used id. */
  async create(tenant: string, t: TopicTemplate): Promise<TemplateView> {
    const problems = restTemplateProblems(t, tenant);
    if (problems.length) throw new FluxgateError('TEMPLATE_INVALID', `the template has ${problems.length} problem(s): ${problems.join('; ')}`, { details: { problems } });
    if (this.platform.some((c) => c.template.id === t.id && visibleTo(c.template, tenant)) || await this.opts.store.getObject(TEMPLATE_OBJECT_KIND, tenant, t.id)) {
      throw new FluxgateError('TEMPLATE_EXISTS', `a template ${t.id} already exists in tenant ${tenant}: pick another id, or delete that one first`);
    }
    const existing = await this.opts.store.listObjects(TEMPLATE_OBJECT_KIND, tenant);
    if (existing.length >= MAX_TENANT_TEMPLATES) throw new FluxgateError('BAD_REQUEST', `tenant ${tenant} already has ${existing.length} templates, the most one tenant may keep: delete unused ones first`);
    const { id, tenant: _fixed, ...body } = t;
    const o: StoredObject = { kind: TEMPLATE_OBJECT_KIND, tenant, id, body: { ...body, tenant }, updatedAt: Date.now() };
    await this.opts.store.putObject(o);
    this.setTenant(tenant, [...existing, o].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
    return restView(o);
  }

  /** Deletes a REST template of `tenant`; false when it has none of that id. */
  async delete(tenant: string, id: string): Promise<boolean> {
    const gone = await this.opts.store.deleteObject(TEMPLATE_OBJECT_KIND, tenant, id);
    if (gone) this.setTenant(tenant, await this.opts.store.listObjects(TEMPLATE_OBJECT_KIND, tenant));
    return gone;
  }

  /** The compiled platform (configuration) template `id`, for sources that name one (bridges). */
  platformTemplate(id: string): CompiledTemplate | undefined {
    return this.platform.find((c) => c.template.id === id);
  }

  /** True when `id` is a platform template of the configuration that `tenant` sees. */
  isConfigTemplate(tenant: string, id: string): boolean {
    return this.platform.some((c) => c.template.id === id && visibleTo(c.template, tenant));
  }
}

const key = (tenant: string, device: string) => `${tenant}\u0000${device}`;

/** A platform template can map into `tenant` when it captures {tenant}, fixes that tenant, or leaves the tenant to the connection. */
function visibleTo(t: TopicTemplate, tenant: string): boolean {
  return t.tenant === undefined || t.tenant === tenant;
}

function restView(o: StoredObject): TemplateView {
  return { ...(o.body as TopicTemplate), id: o.id, tenant: o.tenant, source: 'rest', updatedAt: o.updatedAt };
}
