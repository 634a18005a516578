/**
 * @module An append-only JSON-lines journal for broker state (retained messages, sessions).
 * Opening reads every intact line (a torn last line after a crash is skipped), then writes
 * the caller's compacted state to a fresh file (write + fsync + rename) and appends from there.
 * Appends are written in order by one background writer: they reach the OS at once (they
 * survive a process crash) and are fsynced on close. `maybeCompact` rewrites the file from the
 * owner's state once appends have grown past twice the last snapshot (and 16 MiB).
 */
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';

export class Journal {
  private fh?: FileHandle;
  private pending: string[] = [];
  private writing?: Promise<void>;
  private failed?: Error;
  private snapshotBytes = 0;
  private appendedBytes = 0;
  private compacting = false;

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
    const text = records.map((r) => JSON.stringify(r) + '\n').join('');
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    this.fh = await open(this.path, 'a');
    this.snapshotBytes = text.length;
    this.appendedBytes = 0;
    if (this.pending.length > 0 && !this.writing) this.writing = this.drain();
  }

  append(record: unknown): void {
    const line = JSON.stringify(record) + '\n';
    this.pending.push(line);
    this.appendedBytes += line.length;
    if (this.fh && !this.writing) this.writing = this.drain();
  }

  /** Rewrites the journal from `snapshot()` when appends outgrew the last snapshot; appends meanwhile follow it. */
  async maybeCompact(snapshot: () => unknown[]): Promise<void> {
    if (this.compacting || !this.fh || this.appendedBytes < Math.max(16 * 1024 * 1024, 2 * this.snapshotBytes)) return;
    this.compacting = true;
    try {
      await this.flush();
      const fh = this.fh;
      this.fh = undefined;
      await fh?.close();
      await this.open(snapshot());
    } finally {
      this.compacting = false;
    }
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
