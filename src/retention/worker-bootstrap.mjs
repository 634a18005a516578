/**
 * @module Entry of the Parquet export worker when the program runs from TypeScript sources: a
 * worker thread does not inherit tsx's run-time `register()` (bin/fluxgate.js), so this plain-JS
 * file registers it before loading ./parquet-worker.ts. Registering twice is harmless.
 */
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
