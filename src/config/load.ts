/**
 * @module Loads the configuration: defaults < JSON file < FLUXGATE_* env < --flags.
 * Validates once, reports every problem at once (naming the setting, its env and flag),
 * and returns a frozen object. The only module that reads process.env.
 */
import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema, settings, type Config, type Setting } from './schema.js';
import { FluxgateError } from '../core/errors.js';

export interface LoadInput {
  /** Parsed `--flag value` pairs (flag names without the dashes). */
  flags?: Record<string, string>;
  env?: Record<string, string | undefined>;
  /** Settings given directly (tests, embedding): applied after flags. */
  overrides?: DeepPartial<Config>;
}
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

function coerce(raw: string, schema: TSchema): unknown {
  const type = schema.type ?? (schema.anyOf ? 'string' : undefined);
  if (type === 'integer' || type === 'number') {
    const n = Number(raw);
    return raw.trim() === '' || Number.isNaN(n) ? raw : n;
  }
  if (type === 'boolean') return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : raw;
  // Lists (templates, bridges) are JSON in an environment variable or flag; what does not parse is left for validation to name.
  if (type === 'array') {
    try { return JSON.parse(raw); } catch { return raw; }
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    node[key] = typeof node[key] === 'object' && node[key] !== null ? node[key] : {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function merge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      target[k] = typeof target[k] === 'object' && target[k] !== null ? target[k] : {};
      merge(target[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else if (v !== undefined) target[k] = v;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

const describe = (s: Setting) => `${s.path.join('.')} (--${s.flag}, ${s.env})`;

export function loadConfig(input: LoadInput = {}): Readonly<Config> {
  const env = input.env ?? process.env;
  const flags = input.flags ?? {};
  const all = settings();
  const problems: string[] = [];
  const raw: Record<string, unknown> = {};

  const file = flags.config ?? env.FLUXGATE_CONFIG;
  if (file) {
    try {
      merge(raw, JSON.parse(readFileSync(file, 'utf8')));
    } catch (err) {
      problems.push(`config file ${file} (--config, FLUXGATE_CONFIG): ${(err as Error).message}`);
    }
  }
  for (const s of all) {
    const v = env[s.env];
    if (v !== undefined && v !== '') setPath(raw, s.path, coerce(v, s.schema));
  }
  const known = new Set(['config', ...all.map((s) => s.flag)]);
  for (const [flag, v] of Object.entries(flags)) {
    const s = all.find((x) => x.flag === flag);
    if (s) setPath(raw, s.path, coerce(v, s.schema));
    else if (!known.has(flag)) problems.push(`unknown flag --${flag}; \`fluxgate start --help\` lists the flags`);
  }
  if (input.overrides) merge(raw, input.overrides as Record<string, unknown>);

  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>;
  for (const e of Value.Errors(ConfigSchema, withDefaults)) {
    const path = e.path.split('/').filter(Boolean);
    const s = all.find((x) => x.path.join('.') === path.join('.'));
    const name = s ? describe(s) : path.join('.') || '(root)';
    problems.push(`${name}: ${e.message}, got ${JSON.stringify(e.value)}`);
  }
  if (problems.length > 0) {
    throw new FluxgateError('CONFIG_INVALID', `configuration has ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`, { details: { problems } });
  }
  return deepFreeze(Value.Clean(ConfigSchema, withDefaults) as Config);
}
