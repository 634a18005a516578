/**
 * Unit tests of the compact de-duplication window (src/process/dedup.ts): its SipHash against
 * the reference vectors, the window's semantics case by case, the ring wrapping, growing and
 * compacting, and the same answers as a plain Map of string keys (the implementation it
 * replaced) over thousands of random operations.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DedupWindow, messageKey, sipHash } from '../../src/process/dedup.js';

type Msg = { tenant: string; device: string; messageId: string; receiveTime: number };
const m = (messageId: string, receiveTime: number, device = 'd', tenant = 't'): Msg => ({ tenant, device, messageId, receiveTime });

/** The Map of string keys the window replaced: the reference for its answers. */
class MapWindow {
  readonly seen = new Map<string, number>();
  constructor(private readonly windowMs: number, private readonly maxIds: number) {}
  isDuplicate(x: Msg): boolean {
    const at = this.seen.get(messageKey(x));
    return at !== undefined && x.receiveTime - at <= this.windowMs;
  }
  remember(stored: Msg[]): void {
    let newest = 0;
    for (const e of stored) {
      const k = messageKey(e);
      const at = this.seen.get(k);
      if (at === undefined || e.receiveTime - at > this.windowMs) {
        this.seen.delete(k);
        this.seen.set(k, e.receiveTime);
      }
      if (e.receiveTime > newest) newest = e.receiveTime;
    }
    for (const [k, at] of this.seen) {
      if (this.seen.size <= this.maxIds && newest - at <= this.windowMs) break;
      this.seen.delete(k);
    }
  }
}

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe('dedup window - SipHash', () => {
  // SipHash-2-4 outputs for key 00 01 .. 0f and messages 00, 00 01, .. (Aumasson & Bernstein's
  // reference vectors); the window takes 2-byte code units, so the even lengths are checked.
  const vectors = [
    '726fdb47dd0e0e31', '0d6c8009d9a94f5a', 'cf2794e0277187b7', 'cbc9466e58fee3ce', '93f5f5799a932462', '7a5dbbc594ddb9f3',
    '751e8fbc860ee5fb', 'f723ca908e7af2ee', '3f2acc7f57c29bdb', '4bc1b3f0968dd39c', 'bed65cf21aa2ee98', '93536795e3a33e88',
    'b8ad50c6f649af94', '17d835b85bbb15f3', 'de4daaaca71dc9a5', 'ad87a3535c49ef28', '7127512f72f27cce', '12e0b01abb051238',
    '314dffbe0815a3b4', 'cadcd4e59ef40c4d', '0e3ea96b5304a7d0', '187306c89bc215a9', 'f935451de4f21df2', 'db9acddff56ca510',
    'e612a3cb9ecba951', 'ee64435a9752fe72', '0a8787bf8ecb74b2', '7fa8220ba3b2ecea', 'b78dbfaf3a8d83bd', '60e61c23a3795013',
    '6ca4ecb15c5f91e1', 'e51b38608ef25f57',
  ];
  const key = new Int32Array([0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c]);
  const hex = (out: Int32Array) => (out[1] >>> 0).toString(16).padStart(8, '0') + (out[0] >>> 0).toString(16).padStart(8, '0');
  const units = (bytes: number) => String.fromCharCode(...Array.from({ length: bytes / 2 }, (_, i) => (2 * i) | ((2 * i + 1) << 8)));

  it('matches the SipHash-2-4 reference vectors, however the message is split in three', () => {
    const out = new Int32Array(2);
    vectors.forEach((want, i) => {
      const s = units(2 * i);
      sipHash(key, 2, 4, false, s, '', '', out);
      assert.equal(hex(out), want, `${2 * i} bytes`);
      const third = Math.floor(s.length / 3);
      sipHash(key, 2, 4, false, s.slice(0, third), s.slice(third, 2 * third), s.slice(2 * third), out);
      assert.equal(hex(out), want, `${2 * i} bytes in three parts`);
    });
  });

  it('framed, the parts\' boundaries count: ("ab","c") and ("a","bc") differ', () => {
    const a = new Int32Array(2), b = new Int32Array(2);
    sipHash(key, 1, 3, true, 't', 'ab', 'c', a);
    sipHash(key, 1, 3, true, 't', 'a', 'bc', b);
    assert.notEqual(hex(a), hex(b));
  });
});

