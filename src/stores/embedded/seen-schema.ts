/** @module The tables of ./seen.ts, as a migration of ./schema.ts (apart, so that schema.ts imports nothing that imports it). */
export const SEEN_MIGRATION = `
  CREATE TABLE seen_ids (
    receive_time INTEGER NOT NULL, tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, message_id TEXT NOT NULL,
    PRIMARY KEY (receive_time, tenant_id, device_id, message_id)
  ) WITHOUT ROWID;
  CREATE TABLE device_seen (
    tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    snapshot_ts INTEGER, snapshot_keys TEXT,
    PRIMARY KEY (tenant_id, device_id)
  ) WITHOUT ROWID;
  ALTER TABLE dead_letters ADD COLUMN kind TEXT NOT NULL DEFAULT 'telemetry';
`;
