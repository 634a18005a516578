/**
 * @module Upgrades an embedded log written before lanes existed: its segments and offsets.json
 * sit directly in `<dataDir>/log`; they become the events lane (`<dataDir>/log/events`), with
 * every consumer group's committed position, so nothing acknowledged is lost or processed
 * twice. Snapshots logged by that version stay in the events lane and are processed there.
 *
 * Crash-safe by construction: each file moves with one rename (segments oldest first,
 * offsets.json last) and the move runs before either lane opens, so a crash part-way leaves
 * files in both places and the next start finishes the move. A file of the same name already
 * in the events lane stops the start with a clear error rather than overwrite it.
 */
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FluxgateError } from '../../core/errors.js';
import { OFFSETS_FILE } from '../wal/offsets.js';
import { SEGMENT_SUFFIX } from '../wal/segment.js';

/** Moves a single-lane log's files from `dir` into `eventsDir`; returns how many files moved. */
export async function migrateSingleLaneLog(dir: string, eventsDir: string, logger?: Logger): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  const segments = names.filter((n) => n.endsWith(SEGMENT_SUFFIX)).sort();
  const legacy = [...segments, ...(names.includes(OFFSETS_FILE) ? [OFFSETS_FILE] : [])];
  if (legacy.length === 0) return 0;
  await mkdir(eventsDir, { recursive: true });
  for (const name of legacy) {
    const target = join(eventsDir, name);
    if (await exists(target)) {
      throw new FluxgateError('LOG_UNAVAILABLE', `the log in ${dir} holds ${name} from a version without lanes, and ${eventsDir} already has a file of that name: move one of them away by hand (the files in ${eventsDir} are the newer ones)`);
    }
    await rename(join(dir, name), target);
  }
  await rm(join(dir, `${OFFSETS_FILE}.tmp`), { force: true });
  await syncDir(eventsDir);
  await syncDir(dir);
  logger?.info({ from: dir, to: eventsDir, segments: segments.length, offsets: legacy.includes(OFFSETS_FILE) }, 'log from a version without lanes moved into the events lane');
  return legacy.length;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