describe('dedup window - semantics', () => {
  it('a copy is a duplicate within windowMs of the first, by receive time, and not after', () => {
    const w = new DedupWindow(10_000);
    w.remember([m('a', 1_000)]);
    assert.equal(w.isDuplicate(m('a', 1_000)), true);
    assert.equal(w.isDuplicate(m('a', 11_000)), true, 'exactly windowMs later');
    assert.equal(w.isDuplicate(m('a', 11_001)), false);
    assert.equal(w.isDuplicate(m('a', 5_000, 'other')), false, 'another device');
    assert.equal(w.isDuplicate(m('a', 5_000, 'd', 'other')), false, 'another tenant');
    assert.equal(w.isDuplicate(m('b', 5_000)), false);
  });

  it('the first copy\'s time counts: a copy stored within the window does not extend it', () => {
    const w = new DedupWindow(10_000);
    w.remember([m('a', 0)]);
    w.remember([m('a', 8_000)]);
    assert.equal(w.size, 1);
    assert.equal(w.isDuplicate(m('a', 10_000)), true);
    assert.equal(w.isDuplicate(m('a', 12_000)), false, 'the window ran from 0, not 8 000');
  });

  it('a copy stored again after the window restarts it, as the newest id', () => {
    const w = new DedupWindow(10_000, 2);
    w.remember([m('a', 0), m('b', 5_000)]);
    w.remember([m('a', 10_001)]);
    assert.equal(w.isDuplicate(m('a', 20_000)), true, 'restarted at 10 001');
    w.remember([m('c', 12_000)]); // over the bound: b, now the oldest, goes, not a
    assert.equal(w.size, 2);
    assert.equal(w.isDuplicate(m('b', 12_000)), false);
    assert.equal(w.isDuplicate(m('a', 12_000)), true);
    assert.equal(w.isDuplicate(m('c', 12_000)), true);
  });

  it('ids older than the newest minus windowMs are forgotten', () => {
    const w = new DedupWindow(10_000);
    w.remember([m('a', 0), m('b', 5_000)]);
    w.remember([m('c', 14_000)]);
    assert.equal(w.size, 2, 'a fell out of the window');
    assert.equal(w.isDuplicate(m('a', 1_000)), false);
    assert.equal(w.isDuplicate(m('b', 6_000)), true);
  });

  it('past maxIds the oldest are forgotten first', () => {
    const w = new DedupWindow(60_000, 3);
    w.remember([m('a', 1), m('b', 2), m('c', 3), m('d', 4), m('e', 5)]);
    assert.equal(w.size, 3);
    assert.deepEqual(['a', 'b', 'c', 'd', 'e'].map((id) => w.isDuplicate(m(id, 10))), [false, false, true, true, true]);
  });

  it('load keeps the store\'s order (oldest first) for forgetting', () => {
    const w = new DedupWindow(60_000, 2);
    w.load([m('a', 1_000), m('b', 2_000)]);
    w.load([m('c', 3_000)]);
    assert.equal(w.size, 2);
    assert.deepEqual(['a', 'b', 'c'].map((id) => w.isDuplicate(m(id, 4_000))), [false, true, true]);
  });

  it('holds many ids through the ring\'s growth and many wrap-arounds, forgetting exactly the oldest', () => {
    const max = 5_000;
    const w = new DedupWindow(1e12, max);
    const id = (i: number) => `msg-${i}`;
    let next = 0;
    for (let round = 0; round < 40; round++) {
      const batch = Array.from({ length: 997 }, () => m(id(next), next++));
      w.remember(batch);
      assert.equal(w.size, Math.min(next, max));
    }
    // ~8 times around the ring: the newest max ids are held, the one before is not.
    for (let i = next - max; i < next; i++) assert.equal(w.isDuplicate(m(id(i), next)), true, id(i));
    for (let i = 0; i < next - max; i++) assert.equal(w.isDuplicate(m(id(i), next)), false, id(i));
  });

  it('many restarted ids (old ring entries left behind an older id) are compacted away without losing any', () => {
    const w = new DedupWindow(100, 3_000);
    const ref = new MapWindow(100, 3_000);
    // "early" is first in insertion order and stays within the window (its receive time is ahead
    // of the others'), so every restarted id's old entry queues up behind it until the ring,
    // full, compacts (several times over 100 rounds of 500 restarts).
    w.remember([m('early', 100_000)]);
    ref.remember([m('early', 100_000)]);
    let now = 1_000;
    for (let round = 0; round < 100; round++) {
      const batch = Array.from({ length: 500 }, (_, i) => m(`r${i}`, now));
      w.remember(batch);
      ref.remember(batch);
      now += 101;
    }
    assert.equal(w.size, 501);
    assert.equal(w.size, ref.seen.size);
    for (const id of ['early', 'r0', 'r499', 'r500']) {
      for (const t of [now - 101, now, now + 100]) assert.equal(w.isDuplicate(m(id, t)), ref.isDuplicate(m(id, t)), `${id} at ${t}`);
    }
    assert.equal(w.isDuplicate(m('r7', now - 101 + 100)), true);
  });

  it('a batch larger than the ring\'s slack still ends with the newest maxIds ids', () => {
    const w = new DedupWindow(60_000, 10);
    w.remember(Array.from({ length: 5_000 }, (_, i) => m(`b${i}`, i)));
    assert.equal(w.size, 10);
    assert.equal(w.isDuplicate(m('b4989', 5_000)), false);
    assert.equal(w.isDuplicate(m('b4990', 5_000)), true);
  });
});

