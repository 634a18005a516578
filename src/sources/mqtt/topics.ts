/**
 * @module MQTT topics of Fluxgate: which device topic carries which Envelope kind, what a
 * device may publish and subscribe to (its own topics only), and topic name/filter syntax.
 * Topics outside the native layout may fit a topic template (src/templates/): accept.ts asks
 * the registry once per connection and topic and remembers the answer on the cached route.
 */
import type { MessageKind } from '../../core/envelope.js';
import type { TemplateTarget } from '../../templates/index.js';

/** Who is on the other end of a connection, as authentication decided. */
export interface ClientIdentity {
  kind: 'device' | 'app';
  tenant: string;
  project: string;
  /** Device id (devices) or the application's name (apps). */
  id: string;
}

const NATIVE_KINDS: Record<string, MessageKind> = { telemetry: 'telemetry', events: 'event', snapshot: 'snapshot', attributes: 'attributes' };
const THINGSBOARD_KINDS: Record<string, MessageKind> = { 'v1/devices/me/telemetry': 'telemetry', 'v1/devices/me/attributes': 'attributes' };

/**
 * A topic template's answer for one topic, remembered on a cached route while the registry's
 * version is unchanged (`target` undefined: no template fits).
 */
export interface TemplateMemo { version: number; target: TemplateTarget | undefined }

/**
 * What a PUBLISH on `topic` by `who` is: logged as a device message, only routed, or refused.
 * A route or refusal of a non-native topic may be overridden by a topic template (accept.ts),
 * whose answer is kept in `memo`.
 */
export type PublishRoute = { action: 'log'; kind: MessageKind } | { action: 'route'; memo?: TemplateMemo } | { action: 'refuse'; memo?: TemplateMemo };

/** Fluxgate's own layouts (devices/…, v1/devices/me/…): never taken by a topic template. */
export function isNativeTopic(topic: string): boolean {
  return topic.startsWith('devices/') || topic.startsWith('v1/devices/me/');
}

export function classifyPublish(who: ClientIdentity, topic: string): PublishRoute {
  const tb = THINGSBOARD_KINDS[topic];
  if (who.kind === 'device') {
    if (tb) return { action: 'log', kind: tb };
    const prefix = `devices/${who.id}/`;
    if (!topic.startsWith(prefix)) return { action: 'refuse' };
    const rest = topic.slice(prefix.length);
    const kind = NATIVE_KINDS[rest];
    if (kind) return { action: 'log', kind };
    // devices/{id}/commands/{commandId}/reply: the command's answer, routed to whoever waits for it.
    const parts = rest.split('/');
    if (parts.length === 3 && parts[0] === 'commands' && parts[1] !== '' && parts[2] === 'reply') return { action: 'route' };
    return { action: 'refuse' };
  }
  // Applications send commands and other messages; they may not forge device data.
  if (tb) return { action: 'refuse' };
  const parts = topic.split('/');
  if (parts.length === 3 && parts[0] === 'devices' && NATIVE_KINDS[parts[2]]) return { action: 'refuse' };
  return { action: 'route' };
}

/** A device subscribes only to its own command topics; an application to anything in its tenant. */
export function maySubscribe(who: ClientIdentity, filter: string): boolean {
  if (who.kind === 'app') return true;
  const own = `devices/${who.id}/commands`;
  return filter === own || filter.startsWith(own + '/');
}

/** [MQTT-4.7.3-1] non-empty; [MQTT-4.7.1-1] no wildcards in a topic name; no NUL [MQTT-4.7.3-2]. */
export function validTopicName(topic: string): boolean {
  return topic.length > 0 && !/[+#\u0000]/.test(topic);
}

/** A parsed subscription filter: `$share/{group}/{filter}` splits into group and filter. */
export interface ParsedFilter { filter: string; group?: string }

/** Parses and validates a filter ([MQTT-4.7.1-2] `#` last and alone, [MQTT-4.7.1-3] `+` alone, [MQTT-4.8.2-1] share name). */
export function parseFilter(raw: string): ParsedFilter | undefined {
  let filter = raw;
  let group: string | undefined;
  if (raw.startsWith('$share/')) {
    const slash = raw.indexOf('/', 7);
    if (slash < 0) return undefined;
    group = raw.slice(7, slash);
    filter = raw.slice(slash + 1);
    if (group === '' || /[+#]/.test(group)) return undefined;
  }
  if (filter.length === 0 || filter.includes('\u0000')) return undefined;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return undefined;
    if (l.includes('+') && l !== '+') return undefined;
  }
  return { filter, group };
}

/** Whether a (valid, non-shared) filter matches a topic name; `$`-topics are not matched by a leading wildcard [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
