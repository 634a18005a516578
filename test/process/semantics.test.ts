/**
 * Unit tests of the processing parts: same-value suppression (window, late data, overlay
 * committed only on success, bound), the de-duplication window (loaded from the store's record,
 * restarted after the window), back-off (exponential, capped, jittered, exhaustion), project
 * settings (classification by a payload field, the field not stored, the cache's refresh).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SameValueFilter } from '../../src/process/suppress.js';
import { DedupWindow } from '../../src/process/dedup.js';
import { backoffMs, exhausted } from '../../src/process/retry.js';
import { kindFromField, ProjectSettingsCache, PROJECT_SETTINGS_KIND } from '../../src/process/settings.js';
import { decodeEnvelope } from '../../src/process/decode.js';
import type { Envelope } from '../../src/core/envelope.js';
import type { StoredObject, TelemetryPoint, Value } from '../../src/stores/store.js';

const p = (ts: number, value: Value, key = 'v'): TelemetryPoint => ({ tenant: 't', project: 'p', device: 'd', key, ts, value, messageId: `m${ts}` });

describe('same-value suppression', () => {
  it('drops repeats within the window, keeps changes, late points and the first point after the window', () => {
    const f = new SameValueFilter();
    const pass = f.begin();
    const kept = [p(0, 5), p(10, 5), p(59_999, 5), p(60_000, 5), p(70_000, 6), p(30_000, 6), p(80_000, 6), p(80_000, 7, 'w')]
      .filter((x) => !pass.suppress(x, 60_000)).map((x) => [x.key, x.ts, x.value]);
    assert.deepEqual(kept, [['v', 0, 5], ['v', 60_000, 5], ['v', 70_000, 6], ['v', 30_000, 6], ['w', 80_000, 7]]);
  });

  it('decides on an overlay: nothing counts as stored until commit', () => {
    const f = new SameValueFilter();
    const failed = f.begin();
    assert.equal(failed.suppress(p(0, 1), 60_000), false);
    // Not committed (the write failed): the retry's pass must store the point again.
    const retry = f.begin();
    assert.equal(retry.suppress(p(0, 1), 60_000), false);
    retry.commit();
    assert.equal(f.begin().suppress(p(1_000, 1), 60_000), true);
  });

  it('keeps at most maxKeys series, forgetting the least recently stored (the next point is then stored)', () => {
    const f = new SameValueFilter(2);
    const pass = f.begin();
    for (const k of ['a', 'b', 'c']) pass.suppress(p(0, 1, k), 60_000);
    pass.commit();
    const next = f.begin();
    assert.equal(next.suppress(p(1, 1, 'a'), 60_000), false, 'a was forgotten');
    assert.equal(next.suppress(p(1, 1, 'c'), 60_000), true);
  });
});

describe('de-duplication window', () => {
  const m = (messageId: string, receiveTime: number) => ({ tenant: 't', device: 'd', messageId, receiveTime });
  it('loaded from the store\'s record, it knows ids stored before a restart', () => {
    const w = new DedupWindow(10_000);
    w.load([m('a', 1_000), m('b', 2_000)]);
    assert.equal(w.size, 2);
    assert.equal(w.isDuplicate(m('a', 5_000)), true);
    assert.equal(w.isDuplicate(m('a', 11_001)), false, 'outside the window');
    assert.equal(w.isDuplicate(m('c', 5_000)), false);
  });

  it('an id stored again after the window restarts its window', () => {
    const w = new DedupWindow(10_000);
    w.remember([m('a', 0)]);
    w.remember([m('a', 20_000)]);
    assert.equal(w.isDuplicate(m('a', 25_000)), true);
  });
});

describe('back-off', () => {
  it('doubles from baseMs up to maxMs, with jitter between half and the whole step', () => {
    const policy = { maxAttempts: 5, baseMs: 100, maxMs: 1_000 };
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffMs(policy, a, () => 1)), [100, 200, 400, 800, 1_000, 1_000]);
    assert.deepEqual([1, 2, 3].map((a) => backoffMs(policy, a, () => 0)), [50, 100, 200]);
    assert.equal(exhausted(policy, 4), false);
    assert.equal(exhausted(policy, 5), true);
    assert.equal(exhausted({ ...policy, maxAttempts: 0 }, 1_000), false, '0 retries for ever');
  });
});

describe('project settings', () => {
  const env = (payload: unknown, kind: Envelope['kind'] = 'telemetry'): Envelope => ({
    tenant: 't', project: 'p', device: 'd', kind, topic: 'devices/d/telemetry', protocol: 'mqtt', receiveTime: 1_000, messageId: 'x', payload: Buffer.from(JSON.stringify(payload)),
  });

  it('a payload field names the kind (mapped or by name); the field is not a point; unknown values keep the topic kind', () => {
    const s = { kindField: 'type', kindValues: { full: 'snapshot' as const } };
    assert.equal(kindFromField(s, 'full'), 'snapshot');
    assert.equal(kindFromField(s, 'events'), 'event');
    assert.equal(kindFromField(s, 'other'), undefined);
    assert.equal(kindFromField(s, { x: 1 }), undefined);
    const d = decodeEnvelope(env({ type: 'full', a: 1 }), s);
    assert.equal(d.message.kind, 'snapshot');
    assert.deepEqual(d.points.map((x) => x.key), ['a']);
    const arr = decodeEnvelope(env([{ type: 'event', a: 1 }, { a: 2 }]), s);
    assert.equal(arr.message.kind, 'event');
    assert.equal(decodeEnvelope(env({ type: 'nope', a: 1 }, 'attributes'), s).message.kind, 'attributes');
    assert.deepEqual(decodeEnvelope(env({ type: 'full', a: 1 })).points.map((x) => x.key), ['type', 'a'], 'without settings the field is data');
  });

  it('the cache reads each project once per ttl and answers {} for a project without settings', async () => {
    let reads = 0;
    const objects = new Map<string, StoredObject>([['t/p', { kind: PROJECT_SETTINGS_KIND, tenant: 't', id: 'p', body: { snapshotReplaces: true }, updatedAt: 0 }]]);
    const cache = new ProjectSettingsCache({ getObject: async (_k, tenant, id) => { reads++; return objects.get(`${tenant}/${id}`); } }, 1_000);
    await cache.load([['t', 'p'], ['t', 'q'], ['t', 'p']], 0);
    assert.equal(reads, 2);
    assert.deepEqual(cache.get('t', 'p'), { snapshotReplaces: true });
    assert.deepEqual(cache.get('t', 'q'), {});
    await cache.load([['t', 'p']], 500);
    assert.equal(reads, 2, 'fresh');
    objects.set('t/p', { kind: PROJECT_SETTINGS_KIND, tenant: 't', id: 'p', body: { snapshotReplaces: false }, updatedAt: 1 });
    await cache.load([['t', 'p']], 1_500);
    assert.deepEqual(cache.get('t', 'p'), { snapshotReplaces: false });
  });
});