describe('dedup window - against a Map of string keys', () => {
  for (const [seed, windowMs, maxIds, ids] of [[1, 1_000, 50, 80], [2, 5_000, 2_000, 3_000], [3, 200, 300, 40], [4, 10_000, 1, 5]] as const) {
    it(`gives the same answers over random operations (seed ${seed}, window ${windowMs} ms, ${maxIds} ids)`, () => {
      const rnd = prng(seed);
      const w = new DedupWindow(windowMs, maxIds);
      const ref = new MapWindow(windowMs, maxIds);
      const pick = (time: number) => m(`id-${Math.floor(rnd() * ids)}`, time, `d${Math.floor(rnd() * 3)}`);
      let now = 0;
      for (let op = 0; op < 5_000; op++) {
        now += Math.floor(rnd() * windowMs * 0.05);
        // Receive times mostly rising, sometimes a little late (a batch from a slower source).
        const batch = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => pick(now - Math.floor(rnd() * rnd() * windowMs * 0.5)));
        for (const x of batch) assert.equal(w.isDuplicate(x), ref.isDuplicate(x), `op ${op}: ${messageKey(x)} at ${x.receiveTime}`);
        if (rnd() < 0.3) w.load(batch), ref.remember(batch);
        else w.remember(batch), ref.remember(batch);
        assert.equal(w.size, ref.seen.size, `op ${op}: size`);
      }
      // Every id both know of, at a few times.
      for (let i = 0; i < ids; i++) {
        for (const dt of [0, windowMs / 2, windowMs]) {
          const x = m(`id-${i}`, now + dt, 'd1');
          assert.equal(w.isDuplicate(x), ref.isDuplicate(x), `${messageKey(x)} at ${x.receiveTime}`);
        }
      }
    });
  }
});
