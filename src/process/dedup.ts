/**
 * @module De-duplication by message id within a time window. Stores are idempotent on
 * (device, key, device time, message id), which covers replays from the log; this window
 * covers a device that retries a message WITHOUT `ts`: each try gets its own receive time,
 * so only the id tells the copies apart. The first copy stored wins; later copies within
 * `windowMs` (by receive time) are dropped and counted. An id is remembered only after its
 * batch was stored, so a failed write never turns a message into a "duplicate".
 * Bounded: at most `maxIds` ids are kept (oldest forgotten first).
 *
 * Surviving a restart: the store records every batch's message ids with their receive time in
 * the batch's own transaction (Store.recentMessageIds), so what is stored and what is
 * remembered can never disagree; processing `load`s the window from there when it starts (also
 * on the node that takes processing over in a cluster) and prunes the record as the window
 * slides (Store.forgetMessageIds).
 *
 * Compact: an id is held as a 64-bit keyed hash of (tenant, device, message id), not as a
 * string, in typed arrays only: an open-addressing table (linear probing, load ≤ 0.7,
 * backward-shift deletion) of [ring position, hash high half], and a ring in insertion order
 * of [hash low half, receive time] from which the oldest are forgotten. Both grow by doubling up
 * to a size fixed by `maxIds` (ring: maxIds + 1/8 slack for a batch and for restarted ids), then
 * memory stays constant: 29.5 bytes per id at 1,000,000 ids (heap + ArrayBuffers; the Map of
 * strings it replaces: 317 in the same run), and nothing is allocated per message. Per message
 * (isDuplicate + remember, full window, batches of 500): 2.5 µs against the Map's 4.7 µs (most of
 * which was its garbage). `node --expose-gc --import tsx bench/dedup-window.ts new|map|hash`.
 *
 * The hash is SipHash-1-3 (the keyed hash of Rust's and Python's hash tables) with a random
 * 128-bit key per window: devices choose message ids, and with an unkeyed hash a device could
 * craft an id colliding with another device's future id (dropping that message as a
 * "duplicate") or flood one table slot. Two different ids collide with probability 2^-64, so a
 * message is wrongly dropped with probability ≤ maxIds / 2^64 ≈ 5.4e-14 at 1,000,000 ids: one
 * such message in ~2e13 messages, about 6,000 years at 100,000 messages/s — far below the loss
 * of any real link. In pure JS on 32-bit halves it costs 0.55-0.75 µs per id (twice per message),
 * about what node:crypto's sha1 costs (0.62 µs, allocating); making it faster is open.
 */
import { randomFillSync } from 'node:crypto';
import type { RawMessage, SeenMessageId } from '../stores/store.js';

type MessageId = Pick<RawMessage, 'tenant' | 'device' | 'messageId'>;

/** The identity of a message for de-duplication: tenant, device and message id. */
export function messageKey(m: MessageId): string {
  return `${m.tenant}\u0000${m.device}\u0000${m.messageId}`;
}

/**
 * SipHash-c-d (Aumasson & Bernstein, 2012) with the 128-bit `key` (four little-endian 32-bit
 * words) over the UTF-16 code units (2 bytes each, little-endian) of `a`, `b` and `c`, each
 * preceded by its length as 32 bits when `framed` (so no two triples share a message). The
 * result goes to out[0] (low 32 bits) and out[1] (high); nothing is allocated.
 */
export function sipHash(key: Int32Array, c: number, d: number, framed: boolean, a: string, b: string, s3: string, out: Int32Array): void {
  const v = SIP;
  v[0] = key[0]! ^ 0x70736575; v[1] = key[1]! ^ 0x736f6d65;
  v[2] = key[2]! ^ 0x6e646f6d; v[3] = key[3]! ^ 0x646f7261;
  v[4] = key[0]! ^ 0x6e657261; v[5] = key[1]! ^ 0x6c796765;
  v[6] = key[2]! ^ 0x79746573; v[7] = key[3]! ^ 0x74656462;
  let ml = 0, mh = 0, k = 0, units = 0;
  for (let part = 0; part < 3; part++) {
    const s = part === 0 ? a : part === 1 ? b : s3;
    const len = s.length;
    units += framed ? len + 2 : len;
    for (let i = framed ? -2 : 0; i < len; i++) {
      const u = i >= 0 ? s.charCodeAt(i) : i === -2 ? len & 0xffff : len >>> 16;
      if (k < 2) ml |= u << (k << 4); else mh |= u << ((k - 2) << 4);
      if (++k < 4) continue;
      sipBlock(ml, mh, c);
      ml = 0; mh = 0; k = 0;
    }
  }
  // The last block: the remaining bytes, the message's length in bytes (mod 256) on top.
  mh |= ((units * 2) & 0xff) << 24;
  sipBlock(ml, mh, c);
  v[4]! ^= 0xff;
  sipRounds(d);
  out[0] = v[0]! ^ v[2]! ^ v[4]! ^ v[6]!;
  out[1] = v[1]! ^ v[3]! ^ v[5]! ^ v[7]!;
}

