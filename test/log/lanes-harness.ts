/** @module Test helpers for the lane log (src/log/lanes/): a WAL or JetStream lane log that can be restarted. */
import { join } from 'node:path';
import type { Log } from '../../src/log/log.js';
import { createFileLaneLog, createJetStreamLaneLog } from '../../src/log/lanes/index.js';
import { Metrics } from '../../src/observability/metrics.js';
import { tempDir } from '../helpers/wait.js';
import { deleteStream, uniqueStream } from './jetstream-harness.js';

export interface LaneHarness {
  readonly log: Log;
  /** `<tmp>/log`, the lane log's root (WAL only). */
  dir: string;
  metrics: Metrics;
  reopen: () => Promise<Log>;
  cleanup: () => Promise<void>;
}

/** Lane priority of an envelope, for the conformance suite: events lane first. */
export const laneIndex = (e: { kind: string }): number => (e.kind === 'snapshot' ? 1 : 0);

/**
 * An open WAL lane log in a fresh temp dir (or over `existing`, e.g. a single-lane log to
 * migrate). `snapshotShare` defaults to 0, strict priority (the read order the conformance suite
 * expects), not the node's log.snapshotShare default of 0.1.
 */
export async function fileLaneHarness(over: { maxLagRecords?: number; idleSliceMs?: number; snapshotShare?: number } = {}, existing?: { dir: string; cleanup: () => Promise<void> }): Promise<LaneHarness> {
  const tmp = existing ?? await tempDir('fluxgate-lanes-');
  const metrics = new Metrics({ defaultMetrics: false });
  const dir = join(tmp.dir, 'log');
  const make = () => createFileLaneLog({ dir, segmentBytes: 1024 * 1024, retentionHours: 72, retentionBytes: 0, maxLagRecords: over.maxLagRecords ?? 1000, idleSliceMs: over.idleSliceMs, snapshotShare: over.snapshotShare, metrics });
  let current = make();
  try {
    await current.open();
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
  return {
    get log() { return current; }, dir, metrics,
    async reopen() { await current.close(); current = make(); await current.open(); return current; },
    async cleanup() { try { await current.close(); } finally { await tmp.cleanup(); } },
  };
}

/** An open JetStream lane log on streams of its own; cleanup deletes both. */
export async function jetStreamLaneHarness(servers: string, over: { maxLagRecords?: number; snapshotShare?: number } = {}): Promise<LaneHarness & { stream: string }> {
  const metrics = new Metrics({ defaultMetrics: false });
  const stream = uniqueStream();
  const make = () => createJetStreamLaneLog({ servers, stream, maxLagRecords: over.maxLagRecords ?? 1000, retentionHours: 72, retentionBytes: 0, snapshotShare: over.snapshotShare, metrics });
  let current = make();
  await current.open();
  return {
    get log() { return current; }, dir: '', metrics, stream,
    async reopen() { await current.close(); current = make(); await current.open(); return current; },
    async cleanup() {
      try { await current.close(); } finally {
        await deleteStream(servers, stream);
        await deleteStream(servers, `${stream}_SNAPSHOTS`);
      }
    },
  };
}
