/**
 * Stream semantics over a running node with real HTTP and MQTT clients (issue 6, parts 1, 2, 4):
 * a retry without `ts` that straddles a node restart is stored once, on the embedded store and on
 * PostgreSQL (HTTP Idempotency-Key, MQTT 5
 * user property `id`, JSON `id`), out-of-order and duplicated input gives history once per
 * message and latest by device time, a payload field classifies messages per project, a
 * replacing snapshot reconciles latest state (a late, older one changes nothing), same-value
 * suppression keeps repeats out of history while last seen moves on, and the dead-letter queue
 * filters, discards and replays (a replay that fails again stays queued).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import pg from 'pg';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const T = Date.UTC(2026, 10, 20, 12, 0, 0);

async function ingest(t: TestNode, token: string, device: string, body: unknown, opts: { kind?: string; key?: string } = {}): Promise<void> {
  const r = await fetch(`${t.url}/api/v1/devices/${device}/${opts.kind ?? 'telemetry'}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(opts.key ? { 'idempotency-key': opts.key } : {}) }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 202, await r.text());
}

async function mqttSend(t: TestNode, token: string, version: 4 | 5, topic: string, payload: string, userId?: string): Promise<void> {
  const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: token, protocolVersion: version, reconnectPeriod: 0 });
  try {
    await c.publishAsync(topic, payload, { qos: 1, ...(userId ? { properties: { userProperties: { id: userId } } } : {}) });
  } finally {
    await c.endAsync();
  }
}

async function archive(t: TestNode, device: string): Promise<any[]> {
  const r = await t.api('GET', `/api/v1/messages?device=${device}&from=0&limit=1000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items;
}

async function history(t: TestNode, device: string, key: string): Promise<Array<[number, unknown]>> {
  const r = await t.api('GET', `/api/v1/devices/${device}/telemetry?key=${key}&from=0&resolution=raw&limit=1000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items.map((p: any) => [p.ts, p.value]);
}

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
async function pgAvailable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try { await c.connect(); return true; } catch { return false; } finally { await c.end().catch(() => undefined); }
}
async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`); } finally { await c.end(); }
}

const metric = async (t: TestNode, re: RegExp) => Number(re.exec(await (await fetch(`${t.url}/metrics`)).text())?.[1] ?? 0);

describe('stream semantics', async () => {
  const pgSkip = (await pgAvailable()) ? false : `PostgreSQL not reachable at ${PG_URL}`;
  for (const backend of ['embedded', 'postgres'] as const) it(`a retry without ts that straddles a restart is stored once, over HTTP, MQTT 5 and JSON id, and counted (${backend} store)`, { skip: backend === 'postgres' && pgSkip }, async () => {
    const schema = `fluxgate_test_${randomBytes(6).toString('hex')}`;
    const store = backend === 'postgres' ? { backend: PG_URL, schema } : {};
    const first = await startTestNode({ store });
    const dir = first.dir;
    let second: TestNode | undefined;
    try {
      const token = await first.createDevice('s-dev');
      await ingest(first, token, 's-dev', { temp: 1 }, { key: 'idem-1' });
      await mqttSend(first, token, 5, 'devices/s-dev/telemetry', '{"temp":2}', 'up-1');
      await mqttSend(first, token, 4, 'devices/s-dev/telemetry', '{"temp":3,"id":"json-1"}');
      await waitFor(async () => (await archive(first, 's-dev')).length === 3, { what: 'three messages stored before the restart' });
      await first.node.stop();

      second = await startTestNode({ store }, dir);
      // The devices retry with new receive times and new payloads; only the ids say "same message".
      await ingest(second, token, 's-dev', { temp: 11 }, { key: 'idem-1' });
      await mqttSend(second, token, 5, 'devices/s-dev/telemetry', '{"temp":12}', 'up-1');
      await mqttSend(second, token, 4, 'devices/s-dev/telemetry', '{"temp":13,"id":"json-1"}');
      await ingest(second, token, 's-dev', { temp: 4 }, { key: 'idem-2' });
      await waitFor(async () => (await archive(second!, 's-dev')).some((m) => m.messageId === 'idem-2'), { what: 'the message after the retries processed' });
      assert.deepEqual((await archive(second, 's-dev')).map((m) => m.messageId).sort(), ['idem-1', 'idem-2', 'json-1', 'up-1']);
      assert.deepEqual((await history(second, 's-dev', 'temp')).map(([, v]) => v).sort(), [1, 2, 3, 4]);
      assert.equal(await metric(second, /fluxgate_duplicates_dropped_total\{tenant="default"\} (\d+)/), 3);
    } finally {
      await second?.node.stop();
      if (!second) await first.node.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') await dropSchema(schema);
    }
  });

  describe('on one node', () => {
    let t: TestNode;
    before(async () => { t = await startTestNode(); });
    after(() => t?.stop());

    it('out-of-order and duplicated input: one history row per message, latest by device time', async () => {
      const token = await t.createDevice('o-dev');
      const msgs = [3, 1, 4, 0, 2].map((i) => ({ ts: T + i * 1000, id: `o-${i}`, v: i * 10 }));
      await ingest(t, token, 'o-dev', msgs);
      // Duplicates: the same ids again, over HTTP and MQTT, late and in another order.
      await ingest(t, token, 'o-dev', [msgs[2], msgs[0]]);
      await mqttSend(t, token, 5, 'devices/o-dev/telemetry', JSON.stringify(msgs[1]));
      await ingest(t, token, 'o-dev', { ts: T + 5000, id: 'o-5', v: 50 });
      await waitFor(async () => (await archive(t, 'o-dev')).some((m) => m.messageId === 'o-5'), { what: 'all processed' });
      assert.deepEqual(await history(t, 'o-dev', 'v'), [0, 1, 2, 3, 4, 5].map((i) => [T + i * 1000, i * 10]));
      const latest = await t.api('GET', '/api/v1/devices/o-dev/latest');
      assert.deepEqual(latest.body.latest.v, { value: 50, ts: T + 5000 });
      assert.equal((await archive(t, 'o-dev')).length, 6);
    });

    it('a payload field classifies per project; a replacing snapshot reconciles latest, a late older one changes nothing', async () => {
      const settings = { kindField: 'type', kindValues: { full: 'snapshot', change: 'event' }, snapshotReplaces: true };
      assert.equal((await t.api('POST', '/api/v1/projects', { name: 'cls' })).status, 201);
      const put = await t.api('PUT', '/api/v1/projects/cls/settings', settings);
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual((await t.api('GET', '/api/v1/projects/cls/settings')).body.settings, settings);
      assert.equal((await t.api('PUT', '/api/v1/projects/cls/settings', { kindField: 'type', bogus: 1 })).status, 400, 'unknown settings are refused');
      assert.equal((await t.api('PUT', '/api/v1/projects/nope/settings', {})).status, 404);
      const token = await t.createDevice('c-dev', 'cls');
      await ingest(t, token, 'c-dev', { type: 'full', ts: T, a: 1, b: 2, c: 3 });
      await ingest(t, token, 'c-dev', { type: 'change', ts: T + 1000, d: 9 });
      await ingest(t, token, 'c-dev', { type: 'full', ts: T + 2000, a: 5 });
      await ingest(t, token, 'c-dev', { type: 'full', ts: T + 500, b: 7, c: 7 });
      await ingest(t, token, 'c-dev', { ts: T + 3000, e: 1 });
      await waitFor(async () => (await archive(t, 'c-dev')).length === 5, { what: 'five messages processed' });
      const kinds = (await archive(t, 'c-dev')).map((m) => m.kind);
      assert.deepEqual(kinds, ['snapshot', 'snapshot', 'event', 'snapshot', 'telemetry'], 'kinds by payload field (ordered by device time)');
      assert.deepEqual(await history(t, 'c-dev', 'type'), [], 'the kind field is not a point');
      assert.deepEqual(await history(t, 'c-dev', 'b'), [[T, 2], [T + 500, 7]], 'history keeps every snapshot\'s values');
      const latest = (await t.api('GET', '/api/v1/devices/c-dev/latest')).body;
      assert.deepEqual(Object.keys(latest.latest).sort(), ['a', 'e'], 'keys the newest snapshot lacked are gone; a newer key stays');
      assert.deepEqual(latest.latest.a, { value: 5, ts: T + 2000 });

      // Default project: snapshots do not replace, absent keys are kept.
      const keep = await t.createDevice('k-dev');
      await ingest(t, keep, 'k-dev', { ts: T, a: 1, b: 2 }, { kind: 'snapshot' });
      await ingest(t, keep, 'k-dev', { ts: T + 1000, a: 3 }, { kind: 'snapshot' });
      await waitFor(async () => (await archive(t, 'k-dev')).length === 2, { what: 'k-dev processed' });
      const kept = (await t.api('GET', '/api/v1/devices/k-dev/latest')).body.latest;
      assert.deepEqual(kept, { a: { value: 3, ts: T + 1000 }, b: { value: 2, ts: T } });
    });

    it('same-value suppression keeps repeats out of history, still refreshes last seen, and counts them; events are never suppressed', async () => {
      assert.equal((await t.api('POST', '/api/v1/projects', { name: 'sup' })).status, 201);
      assert.equal((await t.api('PUT', '/api/v1/projects/sup/settings', { suppressSameValueSeconds: 60 })).status, 200);
      const token = await t.createDevice('p-dev', 'sup');
      const before = await metric(t, /fluxgate_suppressed_total\{tenant="default"\} (\d+)/);
      const s = (sec: number, v: number) => ({ ts: T + sec * 1000, v });
      await ingest(t, token, 'p-dev', [s(0, 5), s(10, 5), s(20, 5), s(30, 6), s(100, 6)]);
      await ingest(t, token, 'p-dev', { ts: T + 105_000, v: 6 }, { kind: 'events' });
      await ingest(t, token, 'p-dev', s(110, 6));
      await waitFor(async () => (await archive(t, 'p-dev')).length === 7, { what: 'seven messages processed' });
      assert.deepEqual(await history(t, 'p-dev', 'v'), [[T, 5], [T + 30_000, 6], [T + 100_000, 6], [T + 105_000, 6]]);
      assert.equal(await metric(t, /fluxgate_suppressed_total\{tenant="default"\} (\d+)/) - before, 3);
      const latest = (await t.api('GET', '/api/v1/devices/p-dev/latest')).body;
      assert.equal(latest.lastDeviceTime, T + 110_000, 'the suppressed message moved last seen');
      assert.ok(Math.abs(latest.lastSeen - Date.now()) < 60_000);
      const dev = (await t.api('GET', '/api/v1/devices/p-dev')).body;
      assert.equal(dev.lastSeen, latest.lastSeen);
      assert.equal((await t.api('GET', '/api/v1/devices/o-dev')).body.lastSeen > 0, true);
    });

    it('dead letters: filtered by reason, device and time; discard one; a replay that fails again stays queued', async () => {
      const one = await t.createDevice('dl-1');
      const two = await t.createDevice('dl-2');
      await mqttSend(t, one, 5, 'devices/dl-1/telemetry', 'not json 1', 'bad-1');
      await mqttSend(t, two, 4, 'devices/dl-2/events', 'not json 2');
      const list = (q: string) => t.api('GET', `/api/v1/dead-letters?limit=100${q}`);
      await waitFor(async () => (await list('&reason=not%20valid%20JSON')).body.items.length === 2, { what: 'two dead letters' });
      const byDevice = (await list('&device=dl-2')).body.items;
      assert.equal(byDevice.length, 1);
      assert.equal(byDevice[0].kind, 'event');
      assert.equal(Buffer.from(byDevice[0].payload, byDevice[0].encoding === 'base64' ? 'base64' : 'utf8').toString(), 'not json 2');
      assert.equal((await list(`&from=${Date.now() + 60_000}`)).body.items.length, 0);
      assert.equal((await list('&reason=store%20refused')).body.items.length, 0);

      const discarded = await t.api('DELETE', '/api/v1/dead-letters', { device: 'dl-1' });
      assert.deepEqual(discarded.body, { discarded: 1 });
      const firstFailure = byDevice[0].failedAt;
      const replay = await t.api('POST', '/api/v1/dead-letters/replay', { reason: 'not valid JSON' });
      assert.deepEqual(replay.body, { replayed: 1 });
      // Still not JSON: processed again, dead-lettered again, and the replay did not remove the new failure.
      const again = await waitFor(async () => (await list('&device=dl-2')).body.items.find((d: any) => d.failedAt > firstFailure || d.id !== byDevice[0].id), { what: 'the replayed message dead-lettered again' });
      assert.equal(again.kind, 'event');
      assert.equal((await list('')).body.items.filter((d: any) => d.device.startsWith('dl-')).length, 1);
      assert.equal(await metric(t, /fluxgate_dead_letters_replayed_total\{tenant="default"\} (\d+)/), 1);
      assert.equal(await metric(t, /fluxgate_dead_letters_discarded_total\{tenant="default"\} (\d+)/), 1);
    });
  });
});
