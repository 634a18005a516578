/**
 * @module The messages between the embedded store's main-thread object and its worker, and
 * how errors cross that boundary: a FluxgateError arrives with the same code, message and
 * details; a SQLite failure becomes STORE_UNAVAILABLE (retryable); anything else INTERNAL.
 * A write batch travels in the shape of ./wire.ts.
 */
import { ERRORS, FluxgateError, type ErrorCode } from '../../core/errors.js';
import type { StoreMemory } from './engine.js';

export type Op =
  | 'writeBatch' | 'latest' | 'range' | 'aggregate' | 'messages' | 'deadLetters' | 'deleteDeadLetters' | 'deleteBefore'
  | 'createDevice' | 'createDevices' | 'getDevice' | 'listDevices' | 'updateDevice' | 'deleteDevice' | 'findDeviceByTokenHash'
  | 'createTenant' | 'getTenant' | 'listTenants' | 'updateTenant' | 'createProject' | 'getProject' | 'listProjects'
  | 'createApiKey' | 'listApiKeys' | 'revokeApiKey' | 'findApiKeyByHash'
  | 'putObject' | 'getObject' | 'listObjects' | 'deleteObject'
  | 'rollups' | 'deleteRollupsBefore'
  | 'deviceSeen' | 'recentMessageIds' | 'forgetMessageIds'
  | 'compact' | 'close';

export interface Request { id: number; op: Op; args: unknown[] }

export interface WireError { code?: string; message: string; name?: string; sqlite?: string; details?: Record<string, unknown> }

export type Response = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

/** Unsolicited news from the worker. */
export type WorkerEvent =
  | { event: 'ready' }
  | { event: 'open-failed'; error: WireError }
  | { event: 'compacted'; rows: number; seconds: number }
  | { event: 'compact-failed'; error: WireError }
  /** Every few seconds: the thread's V8 heap and what its engine holds (./engine.ts StoreMemory). */
  | { event: 'memory'; heapUsedBytes: number; heapTotalBytes: number; heapLimitBytes: number; externalBytes: number; mallocedBytes: number; store: StoreMemory };

export function toWireError(err: unknown): WireError {
  if (err instanceof FluxgateError) return { code: err.code, message: err.message, details: err.details };
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as Error & { code?: unknown }).code;
  const sqlite = typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
  return { message: e.message, name: e.name, sqlite };
}

/** `call` names the call that failed (e.g. "getDevice on the reader"), for the operator's log. */
export function fromWireError(w: WireError, call?: string): FluxgateError {
  if (w.code !== undefined && w.code in ERRORS) return new FluxgateError(w.code as ErrorCode, w.message, { details: w.details });
  const cause = Object.assign(new Error(w.message), { name: w.name ?? 'Error' });
  const where = call ? `embedded store (${call})` : 'embedded store';
  if (w.sqlite) return new FluxgateError('STORE_UNAVAILABLE', `${where}: ${w.message}`, { cause, details: { sqlite: w.sqlite } });
  return new FluxgateError('INTERNAL', `${where}: ${w.message}`, { cause });
}