/** SipHash state as 32-bit halves: v0 low, v0 high, v1 low, … v3 high (one hash at a time). */
const SIP = new Int32Array(8);

/** Absorbs one 64-bit message block (low, high halves) with `c` rounds. */
function sipBlock(ml: number, mh: number, c: number): void {
  SIP[6]! ^= ml; SIP[7]! ^= mh;
  sipRounds(c);
  SIP[0]! ^= ml; SIP[1]! ^= mh;
}

/** `n` SipRounds on SIP, in locals (64-bit adds and rotations on 32-bit halves). */
function sipRounds(n: number): void {
  let v0l = SIP[0]!, v0h = SIP[1]!, v1l = SIP[2]!, v1h = SIP[3]!, v2l = SIP[4]!, v2h = SIP[5]!, v3l = SIP[6]!, v3h = SIP[7]!;
  let t = 0, x = 0;
  for (let r = 0; r < n; r++) {
    t = (v0l >>> 0) + (v1l >>> 0); v0l = t | 0; v0h = (v0h + v1h + (t > 0xffffffff ? 1 : 0)) | 0;
    x = v1h; v1h = (x << 13) | (v1l >>> 19); v1l = (v1l << 13) | (x >>> 19); v1h ^= v0h; v1l ^= v0l;
    x = v0h; v0h = v0l; v0l = x;
    t = (v2l >>> 0) + (v3l >>> 0); v2l = t | 0; v2h = (v2h + v3h + (t > 0xffffffff ? 1 : 0)) | 0;
    x = v3h; v3h = (x << 16) | (v3l >>> 16); v3l = (v3l << 16) | (x >>> 16); v3h ^= v2h; v3l ^= v2l;
    t = (v0l >>> 0) + (v3l >>> 0); v0l = t | 0; v0h = (v0h + v3h + (t > 0xffffffff ? 1 : 0)) | 0;
    x = v3h; v3h = (x << 21) | (v3l >>> 11); v3l = (v3l << 21) | (x >>> 11); v3h ^= v0h; v3l ^= v0l;
    t = (v2l >>> 0) + (v1l >>> 0); v2l = t | 0; v2h = (v2h + v1h + (t > 0xffffffff ? 1 : 0)) | 0;
    x = v1h; v1h = (x << 17) | (v1l >>> 15); v1l = (v1l << 17) | (x >>> 15); v1h ^= v2h; v1l ^= v2l;
    x = v2h; v2h = v2l; v2l = x;
  }
  SIP[0] = v0l; SIP[1] = v0h; SIP[2] = v1l; SIP[3] = v1h; SIP[4] = v2l; SIP[5] = v2h; SIP[6] = v3l; SIP[7] = v3h;
}

/** Table slots per ring entry at most (load ≤ 0.7). */
const MAX_LOAD = 0.7;
const FIRST_RING = 1024;

function tableSizeFor(ringCap: number): number {
  let n = 16;
  while (n * MAX_LOAD < ringCap) n *= 2;
  return n;
}

export class DedupWindow {
  private readonly key = new Int32Array(4);
  private readonly hash = new Int32Array(2);
  /** The ring's size once at the bound: maxIds plus slack for a batch and restarted ids' old entries. */
  private readonly maxRing: number;
  /** Per slot: [ring position + 1 (0 = empty), hash high half]. */
  private table: Int32Array;
  private mask: number;
  /** Per ring position, oldest at `head`: hash low half (also the table's home slot) and receive time (NaN = restarted since). */
  private ringLo: Int32Array;
  private ringAt: Float64Array;
  private head = 0;
  /** Ring positions in use (live and restarted). */
  private used = 0;
  private live = 0;
  private restarted = 0;

  constructor(private readonly windowMs: number, private readonly maxIds = 1_000_000) {
    randomFillSync(this.key);
    this.maxRing = maxIds + Math.max(1024, Math.ceil(maxIds / 8));
    const ring = Math.min(this.maxRing, FIRST_RING);
    this.ringLo = new Int32Array(ring);
    this.ringAt = new Float64Array(ring);
    this.table = new Int32Array(2 * tableSizeFor(ring));
    this.mask = this.table.length / 2 - 1;
  }

  /** True when a message with this tenant, device and message id was stored within the window. */
  isDuplicate(m: Pick<RawMessage, 'tenant' | 'device' | 'messageId' | 'receiveTime'>): boolean {
    const slot = this.find(m);
    return slot >= 0 && m.receiveTime - this.ringAt[this.table[2 * slot] - 1] <= this.windowMs;
  }

  /** Number of ids held. */
  get size(): number {
    return this.live;
  }

  /** Fills the window from the store's record (oldest first), e.g. at start. */
  load(ids: SeenMessageId[]): void {
    this.remember(ids);
  }

