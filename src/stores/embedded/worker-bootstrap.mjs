/**
 * @module Entry of the embedded store's worker when the program runs from TypeScript sources.
 * A worker thread does not inherit tsx's `register()` from the thread that started it
 * (bin/fluxgate.js registers tsx at run time), so this plain-JS file registers tsx in the
 * worker before loading ./worker.ts. When the parent ran with `node --import tsx`, the
 * worker inherits that flag and tsx is already active; registering again is harmless.
 */
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
