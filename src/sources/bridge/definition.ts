/**
 * @module A bridge's definition: checks that go beyond the TypeBox schema (topic filter
 * syntax, the inline template, TLS files, reconnect bounds), defaults, and the view the REST
 * API shows (secrets never echoed). The schema itself is BridgeSchema in src/config/schema.ts,
 * the one configuration schema, so the file and REST take the same shape.
 */
import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { BridgeSchema, type BridgeConfig } from '../../config/schema.js';
import { templateProblems, type TopicTemplate } from '../../templates/template.js';

export type BridgeDefinition = BridgeConfig;
export type InlineTemplate = Exclude<BridgeConfig['template'], string>;

/** The client id of a bridge's persistent session. */
export function clientIdOf(def: BridgeDefinition): string {
  return def.clientId ?? `fluxgate-bridge-${def.name}`;
}

/** The URL with any password in it (`mqtt://user:secret@host`) masked, for status, logs and REST. */
export function shownUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}

/** The inline template as a TopicTemplate (id `bridge:<name>`). */
export function inlineTemplate(def: BridgeDefinition, t: InlineTemplate): TopicTemplate {
  return { id: `bridge:${def.name}`, ...t };
}

/** Problems of one MQTT topic filter (empty when valid), `$share/<group>/<filter>` included. */
export function filterProblems(filter: string): string[] {
  let f = filter;
  if (f.startsWith('$share/')) {
    const m = /^\$share\/([^/+#]+)\/(.+)$/.exec(f);
    if (!m) return ['a shared subscription is $share/<group>/<filter> with a group name free of / + #'];
    f = m[2];
  }
  if (Buffer.byteLength(f) > 65535) return ['longer than 65535 bytes'];
  if (f.includes('\u0000')) return ['contains a NUL character'];
  const levels = f.split('/');
  const problems: string[] = [];
  levels.forEach((level, i) => {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) problems.push('"#" must be a whole level and the last one');
    if (level.includes('+') && level !== '+') problems.push('"+" must be a whole level');
  });
  return problems;
}

/**
 * Every problem of a definition that passed the schema, as `field: what is wrong`.
 * `prefix` names where it came from (e.g. `bridges[0].`); `templateExists` says whether a
 * template id names a platform template of the node's template registry.
 */
export function definitionProblems(def: BridgeDefinition, prefix: string, templateExists: (id: string) => boolean): string[] {
  const problems: string[] = [];
  def.topics.forEach((t, i) => {
    for (const p of filterProblems(t)) problems.push(`${prefix}topics[${i}] ${JSON.stringify(t)}: ${p}`);
  });
  if (typeof def.template === 'string') {
    if (!templateExists(def.template)) problems.push(`${prefix}template: no platform topic template ${JSON.stringify(def.template)} in the configuration (\`templates\`); bridges name configuration templates or give one inline`);
  } else {
    for (const p of templateProblems(inlineTemplate(def, def.template))) problems.push(`${prefix}template.${p}`);
    if (def.template.pattern.includes('{') && !def.template.pattern.includes('{tenant}') && def.template.tenant === undefined) {
      problems.push(`${prefix}template.tenant: the pattern has no {tenant}: name the tenant the messages belong to`);
    }
  }
  if (def.reconnect.initialMs > def.reconnect.maxMs) problems.push(`${prefix}reconnect.initialMs: ${def.reconnect.initialMs} is above reconnect.maxMs ${def.reconnect.maxMs}`);
  const tls = def.tls;
  if (tls) {
    for (const f of ['caFile', 'certFile', 'keyFile'] as const) {
      const file = tls[f];
      if (file === undefined) continue;
      try { readFileSync(file); } catch (err) { problems.push(`${prefix}tls.${f}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`); }
    }
    if ((tls.cert || tls.certFile) && !(tls.key || tls.keyFile)) problems.push(`${prefix}tls.key: a client certificate needs its key (tls.key or tls.keyFile)`);
  }
  return problems;
}

/** Fills defaults into a parsed body (REST); the caller validates it against BridgeSchema. */
export function withDefaults(body: unknown): BridgeDefinition {
  return Value.Default(BridgeSchema, structuredClone(body)) as BridgeDefinition;
}

/** Schema problems as `field: message` (REST answers name every field at once). */
export function schemaProblems(def: unknown): string[] {
  const out: string[] = [];
  for (const e of Value.Errors(BridgeSchema, def)) {
    const field = e.path.split('/').filter(Boolean).join('.') || '(body)';
    out.push(`${field}: ${e.message}`);
  }
  // A union failing reports its branches too; keep the first problem per field.
  const seen = new Set<string>();
  return out.filter((p) => { const f = p.split(':')[0]; if (seen.has(f)) return false; seen.add(f); return true; });
}

/** What the REST API shows: the definition without password and client key. */
export function publicView(def: BridgeDefinition): Record<string, unknown> {
  const { password, tls, ...rest } = def;
  const view: Record<string, unknown> = { ...rest, url: shownUrl(def.url), clientId: clientIdOf(def), hasPassword: password !== undefined || shownUrl(def.url) !== def.url };
  if (tls) {
    const { key, ...tlsRest } = tls;
    view.tls = { ...tlsRest, ...(key !== undefined ? { hasKey: true } : {}) };
  }
  return view;
}