  /** Remembers stored messages and forgets what fell out of the window or over the bound. */
  remember(stored: Array<Pick<RawMessage, 'tenant' | 'device' | 'messageId' | 'receiveTime'>>): void {
    let newest = 0;
    for (const e of stored) {
      this.reserve();
      const slot = this.find(e);
      if (slot < 0) {
        // Not held: the empty slot that ended the search takes it (`find` left the hash in this.hash).
        const s = -1 - slot;
        this.table[2 * s] = this.append(this.hash[0], e.receiveTime) + 1;
        this.table[2 * s + 1] = this.hash[1];
        this.live++;
      } else {
        // The first copy's time counts; one stored again after the window restarts it (at the end: newest).
        const r = this.table[2 * slot] - 1;
        if (e.receiveTime - this.ringAt[r] > this.windowMs) {
          this.ringAt[r] = NaN;
          this.restarted++;
          this.table[2 * slot] = this.append(this.ringLo[r], e.receiveTime) + 1;
        }
      }
      if (e.receiveTime > newest) newest = e.receiveTime;
    }
    while (this.used > 0) {
      const at = this.ringAt[this.head];
      if (at === at && this.live <= this.maxIds && newest - at <= this.windowMs) break;
      this.forgetOldest();
    }
  }

  /** The table slot holding m's id, or -1 - (the empty slot where it would go); leaves the id's hash in this.hash. */
  private find(m: MessageId): number {
    const h = this.hash;
    sipHash(this.key, 1, 3, true, m.tenant, m.device, m.messageId, h);
    const lo = h[0], hi = h[1], t = this.table;
    for (let s = lo & this.mask; ; s = (s + 1) & this.mask) {
      const r = t[2 * s];
      if (r === 0) return -1 - s;
      if (t[2 * s + 1] === hi && this.ringLo[r - 1] === lo) return s;
    }
  }

  /** Puts an entry at the ring's end (there is room: `reserve`); returns its position. */
  private append(lo: number, at: number): number {
    let r = this.head + this.used;
    if (r >= this.ringLo.length) r -= this.ringLo.length;
    this.ringLo[r] = lo;
    this.ringAt[r] = at;
    this.used++;
    return r;
  }

  /** Makes room for one more ring entry: grows, drops restarted ids' old entries, or (a batch past the slack) forgets the oldest early. */
  private reserve(): void {
    if (this.used < this.ringLo.length) return;
    while (this.used > 0 && this.ringAt[this.head] !== this.ringAt[this.head]) this.forgetOldest();
    if (this.used < this.ringLo.length) return;
    if (this.ringLo.length < this.maxRing) this.rebuild(Math.min(this.maxRing, this.ringLo.length * 2));
    else if (this.restarted * 16 >= this.maxRing) this.rebuild(this.maxRing);
    else this.forgetOldest();
  }

  /** Drops the ring's oldest entry, and its id from the table unless it was restarted (then the table points at the newer entry). */
  private forgetOldest(): void {
    const r = this.head;
    this.head = r + 1 === this.ringLo.length ? 0 : r + 1;
    this.used--;
    if (this.ringAt[r] !== this.ringAt[r]) { this.restarted--; return; }
    this.live--;
    const t = this.table, mask = this.mask;
    let i = this.ringLo[r] & mask;
    while (t[2 * i] !== r + 1) i = (i + 1) & mask;
    // Backward-shift deletion: move up each later entry of the run that may live in the hole.
    for (let j = (i + 1) & mask; t[2 * j] !== 0; j = (j + 1) & mask) {
      const home = this.ringLo[t[2 * j] - 1] & mask;
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      t[2 * i] = t[2 * j];
      t[2 * i + 1] = t[2 * j + 1];
      i = j;
    }
    t[2 * i] = 0;
    t[2 * i + 1] = 0;
  }

  /** Copies the live entries, oldest first, to a ring of `ringCap` and a table sized for it. */
  private rebuild(ringCap: number): void {
    const oldLo = this.ringLo, oldAt = this.ringAt, oldTable = this.table;
    const lo = new Int32Array(ringCap), at = new Float64Array(ringCap);
    let n = 0;
    for (let i = 0, r = this.head; i < this.used; i++, r = r + 1 === oldLo.length ? 0 : r + 1) {
      if (oldAt[r] !== oldAt[r]) continue;
      lo[n] = oldLo[r];
      at[n] = oldAt[r];
      oldLo[r] = n++; // the old ring now maps old position → new
    }
    const table = new Int32Array(2 * tableSizeFor(ringCap)), mask = table.length / 2 - 1;
    for (let s = 0; s < oldTable.length; s += 2) {
      if (oldTable[s] === 0) continue;
      const r = oldLo[oldTable[s] - 1];
      let i = lo[r] & mask;
      while (table[2 * i] !== 0) i = (i + 1) & mask;
      table[2 * i] = r + 1;
      table[2 * i + 1] = oldTable[s + 1];
    }
    this.ringLo = lo; this.ringAt = at; this.table = table; this.mask = mask;
    this.head = 0; this.used = n; this.live = n; this.restarted = 0;
  }
}
