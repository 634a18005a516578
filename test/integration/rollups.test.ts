/**
 * @module End to end over a running node: telemetry sent over HTTP out of order, in several
 * requests, some of them again (duplicates), and a late point after the fact; the history
 * endpoint then answers interval=1m/1h from the roll-ups with the right buckets and says so
 * (`resolution`), gives the same buckets as raw points would for unaligned ranges, picks raw
 * for intervals that are not whole minutes, answers long raw listings with roll-ups, and
 * refuses a resolution that does not fit the interval.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** An hour boundary five hours ago: recent enough for raw retention, in the past for every point. */
const BASE = Math.floor((Date.now() - 5 * HOUR) / HOUR) * HOUR;

interface Sent { ts: number; id: string; temp: number }

/** Three hours of points, with some on minute and hour edges. */
const SENT: Sent[] = Array.from({ length: 60 }, (_, i) => ({
  ts: BASE + ((i * 7919) % 180) * MIN + (i % 3 === 0 ? 0 : ((i * 13) % 60) * 1000),
  id: `e-${i}`,
  temp: ((i * 37) % 100) - 50,
})).concat([
  { ts: BASE + HOUR - 1, id: 'edge-1', temp: 99 },
  { ts: BASE + HOUR, id: 'edge-2', temp: -99 },
  { ts: BASE + 2 * HOUR - 1, id: 'edge-3', temp: 7 },
]);

/** Buckets written out longhand: points sorted by (time, id), grouped by bucket start. */
function reference(points: Sent[], width: number, from = -Infinity, to = Infinity) {
  const sorted = points.filter((p) => p.ts >= from && p.ts < to).sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : 1));
  const groups = new Map<number, Sent[]>();
  for (const p of sorted) {
    const b = Math.floor(p.ts / width) * width;
    groups.set(b, [...(groups.get(b) ?? []), p]);
  }
  return [...groups].sort((a, b) => a[0] - b[0]).map(([ts, ps]) => {
    const vals = ps.map((p) => p.temp);
    const sum = vals.reduce((s, v) => s + v, 0);
    return { ts, count: ps.length, min: Math.min(...vals), max: Math.max(...vals), sum, avg: sum / ps.length, first: vals[0], last: vals[vals.length - 1] };
  });
}

const stats = (b: any) => ({ ts: b.ts, count: b.count, min: b.min, max: b.max, sum: b.sum, avg: b.avg, first: b.first, last: b.last });

