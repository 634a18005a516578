/**
 * @module The redelivery journal of one bridge: packet id → (payload hash, message id, receive
 * time) of the last message the external broker sent under that packet id, written and
 * fdatasync'ed BEFORE the message's log append. After a crash the broker redelivers every
 * message we had not acknowledged (DUP flag set, same packet id); the journal gives such a
 * redelivery the message id and receive time its first copy was logged with, so the stores'
 * idempotency (raw archive unique on tenant, device, message id; points on tenant, device,
 * key, ts, message id) and the pipeline's de-dup window drop it. Why a journal and not just a
 * hash of packet id, topic and payload: packet ids are reused after every 65,535 messages, and a
 * device that repeats a payload (`{}`, "1") would collide with its own earlier messages and be
 * dropped as a duplicate for good (see ./bridge.ts for the matching rule and its residual risk).
 *
 * File: `<dataDir>/bridges/<name>-<hash of url and client id>.journal`, one JSON line per entry;
 * the last line for a packet id wins; a torn last line (crash mid-write) is ignored — its
 * batch was never appended. Compacted (rewritten from memory, at most 65,535 entries, then
 * renamed) when it holds 4× more lines than entries. Hand-written: 100 lines, no library does it.
 *
 * Where it lives: the file journal is the embedded single node's. In a cluster the journal must
 * outlive the node that runs the bridge (the next processing-lease holder takes the session
 * over), so there it is kept in JetStream (./journal-jetstream.ts); both implement `Journal`
 * and share the in-memory part (`JournalMemory`).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export interface JournalEntry {
  /** First 16 bytes of sha256(topic NUL payload), hex. */
  hash: string;
  messageId: string;
  receiveTime: number;
}

interface Live extends JournalEntry {
  /** Loaded from the file at start: it may belong to a message logged before a crash. */
  previousRun: boolean;
  /** Our acknowledgement of it was sent in this run. */
  acked: boolean;
}

/** Payload hash of a message, as the journal keeps it. */
export function messageHash(topic: string, payload: Uint8Array): string {
  return createHash('sha256').update(topic).update('\u0000').update(payload).digest('hex').slice(0, 32);
}

export function journalPath(dir: string, bridge: string, url: string, clientId: string): string {
  const session = createHash('sha256').update(`${url}\u0000${clientId}`).digest('hex').slice(0, 12);
  return join(dir, `${bridge}-${session}.journal`);
}

/** What the bridge needs of a redelivery journal (file: this module; cluster: ./journal-jetstream.ts). */
export interface Journal {
  /** Loads the entries of earlier runs (they count as `previousRun`); called before the bridge subscribes. */
  open(): Promise<void>;
  get(packetId: number): (JournalEntry & { previousRun: boolean; acked: boolean }) | undefined;
  assign(packetId: number, entry: JournalEntry): void;
  acked(packetId: number, messageId: string): void;
  /** Resolves once the batch is durable (before the batch's log append). */
  persist(batch: Array<{ packetId: number } & JournalEntry>): Promise<void>;
  close(): Promise<void>;
  /** Closes and deletes the journal (the bridge was deleted). */
  remove(): Promise<void>;
}

/** The in-memory side of a journal: the last entry per packet id, and whether it was acknowledged in this run. */
export abstract class JournalMemory {
  protected readonly entries = new Map<number, Live>();

  /** The entry of a packet id, if any. */
  get(packetId: number): (JournalEntry & { previousRun: boolean; acked: boolean }) | undefined {
    return this.entries.get(packetId);
  }

  /** Remembers (in memory, at once) the message now using `packetId`; `persist` writes it. */
  assign(packetId: number, entry: JournalEntry): void {
    this.entries.set(packetId, { ...entry, previousRun: false, acked: false });
  }

  /** Notes that our acknowledgement of `packetId` (for this message id) went out. */
  acked(packetId: number, messageId: string): void {
    const e = this.entries.get(packetId);
    if (e && e.messageId === messageId) e.acked = true;
  }

  /** An entry read back from storage at open: it may belong to a message logged before a crash. */
  protected loaded(packetId: number, entry: JournalEntry): void {
    this.entries.set(packetId, { ...entry, previousRun: true, acked: false });
  }
}

export class RedeliveryJournal extends JournalMemory implements Journal {
  private fh?: FileHandle;
  private lines = 0;
  /** Serialises writes and compactions. */
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly path: string) { super(); }

  async open(): Promise<void> {
    await mkdir(join(this.path, '..'), { recursive: true });
    let text = '';
    try { text = await readFile(this.path, 'utf8'); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
    for (const line of text.split('\n')) {
      if (!line) continue;
      let e: { p: number; h: string; id: string; t: number };
      try { e = JSON.parse(line); } catch { continue; }
      if (typeof e.p !== 'number' || typeof e.h !== 'string' || typeof e.id !== 'string' || typeof e.t !== 'number') continue;
      this.loaded(e.p, { hash: e.h, messageId: e.id, receiveTime: e.t });
      this.lines++;
    }
    this.fh = await open(this.path, 'a');
  }

  /** Writes entries and makes them durable; resolves once fdatasync returned. */
  persist(batch: Array<{ packetId: number } & JournalEntry>): Promise<void> {
    if (batch.length === 0) return Promise.resolve();
    const text = batch.map((e) => JSON.stringify({ p: e.packetId, h: e.hash, id: e.messageId, t: e.receiveTime })).join('\n') + '\n';
    const run = this.tail.then(async () => {
      const fh = this.fh;
      if (!fh) throw new Error('the bridge journal is closed');
      await fh.write(text);
      await fh.datasync();
      this.lines += batch.length;
      if (this.lines > 4 * Math.max(this.entries.size, 4096)) await this.compact();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async compact(): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const out = await open(tmp, 'w');
    try {
      const lines = [...this.entries].map(([p, e]) => JSON.stringify({ p, h: e.hash, id: e.messageId, t: e.receiveTime }));
      await out.write(lines.join('\n') + (lines.length ? '\n' : ''));
      await out.datasync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.path);
    const dir = await open(join(this.path, '..'), 'r');
    try { await dir.sync(); } finally { await dir.close(); }
    await this.fh?.close();
    this.fh = await open(this.path, 'a');
    this.lines = this.entries.size;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.fh?.close();
    this.fh = undefined;
  }

  /** Closes and deletes the file (the bridge was deleted). */
  async remove(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}
