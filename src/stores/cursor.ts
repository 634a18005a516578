/**
 * @module Paging cursors shared by every store backend: the `next` value of a page is the
 * sort key of its last row, JSON in base64url, opaque to clients. A cursor that does not
 * decode to the expected shape is BAD_REQUEST, never a wrong page.
 */
import { FluxgateError } from '../core/errors.js';

export function encodeCursor(parts: Array<string | number>): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

/** Decodes a cursor made by `encodeCursor` with the given shape ('n' integer, 's' string). */
export function decodeCursor(cursor: string, shape: string): Array<string | number> {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parts = undefined;
  }
  const ok = Array.isArray(parts) && parts.length === shape.length &&
    parts.every((p, i) => (shape[i] === 'n' ? typeof p === 'number' && Number.isSafeInteger(p) : typeof p === 'string'));
  if (!ok) throw new FluxgateError('BAD_REQUEST', 'invalid paging cursor (pass back the `next` value of the previous page unchanged)');
  return parts as Array<string | number>;
}
