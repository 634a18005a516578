/**
 * @module A worker thread of the embedded store, as writer or reader (workerData.role). Each
 * owns one SQLite connection and answers requests one at a time in arrival order (so a
 * device's writes keep their order). The writer also compacts staged rows when enough have
 * gathered or writes pause, and runs retention chunk by chunk with the event loop free in
 * between, so requests that arrive meanwhile run between its chunks.
 */
import { setPriority } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from './engine.js';
import { toWireError, type Request, type Response, type WorkerEvent } from './protocol.js';

/** Compact staged points once writes have paused this long, or at least this often while any wait. */
const IDLE_COMPACT_MS = 1_000;
const MAX_STAGE_MS = 10_000;
/** How often the thread reports its memory to the main thread (metrics `fluxgate_store_worker_*`). */
const MEMORY_REPORT_MS = 5_000;

if (!parentPort) throw new Error('embedded store worker must run in a worker thread');
const port = parentPort;
const { file, role, cacheBytes } = workerData as { file: string; role: 'writer' | 'reader'; cacheBytes?: number };

// The writer's long transactions and compactions must not hold the CPU from the main thread
// (ingest, acknowledgements) and the reader (REST reads): on Linux, pid 0 is this thread.
if (role === 'writer') {
  try { setPriority(0, 10); } catch { /* not permitted here: run at normal priority */ }
}

function openEngine(): Engine | undefined {
  try {
    return new Engine(file, { readonly: role === 'reader', cacheBytes });
  } catch (err) {
    // Reported as a message so open() rejects with the reason; the thread then ends quietly.
    port.postMessage({ event: 'open-failed', error: toWireError(err) } satisfies WorkerEvent);
    port.close();
    return undefined;
  }
}

const opened = openEngine();
if (opened) serve(opened);

function serve(engine: Engine): void {
  let lastWrite = 0;
  let lastCompact = Date.now();
  let closed = false;
  let compactScheduled = false;
  /** Retention runs in flight; close waits for them. */
  const purges = new Set<Promise<void>>();

  function compact(): void {
    const t = performance.now();
    try {
      const rows = engine.writer.compact();
      if (rows > 0) post({ event: 'compacted', rows, seconds: (performance.now() - t) / 1000 });
    } catch (err) {
      // The transaction rolled back: the points stay staged and the next compaction retries.
      post({ event: 'compact-failed', error: toWireError(err) });
    }
    lastCompact = Date.now();
  }

  // Only the writer compacts; the reader just answers reads.
  const timer = role === 'writer' ? setInterval(() => {
    if (closed || engine.writer.stagedRows === 0) return;
    const now = Date.now();
    if (now - lastWrite >= IDLE_COMPACT_MS || now - lastCompact >= MAX_STAGE_MS) compact();
  }, IDLE_COMPACT_MS / 2) : undefined;

  function post(m: Response | WorkerEvent): void {
    port.postMessage(m);
  }

  // Between requests (a long transaction delays it; the main thread keeps the last report).
  function reportMemory(): void {
    if (closed) return;
    const h = getHeapStatistics();
    post({ event: 'memory', heapUsedBytes: h.used_heap_size, heapTotalBytes: h.total_heap_size, heapLimitBytes: h.heap_size_limit, externalBytes: h.external_memory, mallocedBytes: h.malloced_memory, store: engine.memory() });
  }
  const memoryTimer = setInterval(reportMemory, MEMORY_REPORT_MS);
  memoryTimer.unref();

  /** Steps a purge one chunk at a time; requests that arrive meanwhile run between chunks. */
  async function purge(req: Request): Promise<void> {
    try {
      const steps = engine.call(req.op, req.args) as Generator<void, number>;
      let r = steps.next();
      while (!r.done) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        r = steps.next();
      }
      post({ id: req.id, ok: true, value: r.value });
    } catch (err) {
      post({ id: req.id, ok: false, error: toWireError(err) });
    }
  }

  async function close(req: Request): Promise<void> {
    closed = true;
    clearInterval(timer);
    clearInterval(memoryTimer);
    await Promise.all(purges);
    try {
      engine.close();
      post({ id: req.id, ok: true, value: undefined });
    } catch (err) {
      post({ id: req.id, ok: false, error: toWireError(err) });
    }
    port.close();
  }

  // Requests are handled in arrival order, each to completion, so a device's writes keep order.
  port.on('message', (req: Request) => {
    if (closed) {
      post({ id: req.id, ok: false, error: { code: 'STORE_UNAVAILABLE', message: 'embedded store is closed' } });
      return;
    }
    try {
      switch (req.op) {
        case 'writeBatch':
          engine.call('writeBatch', req.args);
          lastWrite = Date.now();
          post({ id: req.id, ok: true, value: undefined });
          // After the reply, and after requests already queued (setImmediate runs once the
          // port's pending messages are handled), so neither waits for the move.
          if (engine.shouldCompact() && !compactScheduled) {
            compactScheduled = true;
            setImmediate(() => {
              compactScheduled = false;
              if (!closed) compact();
            });
          }
          return;
        case 'deleteBefore':
        case 'deleteRollupsBefore': {
          const p = purge(req).finally(() => purges.delete(p));
          purges.add(p);
          return;
        }
        case 'close':
          void close(req);
          return;
        default:
          post({ id: req.id, ok: true, value: engine.call(req.op, req.args) });
      }
    } catch (err) {
      post({ id: req.id, ok: false, error: toWireError(err) });
    }
  });
  post({ event: 'ready' });
  reportMemory();
}
