/**
 * @module Topic templates: a topic layout such as
 * `mtic/msg/client/realtime/{tenant}/{project}/{device}/#` mapped to tenant, project,
 * device and kind. Pure parsing and matching; where templates come from (configuration,
 * REST) and who may publish under them live in ./registry.ts and the sources.
 *
 * A pattern is MQTT topic levels separated by `/`. A level is a literal, `+` (any one
 * level), a placeholder `{tenant}`, `{project}`, `{device}` or `{kind}` (one level,
 * captured), or `#` as the last level (any rest, possibly empty). Placeholders the pattern
 * lacks come from the template's fixed `tenant` / `project` / `kind`, else from the
 * connection (its tenant, the device's project). `{kind}` accepts `telemetry`, `events`,
 * `event`, `snapshot` and `attributes`; `kinds` may name more words. Hand-written: this is
 * the product's own mapping, no library does it.
 */
import type { MessageKind } from '../core/envelope.js';
import { MESSAGE_KINDS } from '../core/envelope.js';

/** A template as configured or posted over REST. */
export interface TopicTemplate {
  /** Unique name within its tenant (configuration: unique in the file). */
  id: string;
  pattern: string;
  /** Fixed tenant when the pattern has no `{tenant}`; unset: the publishing credential's tenant. */
  tenant?: string;
  /** Fixed project when the pattern has no `{project}` (else the device's own project). */
  project?: string;
  /** Kind when the pattern has no `{kind}` level (default `telemetry`). */
  kind?: MessageKind;
  /** Extra words a `{kind}` level may take, e.g. `{ "rt": "telemetry", "evt": "event" }`. */
  kinds?: Record<string, MessageKind>;
  /** Unknown devices under this template are registered on first publish (else refused and counted). */
  autoProvision?: boolean;
}

export type Placeholder = 'tenant' | 'project' | 'device' | 'kind';
type Level = { literal: string } | { capture: Placeholder } | { any: true } | { rest: true };

/** A template checked and compiled for matching. */
export interface CompiledTemplate {
  template: TopicTemplate;
  levels: Level[];
  has: Set<Placeholder>;
}

/** What a topic under a template stands for; absent fields come from the connection. */
export interface TopicMatch {
  template: TopicTemplate;
  tenant?: string;
  project?: string;
  device: string;
  kind: MessageKind;
}

