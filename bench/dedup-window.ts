/**
 * What the de-duplication window (src/process/dedup.ts) costs at its bound: heap + ArrayBuffer
 * bytes per id once `--ids` ids are held, and ns per message for isDuplicate + remember (in
 * batches of 500, as processing does) at steady state (full, forgetting the oldest), for the
 * compact window (`new`) and the Map of string keys it replaced (`map`). Also ns per hash of
 * the candidate 64-bit hashes (`hash`). One structure per process, so the heap figures are its own:
 *
 *   node --expose-gc --import tsx bench/dedup-window.ts new|map|hash [--ids 1000000]
 */
import { createHash, hash as cryptoHash, randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { DedupWindow, messageKey, sipHash } from '../src/process/dedup.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { ids: { type: 'string', default: '1000000' } } });
const IDS = Number(values.ids);
const which = positionals[0] ?? 'new';
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

type Msg = { tenant: string; device: string; messageId: string; receiveTime: number };
/** A message id as devices send them: 10,000 devices, a UUID-like id per message. */
const msg = (i: number): Msg => ({ tenant: 'acme', device: `device-${i % 10_000}`, messageId: `${(i * 2654435761 >>> 0).toString(16)}-4a1b-8c2d-${i.toString(16).padStart(12, '0')}`, receiveTime: 1_700_000_000_000 + i });

class MapWindow {
  private readonly seen = new Map<string, number>();
  constructor(private readonly windowMs: number, private readonly maxIds: number) {}
  get size(): number { return this.seen.size; }
  isDuplicate(m: Msg): boolean {
    const at = this.seen.get(messageKey(m));
    return at !== undefined && m.receiveTime - at <= this.windowMs;
  }
  remember(stored: Msg[]): void {
    let newest = 0;
    for (const e of stored) {
      const k = messageKey(e);
      const at = this.seen.get(k);
      if (at === undefined || e.receiveTime - at > this.windowMs) { this.seen.delete(k); this.seen.set(k, e.receiveTime); }
      if (e.receiveTime > newest) newest = e.receiveTime;
    }
    for (const [k, at] of this.seen) {
      if (this.seen.size <= this.maxIds && newest - at <= this.windowMs) break;
      this.seen.delete(k);
    }
  }
}

function used(): number {
  gc!(); gc!();
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
}

if (which === 'hash') {
  const N = 1_000_000;
  const msgs = Array.from({ length: 10_000 }, (_, i) => msg(i));
  const key = new Int32Array(4); randomFillSync(key);
  const out = new Int32Array(2);
  const salt = 'k'.repeat(16);
  const cases: Array<[string, (m: Msg) => unknown]> = [
    ['messageKey (string only)', (m) => messageKey(m)],
    ['SipHash-1-3', (m) => sipHash(key, 1, 3, true, m.tenant, m.device, m.messageId, out)],
    ['SipHash-2-4', (m) => sipHash(key, 2, 4, true, m.tenant, m.device, m.messageId, out)],
    ['crypto.hash md5 (salted key)', (m) => cryptoHash('md5', salt + messageKey(m))],
    ['crypto.hash sha1 (salted key)', (m) => cryptoHash('sha1', salt + messageKey(m))],
    ['createHash md5 (salted key)', (m) => createHash('md5').update(salt).update(messageKey(m)).digest()],
  ];
  for (const [name, fn] of cases) {
    for (let i = 0; i < 100_000; i++) fn(msgs[i % msgs.length]);
    const t0 = performance.now();
    for (let i = 0; i < N; i++) fn(msgs[i % msgs.length]);
    console.log(`${name}: ${Math.round(((performance.now() - t0) * 1e6) / N)} ns`);
  }
} else {
  const before = used();
  const w = which === 'map' ? new MapWindow(1e12, IDS) : new DedupWindow(1e12, IDS);
  const BATCH = 500;
  let i = 0;
  const fill = (n: number) => {
    const batch: Msg[] = [];
    for (const end = i + n; i < end;) {
      batch.length = 0;
      for (let j = 0; j < BATCH; j++) batch.push(msg(i++));
      for (const m of batch) w.isDuplicate(m);
      w.remember(batch);
    }
  };
  fill(IDS);
  const after = used();
  console.log(`${which}: ${w.size} ids, ${((after - before) / w.size).toFixed(1)} bytes per id (heap + ArrayBuffers, ${((after - before) / 2 ** 20).toFixed(1)} MiB)`);
  // Steady state: full, each new batch forgets as many of the oldest. Message building timed apart.
  const t0 = performance.now();
  fill(IDS);
  const total = performance.now() - t0;
  const t1 = performance.now();
  let sink = 0;
  for (let k = 0; k < IDS; k++) sink += msg(i + k).messageId.length;
  const gen = performance.now() - t1;
  console.log(`${which}: ${Math.round(((total - gen) * 1e6) / IDS)} ns per message (isDuplicate + remember, full window; ${Math.round((gen * 1e6) / IDS)} ns of building the message subtracted)${sink < 0 ? '' : ''}`);
  const after2 = used();
  console.log(`${which}: after ${2 * IDS} messages ${((after2 - before) / 2 ** 20).toFixed(1)} MiB`);
}
