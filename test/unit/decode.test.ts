import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEnvelope } from '../../src/process/decode.js';
import type { Envelope } from '../../src/core/envelope.js';

const env = (payload: string | Uint8Array, extra: Partial<Envelope> = {}): Envelope => ({
  tenant: 't1', project: 'p', device: 'd', kind: 'telemetry', topic: 'devices/d/telemetry', protocol: 'mqtt',
  receiveTime: 1000, messageId: 'gen-1', payload: typeof payload === 'string' ? Buffer.from(payload) : payload, ...extra,
});
const pairs = (payload: string, extra?: Partial<Envelope>) => decodeEnvelope(env(payload, extra)).points.map((p) => [p.key, p.value, p.ts, p.messageId]);

test('decode - flattens nested objects, keeps types, takes ts and id', () => {
  assert.deepEqual(pairs('{"ts":5000,"id":"m1","t":21.5,"s":"ok","b":false,"n":{"x":{"y":1}},"arr":[1,2],"nil":null}'), [
    ['t', 21.5, 5000, 'm1'], ['s', 'ok', 5000, 'm1'], ['b', false, 5000, 'm1'], ['n.x.y', 1, 5000, 'm1'], ['arr', '[1,2]', 5000, 'm1'],
  ]);
});

test('decode - device time falls back to the envelope, then the receive time', () => {
  assert.deepEqual(pairs('{"v":1}', { deviceTime: 777 }), [['v', 1, 777, 'gen-1']]);
  assert.deepEqual(pairs('{"v":1}'), [['v', 1, 1000, 'gen-1']]);
  assert.deepEqual(pairs('{"v":1,"ts":"1970-01-01T00:00:02.000Z"}'), [['v', 1, 2000, 'gen-1']]);
});

test('decode - arrays give each element its own id; ThingsBoard values are understood', () => {
  assert.deepEqual(pairs('[{"v":1},{"v":2,"id":"own"}]'), [['v', 1, 1000, 'gen-1:0'], ['v', 2, 1000, 'own']]);
  assert.deepEqual(pairs('{"ts":9,"values":{"a":1}}'), [['a', 1, 9, 'gen-1']]);
});

test('decode - empty, {} and scalars are archived without points; bad JSON and binary are dead letters', () => {
  for (const p of ['', '{}', '42', '"text"']) {
    const d = decodeEnvelope(env(p));
    assert.equal(d.points.length, 0, p);
    assert.equal(d.deadLetter, undefined, p);
    assert.equal(Buffer.from(d.message.payload).toString(), p);
  }
  const bad = decodeEnvelope(env('{"a":'));
  assert.match(bad.deadLetter!.reason, /not valid JSON/);
  const bin = decodeEnvelope(env(new Uint8Array([0xff, 0xfe, 0x00])));
  assert.match(bin.deadLetter!.reason, /UTF-8/);
  assert.equal(bin.message.payload.length, 3);
});
