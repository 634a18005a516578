/**
 * @module The main thread's side of the Parquet export worker (./parquet-worker.ts): one worker
 * for a retention pass, started on first use and ended by close(). Each call waits for the
 * worker's answer, which also bounds the rows in flight to one batch.
 */
import { Worker } from 'node:worker_threads';
import type { RawMessage } from '../stores/store.js';

export type ExportRow = RawMessage;
export type EncoderRequest =
  | { id: number; op: 'open'; file: string; meta: Array<{ key: string; value: string }> }
  | { id: number; op: 'rows'; rows: ExportRow[] }
  | { id: number; op: 'finish' }
  | { id: number; op: 'abort' }
  /** Reads `device\u0000message_id` of every row of existing files (rows already exported). */
  | { id: number; op: 'keys'; files: string[] };
export type EncoderResponse = { id: number; ok: true; keys?: string[] } | { id: number; ok: false; error: string };
type Body<R> = R extends unknown ? Omit<R, 'id'> : never;

const ENTRY = { url: new URL('./worker-bootstrap.mjs', import.meta.url), entry: new URL('./parquet-worker.ts', import.meta.url).href };

export class ParquetEncoder {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (keys?: string[]) => void; reject: (err: Error) => void }>();

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(ENTRY.url, { workerData: { entry: ENTRY.entry } });
    w.on('message', (r: EncoderResponse) => {
      const p = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      if (r.ok) p?.resolve(r.keys);
      else p?.reject(new Error(r.error));
    });
    const fail = (err: Error) => {
      for (const p of this.waiting.values()) p.reject(err);
      this.waiting.clear();
      this.worker = undefined;
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the Parquet export worker exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  call(req: Body<EncoderRequest>): Promise<string[] | undefined> {
    const w = this.start();
    const id = this.nextId++;
    return new Promise<string[] | undefined>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      w.postMessage({ ...req, id });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
