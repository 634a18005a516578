/**
 * @module The TypeBox shape of a topic template: the configuration file's `templates` items
 * (src/config/schema.ts) and POST /api/v1/templates bodies (src/api/rest/templates.ts). It
 * checks types only; the rules of a pattern are templateProblems' (./template.ts).
 */
import { Type } from '@sinclair/typebox';

const KindSchema = Type.Union([Type.Literal('telemetry'), Type.Literal('event'), Type.Literal('snapshot'), Type.Literal('attributes')]);

export const TopicTemplateSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128, description: 'Template id: letters, digits, _ . : - (unique in the configuration file; per tenant over REST).' }),
  pattern: Type.String({ minLength: 1, maxLength: 1024, description: 'Topic layout: levels separated by /, each a word, +, # (last), or one of {tenant} {project} {device} {kind}; must capture {device}. Example: mtic/msg/client/realtime/{tenant}/{project}/{device}/#.' }),
  tenant: Type.Optional(Type.String({ description: 'Fixed tenant when the pattern has no {tenant}; unset: the publishing credential\'s tenant. Over REST: the owner tenant.' })),
  project: Type.Optional(Type.String({ description: 'Fixed project when the pattern has no {project}; unset: the device\'s own project (`default` for devices it registers).' })),
  kind: Type.Optional(Type.Union(KindSchema.anyOf, { description: 'Kind of message when the pattern has no {kind} (default telemetry).' })),
  kinds: Type.Optional(Type.Record(Type.String(), KindSchema, { description: 'Extra words a {kind} level may take, e.g. {"rt": "telemetry"}.' })),
  autoProvision: Type.Optional(Type.Boolean({ description: 'Unknown devices are registered on their first publish (their project too, when missing); else refused and counted.' })),
}, { additionalProperties: false });
