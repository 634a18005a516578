/**
 * @module The embedded log's only public surface: `createFileLog(opts)` returns a `Log` that
 * keeps its files in `opts.dir`. Call `open()` before use (it repairs a torn tail) and
 * `close()` at the end (it writes what is queued). The on-disk format is docs/format/log.md.
 */
import type { Log } from '../log.js';
import { FileLog, type FileLogOptions } from './file-log.js';

export type { FileLogOptions };

export function createFileLog(opts: FileLogOptions): Log {
  return new FileLog(opts);
}
