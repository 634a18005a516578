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
  /** The message's kind when it was logged (a replay keeps it); `telemetry` when unknown. */
  kind?: MessageKind;
}

/** A snapshot whose absent keys leave latest state (project setting `snapshotReplaces`): the newest per device by `ts` counts. */
export interface SnapshotCut { tenant: string; device: string; ts: number; keys: string[] }
/** When a device was last heard from: the greatest receive time and device time of its processed messages. */
export interface DeviceSeen { lastSeen: number; lastTs: number }
/** A message id the store took (not dead-lettered), kept for the de-duplication window across restarts. */
export interface SeenMessageId { tenant: string; device: string; messageId: string; receiveTime: number }
/** Narrows a dead-letter listing: `reason` is a substring of the reason, from ≤ failedAt < to. */
export interface DeadLetterFilter { reason?: string; device?: string; from?: number; to?: number }

/** Everything one processed log batch produces; written as one unit. */
export interface WriteBatch {
  points: TelemetryPoint[];
  messages: RawMessage[];
  deadLetters: DeadLetter[];
  /** Snapshots that replace latest state (keys they lack are no longer listed by latest() unless newer). */
  snapshots?: SnapshotCut[];
}

export interface LatestValue { key: string; value: Value; ts: number }
export interface Page<T> { items: T[]; next?: string }
export interface RangeQuery { tenant: string; device: string; key?: string; from: number; to: number; limit: number; after?: string }
export type AggFn = 'min' | 'max' | 'avg' | 'sum' | 'count' | 'last';
export interface AggregateQuery { tenant: string; device: string; key: string; from: number; to: number; intervalMs: number; agg: AggFn }
/** One time bucket; `value` is null when the bucket holds no numeric value for min/max/avg/sum. */
export interface Bucket { ts: number; value: Value | null; count: number }
/** Roll-up resolutions every store keeps, maintained as points are written (./rollup.ts). */
export type Resolution = '1m' | '1h';
export const RESOLUTION_MS: Readonly<Record<Resolution, number>> = { '1m': 60_000, '1h': 3_600_000 };
/**
 * One roll-up bucket of one series: the points with bucket ≤ device time < bucket + resolution,
 * each stored point counted once. `count` counts every point; min/max/sum/avg read numbers only
 * (null when the bucket has none; avg = sum / numericCount). `first`/`last` are the values of any
 * type with the smallest/greatest device time; on equal device time the smaller (first) or
 * larger (last, as for latest state) message id wins.
 */
export interface Rollup {
  ts: number; count: number; numericCount: number;
  min: number | null; max: number | null; sum: number | null; avg: number | null;
  first: Value; firstTs: number; last: Value; lastTs: number;
}
/** Buckets whose start lies in [from, to), ascending; empty buckets are absent. */
export interface RollupQuery { tenant: string; device: string; key: string; from: number; to: number; resolution: Resolution }
/**
 * Raw retention of one tenant: points and raw messages with device time before `before` go.
 * With `receivedBefore`, a raw message goes only if it was also received before then (the
 * Parquet export holds exactly those), so a late message waits for the next export.
 */
export interface RawCutoff { before: number; receivedBefore?: number }
/** Per-tenant raw retention: each tenant by id (null: kept for ever); a tenant not listed follows `others` (absent: kept). */
export interface RawCutoffs { tenants: Record<string, RawCutoff | null>; others?: RawCutoff }
export interface StoredDeadLetter extends DeadLetter { id: string; failedAt: number }
/** `topic`: an MQTT topic filter (`+`, `#`) the message's topic must match (valid filters only; see src/sources/mqtt/topics.ts parseFilter). */
export interface MessageQuery { tenant: string; project?: string; device?: string; topic?: string; from: number; to: number; limit: number; after?: string }

export interface DeviceRecord {
  tenant: string;
  id: string;
  project: string;
  tokenHash: string;
  disabled: boolean;
  createdAt: number;
}
export type DevicePatch = Partial<Pick<DeviceRecord, 'project' | 'tokenHash' | 'disabled'>>;

/**
 * A tenant's own settings; an absent field takes the node's default from configuration
 * (`tenants.*`, see src/registry/tenant-settings.ts effectiveSettings). Quotas: 0 = unlimited;
 * retention days: 0 = kept forever.
 */
export interface TenantSettings {
  maxDevices?: number;
  messagesPerSecond?: number;
  /** Messages a tenant may send at once above its rate (token bucket size); 0 = messagesPerSecond. */
  burstMessages?: number;
  maxPayloadBytes?: number;
  rawRetentionDays?: number;
  rollup1mRetentionDays?: number;
  rollup1hRetentionDays?: number;
}
export interface TenantRecord { id: string; name: string; createdAt: number; settings: TenantSettings }
/** A tenant to create: its settings default to none (the node's defaults). */
export type NewTenant = Omit<TenantRecord, 'settings'> & { settings?: TenantSettings };
/** A change to a tenant: `settings` fields are merged; a null field returns to the node's default. */
export interface TenantPatch { name?: string; settings?: { [K in keyof TenantSettings]?: number | null } }
export interface ProjectRecord { tenant: string; name: string; createdAt: number }
export type ApiRole = 'admin' | 'write' | 'read';
/** An API key of one tenant; only the SHA-256 of the secret is stored (src/core/ids.ts hashToken). */
export interface ApiKeyRecord { id: string; tenant: string; role: ApiRole; name: string; keyHash: string; createdAt: number }
export type ApiKeyInfo = Omit<ApiKeyRecord, 'keyHash'>;

