/**
 * @module Committed positions of consumer groups, persisted in `offsets.json`. Every save is
 * atomic (write a temporary file, fsync it, rename it over the old one, fsync the directory),
 * so after a crash the file holds either the old or the new positions, never a mix. Saves
 * are coalesced: commits that arrive while a save runs share the next one.
 */
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir } from './segment.js';

export const OFFSETS_FILE = 'offsets.json';
const OFFSETS_VERSION = 1;

interface OffsetsDocument {
  version: number;
  /** Group name → sequence of the first record the group has NOT processed yet, as a decimal string. */
  groups: Record<string, string>;
}

/** Reads the committed positions; an absent file means no group has committed yet. */
export async function loadOffsets(dir: string): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(join(dir, OFFSETS_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const doc = JSON.parse(text) as OffsetsDocument;
  if (doc.version !== OFFSETS_VERSION || typeof doc.groups !== 'object' || doc.groups === null) {
    throw new Error(`${OFFSETS_FILE} has an unknown layout (version ${String(doc.version)})`);
  }
  const out = new Map<string, number>();
  for (const [group, next] of Object.entries(doc.groups)) {
    const n = Number(next);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${OFFSETS_FILE}: group ${group} has an invalid position ${JSON.stringify(next)}`);
    out.set(group, n);
  }
  return out;
}

export class OffsetsFile {
  private requested = 0;
  private saved = 0;
  private saving?: Promise<void>;

  /** `snapshot` returns the positions to persist at the moment a save starts. */
  constructor(private readonly dir: string, private readonly snapshot: () => Map<string, number>) {}

  /** Resolves once a save that started after this call has completed. */
  async persist(): Promise<void> {
    const want = ++this.requested;
    while (this.saved < want) {
      if (!this.saving) {
        const upTo = this.requested;
        this.saving = this.write().then(() => { this.saved = upTo; }).finally(() => { this.saving = undefined; });
      }
      await this.saving;
    }
  }

  /** Waits for a save in progress (close uses it). */
  async idle(): Promise<void> {
    while (this.saving) await this.saving.catch(() => undefined);
  }

  private async write(): Promise<void> {
    // No prototype: a group may be called anything, `__proto__` included.
    const doc: OffsetsDocument = { version: OFFSETS_VERSION, groups: Object.create(null) as Record<string, string> };
    for (const [group, next] of this.snapshot()) doc.groups[group] = String(next);
    const tmp = join(this.dir, `${OFFSETS_FILE}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(doc, null, 1) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, OFFSETS_FILE));
    await syncDir(this.dir);
  }
}
