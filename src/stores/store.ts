/**
 * @module The Store contract: telemetry history, latest state, raw archive, dead letters,
 * device registry and retention, every call scoped by tenant. Writes are idempotent
 * (points keyed by tenant, device, key, device time, message id), so a replay after a crash
 * stores each message once. Embedded backend: ./embedded/; server backend: ./postgres/.
 */
import type { MessageKind } from '../core/envelope.js';

export type Value = number | string | boolean;

/** One key/value of one decoded message. */
export interface TelemetryPoint {
  tenant: string;
  project: string;
  device: string;
  key: string;
  /** Device time, ms. */
  ts: number;
  value: Value;
  messageId: string;
}

/** A message as received, whatever its payload shape (raw archive). */
export interface RawMessage {
  tenant: string;
  project: string;
  device: string;
  topic: string;
  kind: MessageKind;
  /** Device time, ms. */
  ts: number;
  receiveTime: number;
  messageId: string;
  payload: Uint8Array;
}

/** A message processing could not take, kept with its reason and original bytes. */
export interface DeadLetter {
  tenant: string;
  project: string;
  device: string;
  topic: string;
  messageId: string;
  receiveTime: number;
  reason: string;
  payload: Uint8Array;
}

/** Everything one processed log batch produces; written as one unit. */
export interface WriteBatch {
  points: TelemetryPoint[];
  messages: RawMessage[];
  deadLetters: DeadLetter[];
}

export interface LatestValue { key: string; value: Value; ts: number }
export interface Page<T> { items: T[]; next?: string }
export interface RangeQuery { tenant: string; device: string; key?: string; from: number; to: number; limit: number; after?: string }
export type AggFn = 'min' | 'max' | 'avg' | 'sum' | 'count' | 'last';
export interface AggregateQuery { tenant: string; device: string; key: string; from: number; to: number; intervalMs: number; agg: AggFn }
/** One time bucket; `value` is null when the bucket holds no numeric value for min/max/avg/sum. */
export interface Bucket { ts: number; value: Value | null; count: number }
export interface StoredDeadLetter extends DeadLetter { id: string; failedAt: number }
export interface MessageQuery { tenant: string; project?: string; device?: string; from: number; to: number; limit: number; after?: string }

export interface DeviceRecord {
  tenant: string;
  id: string;
  project: string;
  tokenHash: string;
  disabled: boolean;
  createdAt: number;
}
export type DevicePatch = Partial<Pick<DeviceRecord, 'project' | 'tokenHash' | 'disabled'>>;

export interface TenantRecord { id: string; name: string; createdAt: number }
export interface ProjectRecord { tenant: string; name: string; createdAt: number }
export type ApiRole = 'admin' | 'write' | 'read';
/** An API key of one tenant; only the SHA-256 of the secret is stored (src/core/ids.ts hashToken). */
export interface ApiKeyRecord { id: string; tenant: string; role: ApiRole; name: string; keyHash: string; createdAt: number }
export type ApiKeyInfo = Omit<ApiKeyRecord, 'keyHash'>;

export interface RegistryStore {
  /** Rejects with DEVICE_EXISTS when (tenant, id) exists. */
  createDevice(device: DeviceRecord): Promise<void>;
  getDevice(tenant: string, id: string): Promise<DeviceRecord | undefined>;
  listDevices(tenant: string, limit: number, after?: string): Promise<Page<DeviceRecord>>;
  updateDevice(tenant: string, id: string, patch: DevicePatch): Promise<DeviceRecord | undefined>;
  deleteDevice(tenant: string, id: string): Promise<boolean>;
  findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | undefined>;
}

/**
 * Tenants, projects and API keys (kept apart from RegistryStore, which device-only registries
 * implement). The tenant `default` and every tenant's project `default` always exist; lists are
 * small (no paging), ordered by id or name.
 */
export interface TenancyStore {
  /** Rejects with TENANT_EXISTS; creates the tenant's `default` project with it. */
  createTenant(tenant: TenantRecord): Promise<void>;
  getTenant(id: string): Promise<TenantRecord | undefined>;
  listTenants(): Promise<TenantRecord[]>;
  /** Rejects with TENANT_NOT_FOUND or PROJECT_EXISTS. */
  createProject(project: ProjectRecord): Promise<void>;
  getProject(tenant: string, name: string): Promise<ProjectRecord | undefined>;
  listProjects(tenant: string): Promise<ProjectRecord[]>;
  /** Rejects with TENANT_NOT_FOUND; a key id or hash already in use is BAD_REQUEST. */
  createApiKey(key: ApiKeyRecord): Promise<void>;
  /** The tenant's keys without their hashes, ordered by id. */
  listApiKeys(tenant: string): Promise<ApiKeyInfo[]>;
  /** Deletes the key only if it belongs to `tenant`; false otherwise. */
  revokeApiKey(tenant: string, id: string): Promise<boolean>;
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
}

export interface Store extends RegistryStore, TenancyStore {
  open(): Promise<void>;
  close(): Promise<void>;
  /** Writes points (updating latest state: last write wins by device time), raw messages and dead letters; idempotent. */
  writeBatch(batch: WriteBatch): Promise<void>;
  latest(tenant: string, device: string): Promise<LatestValue[]>;
  /** Raw points ascending by time, paged by the opaque `next` cursor. */
  range(q: RangeQuery): Promise<Page<TelemetryPoint>>;
  aggregate(q: AggregateQuery): Promise<Bucket[]>;
  messages(q: MessageQuery): Promise<Page<RawMessage>>;
  deadLetters(tenant: string, limit: number, after?: string): Promise<Page<StoredDeadLetter>>;
  deleteDeadLetters(tenant: string, ids: string[]): Promise<number>;
  /** Deletes points and raw messages with device time before `cutoff` (all tenants when tenant is undefined); returns rows removed. */
  deleteBefore(cutoff: number, tenant?: string): Promise<number>;
  /** Component status for /readyz. */
  status(): { ok: boolean; detail?: string };
}
