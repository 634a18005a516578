/**
 * @module An append-only JSON-lines journal for broker state (retained messages, sessions).
 * Opening reads every intact line (a torn last line after a crash is skipped), then writes
 * the caller's compacted state to a fresh file (write + fsync + rename) and appends from there.
 * Appends are written in order by one background writer: they reach the OS at once (they
 * survive a process crash) and are fsynced on close.
 */
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';

export class Journal {
  private fh?: FileHandle;
  private pending: string[] = [];
  private writing?: Promise<void>;
  private failed?: Error;

  constructor(readonly path: string) {}

  /** Every record of the journal on disk, oldest first. */
  async read(): Promise<unknown[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: unknown[] = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // A torn tail from a crash mid-write: everything before it is intact.
      }
    }
    return out;
  }

  /** Replaces the journal with `records` (the compacted state) and opens it for appends. */
  async open(records: unknown[]): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(records.map((r) => JSON.stringify(r) + '\n').join(''));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    this.fh = await open(this.path, 'a');
  }

  append(record: unknown): void {
    if (!this.fh) return;
    this.pending.push(JSON.stringify(record) + '\n');
    if (!this.writing) this.writing = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0 && this.fh) {
        const data = this.pending.join('');
        this.pending = [];
        await this.fh.write(data);
      }
    } catch (err) {
      this.failed = err as Error;
    } finally {
      this.writing = undefined;
    }
  }

  /** Resolves when everything appended so far is written. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.failed) throw this.failed;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    try {
      await this.flush();
      await fh.sync();
    } finally {
      this.fh = undefined;
      await fh.close();
    }
  }
}
