/**
 * @module The Log contract. The log is the only place where "acknowledged" is decided:
 * a source acknowledges a device only after `append` resolved. Embedded backend: ./wal/;
 * cluster backend: ./jetstream/ (one new file behind this same contract).
 */
import type { Envelope } from '../core/envelope.js';

/** One logged message and its position. Offsets are opaque to callers except for ordering within one read. */
export interface LogRecord {
  offset: bigint;
  envelope: Envelope;
}

/** What one `read` returned; handed back to `commit` once every record in it is processed. */
export interface LogBatch {
  records: LogRecord[];
}

export interface LogPressure {
  /** Records appended but not yet committed by the slowest consumer group. */
  lagRecords: number;
  /** Bytes waiting to be made durable (queued appends). */
  pendingBytes: number;
  /** `true` when sources must slow down (HTTP 503 + Retry-After, MQTT stops reading). */
  overLimit: boolean;
  /**
   * `true` when the log cannot make appends durable at all (backend unreachable, disk failed):
   * the node is then not ready. Merely behind (overLimit alone) keeps it ready, so a load
   * balancer does not drop every node of an overloaded cluster at once.
   */
  unavailable?: boolean;
  /** Lag of each lane (src/log/lanes/: `events`, `snapshots`) when the log has lanes; their sum is `lagRecords`. */
  lanes?: Record<string, { lagRecords: number }>;
}

export interface Log {
  /** Opens the backend; the embedded log repairs a torn tail here. */
  open(): Promise<void>;
  /**
   * Appends a batch and resolves only once every envelope in it is durable (fdatasync done /
   * JetStream acknowledged). Concurrent appends from many connections share one sync.
   * Rejects with LOG_OVERLOADED / LOG_UNAVAILABLE; on rejection nothing of the batch counts as acknowledged.
   */
  append(batch: Envelope[]): Promise<void>;
  /**
   * Reads the next records for a consumer group, at least once and in order per device.
   * Starts after the group's committed position (or the oldest record for a new group);
   * successive reads continue where the previous one stopped even before a commit.
   * Waits up to `waitMs` for records when none are ready; returns an empty batch then.
   */
  read(group: string, max: number, waitMs: number): Promise<LogBatch>;
  /** Marks every record of `batch` (and all before it for this group) as processed; survives a restart. */
  commit(group: string, batch: LogBatch): Promise<void>;
  /**
   * Optional: this process stops reading `group` for now (another node takes it over). Records
   * read and not committed are handed back at once, and a later read checks the group's
   * position first. Backends with one reader per process (the embedded log) need nothing.
   */
  release?(group: string): Promise<void>;
  /** Applies retention (age and size); never removes a record a consumer group has not committed. */
  enforceRetention(now?: number): Promise<void>;
  pressure(): LogPressure;
  /** Stops accepting appends, syncs what is queued, closes files. */
  close(): Promise<void>;
}
