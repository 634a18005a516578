/**
 * @module How values, cursors, names and errors look inside the PostgreSQL store. A value is
 * one of three nullable columns (num float8, txt text, bool boolean) so its type survives the
 * round trip and numeric aggregates read `num` only. Cursors are opaque base64url strings; one
 * that does not decode is BAD_REQUEST. Driver failures become FluxgateErrors with the driver's
 * error as `cause`: anything about reaching the server is STORE_UNAVAILABLE (retryable), data
 * the server cannot keep is BAD_REQUEST, anything else INTERNAL.
 */
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import type { Value } from '../store.js';

export interface ValueColumns { num: number | null; txt: string | null; bool: boolean | null }

export function decodeValue(r: ValueColumns): Value {
  if (r.num !== null) return r.num;
  if (r.bool !== null) return r.bool;
  return r.txt ?? '';
}

export { encodeCursor, decodeCursor } from '../cursor.js';

export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new FluxgateError('BAD_REQUEST', 'limit must be a positive integer');
  return limit;
}

/** A quoted SQL identifier; schema names are checked at construction, this only quotes. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** SQLSTATE of a server error, if the error came from the server. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Classes 08 (connection), 53 (resources), 57 (operator intervention: shutdown, cannot connect
 * now), 58 (system) and 40 (deadlock, serialization) say nothing about the request itself: a
 * retry can succeed. Errors without a SQLSTATE come from the socket or the pool (ECONNREFUSED,
 * reset, "Connection terminated", pool timeout, a pool already ended by close()).
 */
export function isUnavailable(err: unknown): boolean {
  const state = sqlState(err);
  if (state === undefined) {
    const code = (err as { code?: unknown } | null)?.code;
    return typeof code === 'string' || /connect|terminat|timeout|socket|closed|ended|pool/i.test((err as Error)?.message ?? '');
  }
  return ['08', '53', '57', '58', '40'].includes(state.slice(0, 2));
}

/**
 * Classes 22 (data exception: a NUL character in text, a number out of range), 23 (integrity)
 * and 54 (program limit: a key too long for a btree entry, about 2.7 kB) are about the data sent:
 * BAD_REQUEST, which the pipeline answers by isolating the message and dead-lettering it
 * instead of retrying the batch forever.
 */
export function isContentError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && ['22', '23', '54'].includes(state.slice(0, 2));
}

/** Connecting to PostgreSQL gives up after this long (a server that does not answer). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** A call waits this long at most for one of the pool's connections while all are busy. */
export const CHECKOUT_TIMEOUT_MS = 60_000;

/** Maps a driver error to a FluxgateError; FluxgateErrors pass through unchanged. */
export function storeError(err: unknown, what: string): FluxgateError {
  if (isFluxgateError(err)) return err;
  let message = (err as Error)?.message ?? String(err);
  // pg.Pool's words for a checkout that waited past its bound (CHECKOUT_TIMEOUT_MS).
  if (message === 'timeout exceeded when trying to connect') message = `no free connection to PostgreSQL within ${CHECKOUT_TIMEOUT_MS / 1000} s: every connection of the store's pool stayed busy (the server is slow or overloaded); the call can be retried`;
  if (isUnavailable(err)) return new FluxgateError('STORE_UNAVAILABLE', `postgres store: ${what} failed: ${message}`, { cause: err });
  if (isContentError(err)) return new FluxgateError('BAD_REQUEST', `postgres store: ${what} refused the data: ${message}`, { cause: err, details: { sqlState: sqlState(err) } });
  return new FluxgateError('INTERNAL', `postgres store: ${what} failed: ${message}`, { cause: err, details: { sqlState: sqlState(err) } });
}
