/** @module Test helpers for the WAL: a log in a temp dir that can be restarted, and metric readers. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Log } from '../../src/log/log.js';
import { createFileLog, type FileLogOptions } from '../../src/log/wal/index.js';
import { Metrics } from '../../src/observability/metrics.js';
import { tempDir } from '../helpers/wait.js';

export interface WalHarness {
  readonly log: Log;
  opts: FileLogOptions;
  metrics: Metrics;
  reopen: () => Promise<Log>;
  /** Closes the current log without opening another (to edit its files). */
  close: () => Promise<void>;
  cleanup: () => Promise<void>;
}

/** An open WAL in a fresh temp dir; `cleanup` closes it and removes the dir. */
export async function walHarness(over: Partial<FileLogOptions> = {}): Promise<WalHarness> {
  const tmp = await tempDir('fluxgate-wal-');
  const metrics = new Metrics({ defaultMetrics: false });
  const opts: FileLogOptions = { dir: join(tmp.dir, 'log'), segmentBytes: 1024 * 1024, retentionHours: 72, retentionBytes: 0, maxLagRecords: 1000, metrics, ...over };
  let current = createFileLog(opts);
  try {
    await current.open();
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
  return {
    get log() { return current; },
    opts,
    metrics,
    async reopen() {
      await current.close();
      current = createFileLog(opts);
      await current.open();
      return current;
    },
    close: () => current.close(),
    async cleanup() {
      try {
        await current.close();
      } finally {
        await tmp.cleanup();
      }
    },
  };
}

/** A WAL opened over an existing dir (the crash test's); `close` leaves the files. */
export async function walHarnessAt(dir: string, over: Partial<FileLogOptions> = {}): Promise<{ log: Log; close: () => Promise<void> }> {
  const log = createFileLog({ dir, segmentBytes: 64 * 1024, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e9, ...over });
  await log.open();
  return { log, close: () => log.close() };
}

/** Segment file names of a log dir, oldest first. */
export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
}

/** Current value of a counter (fluxgate_log_fsyncs_total). */
export async function counterValue(m: Metrics['logSyncs']): Promise<number> {
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

/** Sum and count of a histogram (fluxgate_log_fsync_batch_records). */
export async function histogramTotals(h: Metrics['logSyncBatchRecords']): Promise<{ sum: number; count: number }> {
  const values = (await h.get()).values;
  const pick = (suffix: string) => values.filter((v) => v.metricName?.endsWith(suffix)).reduce((n, v) => n + v.value, 0);
  return { sum: pick('_sum'), count: pick('_count') };
}
