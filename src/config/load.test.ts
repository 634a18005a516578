import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFluxgateError } from '../core/errors.js';
import { loadConfig } from './load.js';

test('defaults < env < flags; numbers and booleans coerced', () => {
  const c = loadConfig({ env: { FLUXGATE_HTTP_PORT: '9000', FLUXGATE_MQTT_ENABLED: 'false' }, flags: { 'http-port': '9100' } });
  assert.equal(c.http.port, 9100);
  assert.equal(c.mqtt.enabled, false);
  assert.equal(c.dataDir, './data');
});

test('lists (templates, bridges) come from the environment as JSON', () => {
  const templates = [{ id: 'mtic', pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#', autoProvision: true }];
  const c = loadConfig({ env: { FLUXGATE_TEMPLATES: JSON.stringify(templates) } });
  assert.deepEqual(c.templates.map((t) => [t.id, t.pattern, t.autoProvision]), [['mtic', templates[0].pattern, true]]);
});

test('every problem at once, each naming its setting, env and flag', () => {
  assert.throws(() => loadConfig({ env: { FLUXGATE_TEMPLATES: '[{"id": "x"', FLUXGATE_HTTP_PORT: 'eighty' } }), (err: unknown) => {
    assert.ok(isFluxgateError(err, 'CONFIG_INVALID'));
    const msg = (err as Error).message;
    assert.match(msg, /templates \(--templates, FLUXGATE_TEMPLATES\)/);
    assert.match(msg, /http\.port \(--http-port, FLUXGATE_HTTP_PORT\)/);
    return true;
  });
});
