/** @module Shared REST schemas (TypeBox): errors, paging, times. Times are epoch ms or ISO 8601 in queries, epoch ms in answers. */
import { Type } from '@sinclair/typebox';
import { FluxgateError } from '../../core/errors.js';
import { parseDeviceTime } from '../../process/decode.js';

export const ErrorReply = Type.Object({ code: Type.String(), message: Type.String() }, { $id: 'Error' });
export const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, ErrorReply]));
export const Time = Type.String({ description: 'Epoch milliseconds or ISO 8601.' });
export const Limit = Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: 'Page size.' });
export const After = Type.String({ description: 'The `next` cursor of the previous page.' });
export const security = [{ bearer: [] }];

/** Parses a query time (ms or ISO 8601), naming the parameter when it is wrong. */
export function queryTime(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const t = parseDeviceTime(value);
  if (t === undefined) throw new FluxgateError('BAD_REQUEST', `query parameter "${name}" must be epoch milliseconds or ISO 8601, got ${JSON.stringify(value)}`);
  return t;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "1m", "15s", "1h", "1d" → ms. */
export function parseInterval(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  const ms = m ? Number(m[1]) * UNITS[m[2]] : NaN;
  if (!Number.isFinite(ms) || ms <= 0) throw new FluxgateError('BAD_REQUEST', `query parameter "interval" must look like 1m, 15s, 1h or 1d, got ${JSON.stringify(value)}`);
  return ms;
}
