/**
 * @module Retention: per tenant and tier (raw points and archive, 1-minute and 1-hour roll-ups),
 * on a schedule that deletes in bounded steps so ingest never waits on it, with an optional
 * Parquet cold tier that receives raw messages before they expire. The only public surface of
 * src/retention/.
 */
export { RetentionScheduler, type SchedulerOptions } from './scheduler.js';
export { retentionRoutes } from './routes.js';
export { runPass, type PassResult, type TenantPassResult } from './pass.js';
export { exportDay, dayName, type DayExport } from './parquet-export.js';
export { windowsOf, defaultWindows, cutoffOf, type RetentionWindows, type Tier } from './windows.js';
