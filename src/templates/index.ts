/**
 * @module Topic templates: the folder's only public surface.
 *
 * For sources that take other topic layouts (the MQTT broker, bridges from external brokers):
 * a node has one TemplateRegistry (node.ts builds it from configuration and the store). Per
 * message:
 *   const t = registry.resolve(topic, { tenant });   // undefined: no template fits
 *   if (t?.refused) { registry.refuse(tenant, t.refused); …refuse… }
 *   const a = registry.admitCached(t) ?? await registry.admitDevice(t);
 *   if (a.outcome === 'refused') …refuse (already counted)…
 *   else envelope { tenant: t.tenant, project: a.project, device: t.device, kind: t.kind }
 * `ensureDevice(tenant, project, device, template)` is the short form answering
 * 'known' | 'provisioned' | 'refused'. Without a caller, `resolve` uses the platform
 * (configuration) templates only. Cache `resolve` per topic if you like, keyed with
 * `registry.version` (it changes whenever the templates in force do); `resolve` caches its
 * answers itself (shared objects: do not change them). `platformTemplate(id)` gives the
 * compiled configuration template of an id (bridges naming a template).
 */
export { compileTemplate, matchFirst, matchTemplate, templateProblems } from './template.js';
export type { CompiledTemplate, Placeholder, TopicMatch, TopicTemplate } from './template.js';
export {
  TemplateRegistry, TEMPLATE_OBJECT_KIND, MAX_TENANT_TEMPLATES, DEFAULT_REFRESH_MS, DEVICE_TTL_MS, MISSING_TTL_MS,
  configTemplateProblems, restTemplateProblems,
} from './registry.js';
export type { DeviceAdmission, RefusalReason, TemplateCaller, TemplateRegistryOptions, TemplateTarget, TemplateView } from './registry.js';