/**
 * A configuration object of some kind (topic template, bridge, project settings, …) owned by a
 * tenant: a JSON body the store keeps as given. The store checks nothing about the body and
 * does not require the tenant to exist; the module that owns the kind validates it.
 */
export interface StoredObject {
  /** What the object is, e.g. `template`, `bridge`, `project-settings`. */
  kind: string;
  tenant: string;
  id: string;
  /** Any JSON value; stored and returned as JSON. */
  body: unknown;
  /** ms; set by the caller. */
  updatedAt: number;
}

/** Small, rarely changing configuration objects of every kind, scoped by tenant (no paging: lists are small). */
export interface ObjectStore {
  /** Inserts or replaces (kind, tenant, id). */
  putObject(o: StoredObject): Promise<void>;
  getObject(kind: string, tenant: string, id: string): Promise<StoredObject | undefined>;
  /** Objects of `kind` of one tenant, or of every tenant when `tenant` is undefined; ordered by tenant, then id. */
  listObjects(kind: string, tenant?: string): Promise<StoredObject[]>;
  /** False when there was no such object. */
  deleteObject(kind: string, tenant: string, id: string): Promise<boolean>;
}

export interface RegistryStore {
  /** Rejects with DEVICE_EXISTS when (tenant, id) exists. */
  createDevice(device: DeviceRecord): Promise<void>;
  /**
   * Creates devices of one tenant, all or none (one transaction). Rejects DEVICE_EXISTS when any
   * id exists (details.ids: those ids), QUOTA_DEVICES when the tenant would then have more than
   * `maxDevices` (0 or absent: no limit; counted inside the transaction, so two creators at once
   * cannot both pass), BAD_REQUEST for devices of several tenants or an id given twice.
   */
  createDevices(devices: DeviceRecord[], opts?: { maxDevices?: number }): Promise<void>;
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
  createTenant(tenant: NewTenant): Promise<void>;
  getTenant(id: string): Promise<TenantRecord | undefined>;
  listTenants(): Promise<TenantRecord[]>;
  /** Applies the patch in one step (two nodes patching different fields both keep theirs); undefined when there is no such tenant. */
  updateTenant(id: string, patch: TenantPatch): Promise<TenantRecord | undefined>;
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

export interface Store extends RegistryStore, TenancyStore, ObjectStore {
  open(): Promise<void>;
  close(): Promise<void>;
  /**
   * Writes points (updating latest state: last write wins by device time), raw messages and dead
   * letters; idempotent. In the same transaction: the batch's message ids (recentMessageIds),
   * each device's last seen (deviceSeen) and snapshot cuts. A dead letter for a (tenant, device,
   * message id) already in the queue replaces it (reason, bytes and failedAt of the new failure).
   */
  writeBatch(batch: WriteBatch): Promise<void>;
  latest(tenant: string, device: string): Promise<LatestValue[]>;
  /** Raw points ascending by time, paged by the opaque `next` cursor. */
  range(q: RangeQuery): Promise<Page<TelemetryPoint>>;
  aggregate(q: AggregateQuery): Promise<Bucket[]>;
  messages(q: MessageQuery): Promise<Page<RawMessage>>;
  deadLetters(tenant: string, limit: number, after?: string, filter?: DeadLetterFilter): Promise<Page<StoredDeadLetter>>;
  /** Deletes the tenant's dead letters by id; with `failedBefore`, only those that failed before it (a replay that failed again stays). */
  deleteDeadLetters(tenant: string, ids: string[], failedBefore?: number): Promise<number>;
  /** Last seen of a device, kept by writeBatch from its raw messages (also those whose points were suppressed). */
  deviceSeen(tenant: string, device: string): Promise<DeviceSeen | undefined>;
  /**
   * Message ids writeBatch took (raw messages that are not also dead letters of the batch) with
   * receive time ≥ since, oldest first, at most `limit`: processing reloads its de-duplication window from them.
   */
  recentMessageIds(since: number, limit: number): Promise<SeenMessageId[]>;
  /** Forgets recorded message ids with receive time < before; returns how many. */
  forgetMessageIds(before: number): Promise<number>;
  /**
   * Deletes points and raw messages with device time before `cutoff` (all tenants when tenant is
   * undefined), or before each tenant's own cutoff (RawCutoffs, `tenant` ignored); returns rows
   * removed. Runs in bounded steps so writes go on meanwhile.
   */
  deleteBefore(cutoff: number | RawCutoffs, tenant?: string): Promise<number>;
  /** Roll-ups of one series; they include every committed point, whatever its arrival order. */
  rollups(q: RollupQuery): Promise<Rollup[]>;
  /**
   * Deletes roll-up buckets of `resolution` that end at or before `cutoff` (bucket + resolution ≤
   * cutoff), for all tenants when tenant is undefined; returns buckets removed. Raw points are
   * untouched (deleteBefore), and roll-ups outlive them.
   */
  deleteRollupsBefore(resolution: Resolution, cutoff: number, tenant?: string): Promise<number>;
  /** Component status for /readyz. */
  status(): { ok: boolean; detail?: string };
}
