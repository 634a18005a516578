/**
 * @module Per-project processing settings: classification by a payload field, same-value
 * suppression and whether a snapshot replaces latest state. Kept in the store's generic objects
 * (kind `project-settings`, id = project name), changed over REST (src/api/rest/projects.ts),
 * and read by processing through a small cache: a change applies to messages processed at most
 * `ttlMs` later (5 s), on every node, with no cross-node signalling.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { MessageKind } from '../core/envelope.js';
import type { ObjectStore } from '../stores/store.js';

export const PROJECT_SETTINGS_KIND = 'project-settings';

const Kind = Type.Union([Type.Literal('telemetry'), Type.Literal('event'), Type.Literal('snapshot'), Type.Literal('attributes')]);

export const ProjectSettingsSchema = Type.Object({
  kindField: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Top-level payload field that says what a message is (e.g. "type"); its value, mapped by kindValues or named as a kind (telemetry, event/events, snapshot, attributes), overrides the topic\'s kind. The field itself is not stored as a point.' })),
  kindValues: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Kind, { description: 'Payload values of kindField → kind, e.g. { "change": "event", "full": "snapshot" }.' })),
  suppressSameValueSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 * 365, description: 'A point whose value equals the key\'s last stored value less than this many seconds (device time) later is not stored as history; it still refreshes last seen and is counted in fluxgate_suppressed_total. Events are never suppressed. 0 or absent: off.' })),
  snapshotReplaces: Type.Optional(Type.Boolean({ description: 'true: a snapshot replaces latest state, so keys it lacks (and not newer than it) leave GET …/latest; false (default): they are kept.' })),
}, { additionalProperties: false });

export type ProjectSettings = Static<typeof ProjectSettingsSchema>;

const KIND_NAMES: Record<string, MessageKind> = { telemetry: 'telemetry', event: 'event', events: 'event', snapshot: 'snapshot', attributes: 'attributes' };

/** The kind a payload field names under these settings, or undefined (then the topic's kind stands). */
export function kindFromField(settings: ProjectSettings, value: unknown): MessageKind | undefined {
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') return undefined;
  const v = String(value);
  return settings.kindValues?.[v] ?? KIND_NAMES[v];
}

/** Settings per (tenant, project), refreshed from the store every `ttlMs`. */
export class ProjectSettingsCache {
  private readonly entries = new Map<string, { at: number; settings: ProjectSettings }>();

  constructor(private readonly store: Pick<ObjectStore, 'getObject'>, private readonly ttlMs = 5_000, private readonly maxEntries = 100_000) {}

  /** Makes the settings of these projects available to `get` (one store read per stale project). */
  async load(projects: Iterable<[string, string]>, now = Date.now()): Promise<void> {
    const stale = new Map<string, [string, string]>();
    for (const [tenant, project] of projects) {
      const k = `${tenant}\u0000${project}`;
      const e = this.entries.get(k);
      if (!e || now - e.at > this.ttlMs) stale.set(k, [tenant, project]);
    }
    await Promise.all([...stale].map(async ([k, [tenant, project]]) => {
      const o = await this.store.getObject(PROJECT_SETTINGS_KIND, tenant, project);
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      this.entries.set(k, { at: now, settings: (o?.body ?? {}) as ProjectSettings });
    }));
  }

  /** Settings loaded by `load`; none ({}) when never loaded. */
  get(tenant: string, project: string): ProjectSettings {
    return this.entries.get(`${tenant}\u0000${project}`)?.settings ?? {};
  }
}
