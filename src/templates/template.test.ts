import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileTemplate, matchFirst, matchTemplate, templateProblems } from './template.js';

const mtic = compileTemplate({ id: 'mtic', pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#' });

test('the seed template takes tenant, project and device from the topic', () => {
  assert.deepEqual(
    { ...matchTemplate(mtic, 'mtic/msg/client/realtime/acme/plant-1/pump-7/data/x'), template: undefined },
    { template: undefined, tenant: 'acme', project: 'plant-1', device: 'pump-7', kind: 'telemetry' },
  );
  // `#` also matches nothing after the device.
  assert.equal(matchTemplate(mtic, 'mtic/msg/client/realtime/acme/plant-1/pump-7')?.device, 'pump-7');
  assert.equal(matchTemplate(mtic, 'mtic/msg/client/realtime/acme/plant-1'), undefined);
  assert.equal(matchTemplate(mtic, 'other/msg/client/realtime/acme/plant-1/pump-7'), undefined);
});

test('fixed tenant and project, {kind} words, + levels and exact length', () => {
  const t = compileTemplate({ id: 'k', pattern: 'site/+/{device}/{kind}', tenant: 'acme', project: 'p', kinds: { evt: 'event' } });
  assert.equal(matchTemplate(t, 'site/x/d1/events')?.kind, 'event');
  assert.equal(matchTemplate(t, 'site/x/d1/evt')?.kind, 'event');
  assert.equal(matchTemplate(t, 'site/x/d1/snapshot')?.kind, 'snapshot');
  assert.equal(matchTemplate(t, 'site/x/d1/unknown'), undefined);
  assert.equal(matchTemplate(t, 'site/x/d1/telemetry/extra'), undefined);
  const m = matchTemplate(t, 'site/x/d1/attributes')!;
  assert.deepEqual([m.tenant, m.project, m.device, m.kind], ['acme', 'p', 'd1', 'attributes']);
});

test('captured levels must be identifiers; $-topics never match', () => {
  assert.equal(matchTemplate(mtic, 'mtic/msg/client/realtime/acme/plant 1/pump/x'), undefined);
  assert.equal(matchTemplate(mtic, 'mtic/msg/client/realtime/acme//pump'), undefined);
  const any = compileTemplate({ id: 'a', pattern: '{device}/#', tenant: 't' });
  assert.equal(matchTemplate(any, '$SYS/broker'), undefined);
});

test('problems are listed by field, all at once', () => {
  const p = templateProblems({ id: 'bad id!', pattern: 'a/{tenant}/#/{x}', tenant: 't', kind: 'nope' as never });
  assert.ok(p.some((s) => s.startsWith('id:')));
  assert.ok(p.some((s) => s.includes('"#" must be the last level')));
  assert.ok(p.some((s) => s.includes('{x}')));
  assert.ok(p.some((s) => s.includes('must capture {device}')));
  assert.ok(p.some((s) => s.startsWith('tenant:')));
  assert.ok(p.some((s) => s.startsWith('kind:')));
  assert.throws(() => compileTemplate({ id: 'x', pattern: 'a/b' }), /must capture \{device\}/);
});

test('matchFirst takes the first template that fits', () => {
  const specific = compileTemplate({ id: 's', pattern: 'mtic/msg/client/realtime/acme/{project}/{device}/alarm', kind: 'event', tenant: 'acme' });
  assert.equal(matchFirst([specific, mtic], 'mtic/msg/client/realtime/acme/p/d/alarm')?.kind, 'event');
  assert.equal(matchFirst([specific, mtic], 'mtic/msg/client/realtime/acme/p/d/data')?.kind, 'telemetry');
  assert.equal(matchFirst([specific, mtic], 'nothing/here'), undefined);
});

test('the native layouts devices/… and v1/devices/me/… cannot be taken by a template', () => {
  assert.ok(templateProblems({ id: 'n', pattern: 'devices/{device}/data', tenant: 't' }).some((s) => s.includes('native layout')));
  assert.ok(templateProblems({ id: 'n', pattern: 'v1/devices/me/{device}' }).some((s) => s.includes('native layout')));
  assert.deepEqual(templateProblems({ id: 'n', pattern: 'gw/devices/{device}' }), []);
});
