/**
 * @module The error registry: one stable code per failure, with its HTTP status, MQTT reason
 * codes (v5 and 3.1.1 CONNACK where it applies), CoAP code and whether a retry can help.
 * docs/errors.md mirrors this table; test/unit/errors.test.ts fails when they drift apart.
 * Codes are never reused.
 */

export interface ErrorSpec {
  status: number;
  /** What it means, for docs/errors.md. */
  meaning: string;
  /** How to solve it, for docs/errors.md. */
  solve: string;
  /** MQTT 5 reason code. */
  mqtt5?: number;
  /** MQTT 3.1.1 CONNACK return code (authentication failures only). */
  mqtt3?: number;
  /** CoAP response code as "c.dd". */
  coap?: string;
  retryable?: boolean;
}

export const ERRORS = {
  CONFIG_INVALID: { status: 500, meaning: 'The configuration has problems; each is listed with its setting.', solve: 'Fix the named settings in the config file, FLUXGATE_* environment or flags.' },
  PORT_IN_USE: { status: 500, meaning: 'A listener could not bind its port.', solve: 'Free the port or change the named setting (flag or FLUXGATE_* variable); 0 picks any free port.' },
  DATA_DIR_UNUSABLE: { status: 500, meaning: 'The data directory cannot be created or written.', solve: 'Point --data-dir / FLUXGATE_DATA_DIR at a writable directory.' },
  UNAUTHENTICATED: { status: 401, mqtt5: 0x86, mqtt3: 4, coap: '4.01', meaning: 'No credential, or the token or API key is not known.', solve: 'Send `Authorization: Bearer <token>` with a valid device token or API key.' },
  FORBIDDEN: { status: 403, mqtt5: 0x87, mqtt3: 5, coap: '4.03', meaning: 'The credential is valid but may not do this.', solve: 'Use a credential with the right role, or act on your own tenant.' },
  DEVICE_DISABLED: { status: 403, mqtt5: 0x87, mqtt3: 5, coap: '4.03', meaning: 'The device is disabled.', solve: 'Enable the device again (PATCH /api/v1/devices/{id} {"disabled": false}).' },
  DEVICE_MISMATCH: { status: 403, mqtt5: 0x87, coap: '4.03', meaning: 'The token belongs to another device or tenant than the one addressed.', solve: 'Send to the device the token was issued for.' },
  TOPIC_NOT_ALLOWED: { status: 403, mqtt5: 0x87, meaning: 'The client may not publish or subscribe to this topic.', solve: 'Publish under devices/{yourDeviceId}/… and subscribe to your own command topics.' },
  DEVICE_NOT_FOUND: { status: 404, coap: '4.04', meaning: 'No device with this id in the tenant.', solve: 'Create it first: POST /api/v1/devices or `fluxgate device create <id>`.' },
  DEVICE_EXISTS: { status: 409, meaning: 'A device with this id already exists in the tenant.', solve: 'Pick another id or rotate the existing device\'s token.' },
  TENANT_NOT_FOUND: { status: 404, meaning: 'No tenant with this id.', solve: 'List tenants (GET /api/v1/tenants, `fluxgate tenant list`) or create it with the platform admin key.' },
  TENANT_EXISTS: { status: 409, meaning: 'A tenant with this id already exists.', solve: 'Pick another tenant id.' },
  PROJECT_NOT_FOUND: { status: 404, meaning: 'No project with this name in the tenant.', solve: 'Create it first: POST /api/v1/projects or `fluxgate project create <name>`; every tenant has the project `default`.' },
  PROJECT_EXISTS: { status: 409, meaning: 'A project with this name already exists in the tenant.', solve: 'Pick another name, or use the existing project.' },
  API_KEY_NOT_FOUND: { status: 404, meaning: 'No API key with this id in the tenant.', solve: 'List the tenant\'s keys (GET /api/v1/keys, `fluxgate key list`).' },
  TEMPLATE_INVALID: { status: 400, meaning: 'A topic template has problems; the message lists every one with its field.', solve: 'Fix the named fields: a pattern is topic levels with + or one {tenant} {project} {device} {kind} each, # last, and must capture {device}; {tenant} only in the configuration file.' },
  TEMPLATE_EXISTS: { status: 409, meaning: 'A topic template with this id already exists in the tenant (or is a platform template of the configuration).', solve: 'Pick another id, or delete the existing template first (DELETE /api/v1/templates/{id}).' },
  TEMPLATE_NOT_FOUND: { status: 404, meaning: 'No topic template with this id in the tenant.', solve: 'List the templates (GET /api/v1/templates); platform templates of the configuration file are changed there, not over REST.' },
  NOT_FOUND: { status: 404, coap: '4.04', meaning: 'No such route or resource.', solve: 'Check the path against /docs.' },
  BAD_REQUEST: { status: 400, mqtt5: 0x99, coap: '4.00', meaning: 'A field or parameter is missing or invalid.', solve: 'Fix the named field; /docs shows the schema of every route.' },
  BAD_JSON: { status: 400, mqtt5: 0x99, coap: '4.00', meaning: 'The body is not valid JSON.', solve: 'Send a JSON object or an array of objects; the message names the position of the error.' },
  PAYLOAD_TOO_LARGE: { status: 413, mqtt5: 0x95, coap: '4.13', meaning: 'The message is larger than the configured limit.', solve: 'Split the batch or raise the named limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, coap: '4.15', meaning: 'The content type is not accepted.', solve: 'Send `Content-Type: application/json`.' },
  LOG_OVERLOADED: { status: 503, mqtt5: 0x89, coap: '5.03', retryable: true, meaning: 'The log or processing is behind past its limit; the node is slowing sources down.', solve: 'Retry after the Retry-After seconds; if it persists, add capacity or raise log.maxLagRecords.' },
  SNAPSHOT_SHED: { status: 503, mqtt5: 0x97, coap: '5.03', meaning: 'Processing is behind: snapshots are shed first while events and telemetry are still taken.', solve: 'Nothing to do on the device: the next periodic snapshot is taken once processing catches up. Operators: see fluxgate_snapshots_shed_total and log.shedSnapshotsAtRecords.' },
  LOG_UNAVAILABLE: { status: 503, mqtt5: 0x80, coap: '5.03', retryable: true, meaning: 'The log could not make the message durable.', solve: 'Retry; check the disk or the log backend named in /readyz.' },
  STORE_UNAVAILABLE: { status: 503, coap: '5.03', retryable: true, meaning: 'The store could not answer.', solve: 'Retry; check the store named in /readyz.' },
  RETENTION_EXPORT_FAILED: { status: 500, retryable: true, meaning: 'Retention could not write a Parquet export file; the raw data it holds is kept.', solve: 'Make retention.exportDir writable and give it space; the next pass (or POST /api/v1/retention/run) tries again.' },
  SHUTTING_DOWN: { status: 503, mqtt5: 0x8b, coap: '5.03', retryable: true, meaning: 'The node is stopping and takes no new messages.', solve: 'Retry against another node or after the restart.' },
  QUOTA_DEVICES: { status: 403, meaning: 'The tenant already has as many devices as its quota allows (maxDevices); nothing was created.', solve: 'Delete devices it no longer needs, or ask the platform admin to raise the quota: PATCH /api/v1/tenants/{id} {"settings": {"maxDevices": N}} or `fluxgate tenant set <id> --max-devices N`.' },
  QUOTA_RATE: { status: 429, mqtt5: 0x97, coap: '4.29', retryable: true, meaning: 'The tenant sends more messages per second than its quota (messagesPerSecond, with bursts up to burstMessages); the message was not taken. Other tenants are not affected.', solve: 'Retry after the Retry-After seconds (MQTT: resend later) and spread sends out; the platform admin can raise messagesPerSecond / burstMessages (`fluxgate tenant set <id> --messages-per-second N`).' },
  QUOTA_PAYLOAD: { status: 413, mqtt5: 0x97, coap: '4.13', meaning: 'A message payload is larger than the tenant\'s quota (maxPayloadBytes); nothing of the request was taken.', solve: 'Send smaller messages (split the batch or the payload), or ask the platform admin to raise maxPayloadBytes (`fluxgate tenant set <id> --max-payload-bytes N`).' },
  COMMAND_TIMEOUT: { status: 504, meaning: 'The device did not reply to the command in time.', solve: 'Check that the device is connected over MQTT and subscribed to devices/{id}/commands/#, or raise timeoutMs.' },
  COMMANDS_UNAVAILABLE: { status: 503, meaning: 'Commands travel over MQTT, which is disabled on this node.', solve: 'Enable MQTT (mqtt.enabled) or send the command through a node that runs it.' },
  BRIDGE_NOT_FOUND: { status: 404, meaning: 'No bridge with this name.', solve: 'List bridges with GET /api/v1/bridges.' },
  BRIDGE_EXISTS: { status: 409, meaning: 'A bridge with this name already exists (in the configuration file or created over REST).', solve: 'Pick another name, or DELETE the REST bridge first.' },
  INTERNAL: { status: 500, mqtt5: 0x80, coap: '5.00', meaning: 'An unexpected failure inside the node.', solve: 'Look at the node log for the error with this request id and report it.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class FluxgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FluxgateError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options?.details;
  }

  get spec(): ErrorSpec {
    return ERRORS[this.code];
  }
}

export function isFluxgateError(err: unknown, code?: ErrorCode): err is FluxgateError {
  return err instanceof FluxgateError && (code === undefined || err.code === code);
}