const DEFAULT_KIND_WORDS: Record<string, MessageKind> = { telemetry: 'telemetry', events: 'event', event: 'event', snapshot: 'snapshot', attributes: 'attributes' };
const PLACEHOLDERS = new Set<string>(['tenant', 'project', 'device', 'kind']);
/** Identifiers a placeholder may capture: the same alphabet as device ids and tenant names. */
const ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Every problem of a template, as `field: what is wrong` sentences (empty when valid). */
export function templateProblems(t: TopicTemplate): string[] {
  const problems: string[] = [];
  if (typeof t.id !== 'string' || !ID.test(t.id)) problems.push(`id: ${JSON.stringify(t.id)} must be 1–128 letters, digits, _ . : -`);
  if (typeof t.pattern !== 'string' || t.pattern === '') {
    problems.push('pattern: must be a non-empty topic pattern such as "mtic/msg/client/realtime/{tenant}/{project}/{device}/#"');
    return problems;
  }
  const seen = new Set<string>();
  const parts = t.pattern.split('/');
  parts.forEach((p, i) => {
    const m = /^\{(.*)\}$/.exec(p);
    if (m) {
      if (!PLACEHOLDERS.has(m[1])) problems.push(`pattern: level ${i + 1} "${p}" is not one of {tenant} {project} {device} {kind}`);
      else if (seen.has(m[1])) problems.push(`pattern: {${m[1]}} appears twice`);
      seen.add(m[1]);
    } else if (p === '#') {
      if (i !== parts.length - 1) problems.push('pattern: "#" must be the last level');
    } else if (p !== '+' && (p.includes('+') || p.includes('#') || p.includes('{') || p.includes('}'))) {
      problems.push(`pattern: level ${i + 1} "${p}" mixes a wildcard or brace with text; a level is a word, +, #, or one {placeholder}`);
    }
  });
  if (parts[0] === '' || parts[0].startsWith('$')) problems.push('pattern: must not start with "/" or "$"');
  if (parts[0] === 'devices' || t.pattern.startsWith('v1/devices/me')) problems.push('pattern: topics under devices/… and v1/devices/me/… are Fluxgate\'s native layout; pick a layout of your own');
  if (!seen.has('device')) problems.push('pattern: must capture {device}');
  if (seen.has('tenant') && t.tenant !== undefined) problems.push('tenant: the pattern captures {tenant}; leave tenant unset');
  if (seen.has('project') && t.project !== undefined) problems.push('project: the pattern captures {project}; leave project unset');
  if (seen.has('kind') && t.kind !== undefined) problems.push('kind: the pattern captures {kind}; leave kind unset');
  if (t.kind !== undefined && !MESSAGE_KINDS.includes(t.kind)) problems.push(`kind: ${JSON.stringify(t.kind)} must be one of ${MESSAGE_KINDS.join(', ')}`);
  for (const [word, kind] of Object.entries(t.kinds ?? {})) {
    if (!MESSAGE_KINDS.includes(kind)) problems.push(`kinds.${word}: ${JSON.stringify(kind)} must be one of ${MESSAGE_KINDS.join(', ')}`);
  }
  if (t.tenant !== undefined && !ID.test(t.tenant)) problems.push(`tenant: ${JSON.stringify(t.tenant)} is not a tenant id`);
  if (t.project !== undefined && !ID.test(t.project)) problems.push(`project: ${JSON.stringify(t.project)} is not a project name`);
  return problems;
}

/** Compiles a valid template; throws an Error listing the problems of an invalid one. */
export function compileTemplate(t: TopicTemplate): CompiledTemplate {
  const problems = templateProblems(t);
  if (problems.length) throw new Error(`topic template ${JSON.stringify(t.id)}: ${problems.join('; ')}`);
  const has = new Set<Placeholder>();
  const levels: Level[] = t.pattern.split('/').map((p) => {
    const m = /^\{(.*)\}$/.exec(p);
    if (m) {
      has.add(m[1] as Placeholder);
      return { capture: m[1] as Placeholder };
    }
    if (p === '+') return { any: true };
    if (p === '#') return { rest: true };
    return { literal: p };
  });
  return { template: t, levels, has };
}

/** Matches a topic name against a compiled template; undefined when it does not fit. */
export function matchTemplate(c: CompiledTemplate, topic: string): TopicMatch | undefined {
  if (topic.startsWith('$')) return undefined;
  const parts = topic.split('/');
  const captured: Partial<Record<Placeholder, string>> = {};
  let i = 0;
  for (; i < c.levels.length; i++) {
    const level = c.levels[i];
    if ('rest' in level) break;
    if (i >= parts.length) return undefined;
    const part = parts[i];
    if ('literal' in level) {
      if (level.literal !== part) return undefined;
    } else if ('capture' in level) {
      if (!ID.test(part)) return undefined;
      captured[level.capture] = part;
    }
  }
  if (i === c.levels.length && parts.length !== c.levels.length) return undefined;
  const t = c.template;
  let kind: MessageKind = t.kind ?? 'telemetry';
  if (captured.kind !== undefined) {
    const k = t.kinds?.[captured.kind] ?? DEFAULT_KIND_WORDS[captured.kind];
    if (!k) return undefined;
    kind = k;
  }
  return {
    template: t,
    tenant: captured.tenant ?? t.tenant,
    project: captured.project ?? t.project,
    device: captured.device!,
    kind,
  };
}

/** First template of `list` whose pattern fits `topic` (list order decides between overlapping templates). */
export function matchFirst(list: readonly CompiledTemplate[], topic: string): TopicMatch | undefined {
  for (const c of list) {
    const m = matchTemplate(c, topic);
    if (m) return m;
  }
  return undefined;
}
