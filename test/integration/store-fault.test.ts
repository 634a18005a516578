/**
 * Fault test (issue 6): the store stalls, goes down, and refuses its data path for a while,
 * behind a wrapper around the real embedded store (test/helpers/faulty-store.ts), while an HTTP
 * client and an MQTT 5 client send with acknowledgements (202, PUBACK). No acknowledged message
 * is lost: failures are retried (the log holds the batch) or, once process.retryMaxAttempts run
 * out, land in the dead-letter queue with their reason and bytes; after a replay over REST the
 * store holds every acknowledged message exactly once, read back by message id from the raw
 * archive and from history. Retries and resends of already stored ids do not add copies.
 * Runs on the embedded store and on PostgreSQL (a random schema; skipped when unreachable).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { StoreFaults } from '../helpers/faulty-store.js';
import { waitFor } from '../helpers/wait.js';
import { STORE_BACKENDS, PG_URL, pgAvailable } from '../helpers/store-backends.js';

for (const backend of STORE_BACKENDS) describe(`store faults (${backend.name} store)`, { skip: backend.name === 'postgres' && !(await pgAvailable()) ? `PostgreSQL not reachable at ${PG_URL}` : false }, () => {
  const faults = new StoreFaults();
  const { store, cleanup } = backend.setup();
  let t: TestNode;
  let httpToken: string;
  let client: MqttClient;
  const started = Date.now() - 60_000;
  /** Every message id acknowledged to a client, per device. */
  const acked = { 'f-http': new Set<string>(), 'f-mqtt': new Set<string>() };
  /** The value `v` each acknowledged message carried (unique per device). */
  const values: number[] = [];
  let n = 0;

  before(async () => {
    t = await startTestNode({ store, process: { retryMaxAttempts: 3, retryBaseMs: 10, retryMaxMs: 50, batchSize: 20 } }, undefined, { wrapStore: faults.wrap });
    httpToken = await t.createDevice('f-http');
    const mqttToken = await t.createDevice('f-mqtt');
    const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: mqttToken, protocolVersion: 5, reconnectPeriod: 0, clientId: 'f-mqtt' });
  });
  after(async () => {
    await client?.endAsync();
    await t?.stop();
    await cleanup();
  });

  /** Sends `count` messages from each client, no `ts` (so only the id de-duplicates), each acknowledged. */
  async function send(count: number, tag: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const v = ++n;
      values.push(v);
      const hid = `${tag}-h-${v}`;
      const r = await fetch(`${t.url}/api/v1/devices/f-http/telemetry`, {
        method: 'POST', headers: { authorization: `Bearer ${httpToken}`, 'content-type': 'application/json', 'idempotency-key': hid }, body: JSON.stringify({ v }),
      });
      assert.equal(r.status, 202);
      acked['f-http'].add(hid);
      const mid = `${tag}-m-${v}`;
      // Half carry the id as a v5 user property, half in the JSON payload.
      if (v % 2) await client.publishAsync('devices/f-mqtt/telemetry', JSON.stringify({ v }), { qos: 1, properties: { userProperties: { id: mid } } });
      else await client.publishAsync('devices/f-mqtt/telemetry', JSON.stringify({ v, id: mid }), { qos: 1 });
      acked['f-mqtt'].add(mid);
    }
  }

  const lag = () => t.node.log.pressure().lagRecords;

  async function storedIds(device: string): Promise<string[]> {
    const ids: string[] = [];
    let after: string | undefined;
    do {
      const r = await t.api('GET', `/api/v1/messages?device=${device}&from=${started}&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      ids.push(...r.body.items.map((m: any) => m.messageId));
      after = r.body.next;
    } while (after);
    return ids;
  }

  async function history(device: string): Promise<number[]> {
    const r = await t.api('GET', `/api/v1/devices/${device}/telemetry?key=v&from=${started}&limit=10000`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.items.map((p: any) => p.value);
  }

  it('a stalled store: messages are acknowledged meanwhile and stored once it moves again', async () => {
    faults.set('stall');
    await send(15, 'stall');
    await waitFor(() => faults.stalled > 0, { what: 'a write waiting in the stall' });
    assert.ok(lag() > 0, 'the log holds what the stalled store has not taken');
    faults.set('ok');
    await waitFor(() => lag() === 0, { what: 'processing caught up', timeoutMs: 30_000 });
    assert.equal((await storedIds('f-http')).length, 15);
  });

  it('a store that is down: writes are retried (never committed past), the first batch may be dead-lettered, nothing is lost', async () => {
    faults.set('fail');
    const before = faults.failed;
    await send(15, 'down');
    await waitFor(() => faults.failed >= before + 5, { what: 'several failed attempts' });
    assert.ok(lag() > 0, 'the log keeps the batches while the store is down');
    const ready = await t.api('GET', '/readyz');
    assert.match(JSON.stringify(ready.body), /store failing, retrying/);
    faults.set('ok');
    await waitFor(() => lag() === 0, { what: 'processing caught up', timeoutMs: 30_000 });
  });

  it('a store that refuses its data path past the retries: the messages land in dead letters with reason and bytes', async () => {
    faults.set('fail-data');
    await send(15, 'data');
    await waitFor(() => lag() === 0, { what: 'every batch dead-lettered', timeoutMs: 30_000 });
    faults.set('ok');
    const letters = await t.api('GET', '/api/v1/dead-letters?reason=store%20write%20failed&limit=1000');
    assert.equal(letters.status, 200);
    const data = letters.body.items.filter((d: any) => d.messageId.startsWith('data-'));
    assert.equal(data.length, 30, 'every message of the refused batches is a dead letter');
    const one = data.find((d: any) => d.device === 'f-http');
    assert.match(one.reason, /^store write failed after 3 attempts: injected store failure/);
    assert.equal(one.kind, 'telemetry');
    assert.deepEqual(Object.keys(JSON.parse(one.payload)), ['v'], 'the original bytes are kept');
    const byDevice = await t.api('GET', '/api/v1/dead-letters?device=f-mqtt&limit=1000');
    assert.ok(byDevice.body.items.length >= 15 && byDevice.body.items.every((d: any) => d.device === 'f-mqtt'));
  });

  it('after a replay (and resends of stored ids) the store holds every acknowledged message exactly once', async () => {
    // Clients retry some messages that are already stored, without ts: the window drops them.
    const resend = [...acked['f-http']].slice(0, 5);
    for (const id of resend) {
      const r = await fetch(`${t.url}/api/v1/devices/f-http/telemetry`, {
        method: 'POST', headers: { authorization: `Bearer ${httpToken}`, 'content-type': 'application/json', 'idempotency-key': id }, body: '{"v":-1}',
      });
      assert.equal(r.status, 202);
    }
    const replay = await t.api('POST', '/api/v1/dead-letters/replay', {});
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.ok(replay.body.replayed >= 30);
    // Replaying the same selection again is harmless: the ids are de-duplicated.
    await waitFor(async () => lag() === 0 && (await t.api('GET', '/api/v1/dead-letters')).body.items.length === 0, { what: 'the replay processed and the queue empty', timeoutMs: 30_000 });
    for (const device of ['f-http', 'f-mqtt'] as const) {
      const ids = await storedIds(device);
      assert.deepEqual([...ids].sort(), [...acked[device]].sort(), `${device}: the raw archive holds every acknowledged id once`);
      const hist = await history(device);
      assert.deepEqual([...hist].sort((a, b) => a - b), values, `${device}: history holds one point per acknowledged message (no resent -1)`);
    }
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /fluxgate_store_write_retries_total [1-9]/);
    assert.match(metrics, /fluxgate_dead_letters_total\{tenant="default",reason="store_failed"\} [1-9]/);
    assert.match(metrics, /fluxgate_dead_letters_replayed_total\{tenant="default"\} [1-9]/);
    assert.match(metrics, /fluxgate_duplicates_dropped_total\{tenant="default"\} [1-9]/);
  });
});
