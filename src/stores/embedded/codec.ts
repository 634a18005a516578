/**
 * @module How values and paging cursors look inside the embedded store. Values keep their JS
 * type: numbers and strings are stored natively, booleans as a one-byte BLOB (SQLite has no
 * boolean, and an integer 0/1 would read back as a number). Cursors are opaque base64url
 * strings; a cursor that does not decode is a BAD_REQUEST, never a crash.
 */
import type { Value } from '../store.js';

const TRUE = Buffer.from([1]);
const FALSE = Buffer.from([0]);

export type SqlValue = number | string | Buffer;

export function encodeValue(v: Value): SqlValue {
  if (typeof v === 'boolean') return v ? TRUE : FALSE;
  return v;
}

export function decodeValue(v: unknown): Value {
  if (typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return v[0] === 1;
  throw new Error(`embedded store: unexpected stored value ${String(v)}`);
}

export { encodeCursor, decodeCursor } from '../cursor.js';
