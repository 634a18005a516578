/**
 * @module The lane log's only public surface (design in lane-log.ts, lanes in lane.ts):
 * - `createFileLaneLog(opts)`: the embedded WAL as two lanes, `<opts.dir>/events` and
 *   `<opts.dir>/snapshots`; a single-lane log left in `<opts.dir>` by an earlier version is
 *   moved into the events lane on open (migrate.ts).
 * - `createJetStreamLaneLog(opts)`: two JetStream streams, `<stream>` for events (the stream
 *   an earlier version wrote, so its records are read as the events lane) and
 *   `<stream>_SNAPSHOTS` for snapshots, each with its own consumers, lag and retention.
 * - `createLaneLog({ lanes })`: any two Logs as lanes.
 */
import { join } from 'node:path';
import type { Log } from '../log.js';
import { createFileLog, type FileLogOptions } from '../wal/index.js';
import { createJetStreamLog, type JetStreamLogOptions } from '../jetstream/index.js';
import { LaneLog, type LaneLogOptions } from './lane-log.js';
import { LaneMetrics } from './metrics.js';
import { migrateSingleLaneLog } from './migrate.js';

export { LANES, laneOfKind, type Lane } from './lane.js';
export type { LaneLogOptions };

/** How the lane log reads its lanes (LaneLogOptions, lane-log.ts). */
export type LaneReadOptions = Pick<LaneLogOptions, 'idleSliceMs' | 'snapshotShare'>;

export function createLaneLog(opts: LaneLogOptions): Log {
  return new LaneLog(opts);
}

function measured(log: LaneLog, metrics?: LaneMetrics): LaneLog {
  metrics?.watchPending(() => log.pendingBytesByLane());
  return log;
}

/** The embedded log in lanes; `opts.dir` is the log's root (`<dataDir>/log`). */
export function createFileLaneLog(opts: FileLogOptions & LaneReadOptions): Log {
  const metrics = opts.metrics ? new LaneMetrics(opts.metrics) : undefined;
  const eventsDir = join(opts.dir, 'events');
  const lane = (name: 'events' | 'snapshots') => createFileLog({ ...opts, dir: join(opts.dir, name), metrics: metrics?.forLane(name), logger: opts.logger?.child({ lane: name }) });
  return measured(new LaneLog({
    lanes: { events: lane('events'), snapshots: lane('snapshots') },
    maxLagRecords: opts.maxLagRecords, idleSliceMs: opts.idleSliceMs, snapshotShare: opts.snapshotShare, logger: opts.logger,
    beforeOpen: async () => { await migrateSingleLaneLog(opts.dir, eventsDir, opts.logger); },
  }), metrics);
}

/** The JetStream log in lanes: stream `<stream>` (default FLUXGATE) for events, `<stream>_SNAPSHOTS` for snapshots. */
export function createJetStreamLaneLog(opts: JetStreamLogOptions & LaneReadOptions): Log {
  const metrics = opts.metrics ? new LaneMetrics(opts.metrics) : undefined;
  const stream = opts.stream ?? 'FLUXGATE';
  const prefix = opts.subjectPrefix ?? `${stream.toLowerCase()}.msg`;
  return measured(new LaneLog({
    lanes: {
      events: createJetStreamLog({ ...opts, stream, subjectPrefix: prefix, metrics: metrics?.forLane('events'), logger: opts.logger?.child({ lane: 'events' }) }),
      snapshots: createJetStreamLog({ ...opts, stream: `${stream}_SNAPSHOTS`, subjectPrefix: `${prefix}_snapshots`, metrics: metrics?.forLane('snapshots'), logger: opts.logger?.child({ lane: 'snapshots' }) }),
    },
    maxLagRecords: opts.maxLagRecords, idleSliceMs: opts.idleSliceMs, snapshotShare: opts.snapshotShare, logger: opts.logger,
  }), metrics);
}