describe('roll-ups over a running node', () => {
  let t: TestNode;
  let token: string;
  const send = async (points: Sent[]) => {
    const r = await fetch(`${t.url}/api/v1/devices/probe/telemetry`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(points),
    });
    assert.equal(r.status, 202, await r.text());
  };
  const history = (query: string) => t.api('GET', `/api/v1/devices/probe/telemetry?key=temp&${query}`);
  const rawCount = async () => {
    const r = await history(`from=${BASE}&to=${BASE + 3 * HOUR}&resolution=raw&limit=10000`);
    return r.body.items?.length ?? 0;
  };

  before(async () => {
    t = await startTestNode();
    token = await t.createDevice('probe');
    // Out of order: newest first, interleaved, cut into requests; the second request is sent twice.
    const shuffled = [...SENT].sort((a, b) => ((b.ts * 31) % 1009) - ((a.ts * 31) % 1009) || b.ts - a.ts);
    const parts = [shuffled.slice(0, 20), shuffled.slice(20, 35), shuffled.slice(35)];
    await send(parts[0]);
    await send(parts[1]);
    await send(parts[1]);
    await send(parts[2]);
    await send(parts[0].slice(0, 5));
    await waitFor(async () => (await rawCount()) === SENT.length, { what: `${SENT.length} raw points stored`, timeoutMs: 20_000 });
  });
  after(() => t?.stop());

  it('interval=1m reads the minute roll-ups: every statistic per bucket, each message counted once', async () => {
    const r = await history(`from=${BASE}&to=${BASE + 3 * HOUR}&interval=1m&agg=avg`);
    assert.equal(r.status, 200);
    assert.equal(r.body.resolution, '1m');
    assert.equal(r.body.interval, MIN);
    assert.deepEqual(r.body.buckets.map(stats), reference(SENT, MIN));
    assert.deepEqual(r.body.buckets.map((b: any) => b.value), reference(SENT, MIN).map((b) => b.avg));
  });

  it('interval=1h (and 2h) reads the hourly roll-ups', async () => {
    const r = await history(`from=${BASE}&to=${BASE + 3 * HOUR}&interval=1h&agg=max`);
    assert.equal(r.body.resolution, '1h');
    assert.deepEqual(r.body.buckets.map(stats), reference(SENT, HOUR));
    assert.deepEqual(r.body.buckets.map((b: any) => b.value), reference(SENT, HOUR).map((b) => b.max));
    const two = await history(`from=${BASE}&to=${BASE + 3 * HOUR}&interval=2h&agg=count`);
    assert.equal(two.body.resolution, '1h');
    assert.deepEqual(two.body.buckets.map((b: any) => [b.ts, b.value]), reference(SENT, 2 * HOUR).map((b) => [b.ts, b.count]));
  });

  it('an unaligned range gives the same buckets from roll-ups as from raw points', async () => {
    const from = BASE + 17 * MIN + 500;
    const to = BASE + 2 * HOUR + 3 * MIN + 1;
    for (const [interval, agg] of [['1h', 'sum'], ['1h', 'last'], ['1m', 'min'], ['1h', 'count']]) {
      const viaRollups = await history(`from=${from}&to=${to}&interval=${interval}&agg=${agg}`);
      const viaRaw = await history(`from=${from}&to=${to}&interval=${interval}&agg=${agg}&resolution=raw`);
      assert.equal(viaRollups.body.resolution, interval);
      assert.equal(viaRaw.body.resolution, 'raw');
      const brief = (b: any) => [b.ts, b.value, b.count];
      assert.deepEqual(viaRollups.body.buckets.map(brief), viaRaw.body.buckets.map(brief), `${interval} ${agg}`);
      assert.ok(viaRaw.body.buckets.length > 0);
    }
    const partial = await history(`from=${from}&to=${to}&interval=1h&agg=count`);
    assert.deepEqual(partial.body.buckets.map(stats), reference(SENT, HOUR, from, to));
  });

  it('an interval that is not a whole number of minutes reads raw points', async () => {
    const r = await history(`from=${BASE}&to=${BASE + HOUR}&interval=90s&agg=count`);
    assert.equal(r.body.resolution, 'raw');
    assert.deepEqual(r.body.buckets.map((b: any) => [b.ts, b.value]), reference(SENT, 90_000, BASE, BASE + HOUR).map((b) => [b.ts, b.count]));
  });

  it('a raw listing over a long range with more points than a page answers with roll-ups (1m up to 7 days, 1h beyond); others stay raw', async () => {
    const week = await history(`from=${BASE - 4 * DAY}&to=${BASE + 3 * HOUR}&limit=10`);
    assert.equal(week.body.resolution, '1m');
    assert.deepEqual(week.body.buckets.map(stats), reference(SENT, MIN));
    const month = await history(`from=${BASE - 20 * DAY}&to=${BASE + DAY}&limit=10`);
    assert.equal(month.body.resolution, '1h');
    assert.deepEqual(month.body.buckets.map(stats), reference(SENT, HOUR));
    const short = await history(`from=${BASE}&to=${BASE + DAY}&limit=10`);
    assert.equal(short.body.resolution, 'raw', 'three days or less: raw, paged');
    assert.equal(short.body.items.length, 10);
    assert.equal(typeof short.body.next, 'string');
    const fits = await history(`from=${BASE - 20 * DAY}&to=${BASE + DAY}&limit=10000`);
    assert.equal(fits.body.resolution, 'raw', 'long, but every point fits in one page');
    assert.equal(fits.body.items.length, SENT.length);
    const forced = await history(`from=${BASE}&to=${BASE + 3 * HOUR}&resolution=1h`);
    assert.equal(forced.body.resolution, '1h');
    assert.deepEqual(forced.body.buckets.map(stats), reference(SENT, HOUR));
  });

  it('bad combinations are refused with a reason: resolution that does not divide the interval, roll-ups without a key', async () => {
    const r = await history(`from=${BASE}&to=${BASE + HOUR}&interval=90s&resolution=1m`);
    assert.equal(r.status, 400);
    assert.match(r.body.message, /resolution 1m/);
    const noKey = await t.api('GET', `/api/v1/devices/probe/telemetry?from=${BASE}&to=${BASE + HOUR}&resolution=1h`);
    assert.equal(noKey.status, 400);
    assert.match(noKey.body.message, /"key"/);
    const badRes = await history(`from=${BASE}&to=${BASE + HOUR}&resolution=5m`);
    assert.equal(badRes.status, 400);
  });

  it('a late message corrects its bucket; sending it again changes nothing', async () => {
    const late: Sent = { ts: BASE + 5_000, id: 'late-1', temp: 1000 };
    const before = reference(SENT, MIN)[0];
    await send([late]);
    const bucket = async () => (await history(`from=${BASE}&to=${BASE + MIN}&interval=1m&agg=max`)).body.buckets[0];
    const after = await waitFor(async () => { const b = await bucket(); return b?.count === before.count + 1 ? b : undefined; }, { what: 'late point in its minute' });
    assert.deepEqual(stats(after), reference([...SENT, late], MIN)[0]);
    assert.equal(after.value, 1000);
    // Again, then a marker point: once the marker is stored, the duplicate has been through too.
    await send([late]);
    await send([{ ts: BASE + 3 * HOUR - 1, id: 'marker', temp: 0 }]);
    await waitFor(async () => (await rawCount()) === SENT.length + 2, { what: 'marker stored' });
    assert.deepEqual(stats(await bucket()), reference([...SENT, late], MIN)[0]);
    const hour = (await history(`from=${BASE}&to=${BASE + HOUR}&interval=1h&agg=count`)).body.buckets[0];
    assert.equal(hour.value, reference([...SENT, late], HOUR)[0].count);
  });
});
