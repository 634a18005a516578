/**
 * @module Bridges in a cluster: two nodes sharing a NATS JetStream log and PostgreSQL (a fresh
 * schema), both configured with the same bridge. Only the processing-lease holder runs it (the
 * other shows `standby`), so the two never take the external session from each other; a REST
 * bridge created through the standby node is started by the holder; when the holder stops,
 * the other node takes the lease and the bridges over, and every message is stored once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import pg from 'pg';
import { createMosquitto, MOSQUITTO_BIN, type Mosquitto } from '../helpers/mosquitto.js';
import { startNatsServer, NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `fluxgate_bridge_${randomBytes(4).toString('hex')}`;
const TENANT = 'cl-t';
const PATTERN = 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#';

async function sql(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(text); } finally { await c.end(); }
}

const skip = !NATS_SERVER_BIN ? 'nats-server is not installed' : !MOSQUITTO_BIN ? 'mosquitto is not installed' : false;

describe('bridges in a cluster', { skip, timeout: 180_000 }, () => {
  let nats: Awaited<ReturnType<typeof startNatsServer>>;
  let broker: Mosquitto;
  let a: TestNode | undefined;
  let b: TestNode | undefined;

  before(async () => {
    nats = await startNatsServer();
    broker = await createMosquitto();
    const bridge = () => ({ name: 'cl', url: broker.url, topics: ['mtic/msg/client/realtime/+/+/+/cl'], qos: 1, template: { pattern: PATTERN, autoProvision: true }, reconnect: { initialMs: 100, maxMs: 1000 } }) as any;
    const common = () => ({ log: { backend: nats.url }, store: { backend: PG_URL, schema }, cluster: { leaseTtlMs: 1500 }, bridges: [bridge()] });
    a = await startTestNode(common());
    b = await startTestNode(common());
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await nats?.cleanup();
    await broker?.destroy();
    await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  });

  const state = async (n: TestNode, name: string) => (await n.api('GET', `/api/v1/bridges/${name}`)).body?.status?.state as string | undefined;
  const publish = async (from: number, to: number, suffix = 'cl') => {
    const pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    for (let i = from; i < to; i++) await pub.publishAsync(`mtic/msg/client/realtime/${TENANT}/default/cl-dev/${suffix}`, `message ${i}`, { qos: 1 });
    await pub.endAsync();
  };
  const stored = async (n: TestNode) => {
    const r = await n.api('GET', `/api/v1/messages?tenant=${TENANT}&from=0&limit=10000&device=cl-dev`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body.items as any[]).map((m) => m.payload as string);
  };

  it('one node runs the bridge, the other is standby; the other takes over when the holder stops; each message stored once', async () => {
    assert.equal((await a!.api('POST', '/api/v1/tenants', { id: TENANT })).status, 201);
    const [leader, standby] = await waitFor(async () => {
      const [sa, sb] = [await state(a!, 'cl'), await state(b!, 'cl')];
      if (sa === 'connected' && sb === 'standby') return [a!, b!] as const;
      if (sb === 'connected' && sa === 'standby') return [b!, a!] as const;
      return undefined;
    }, { timeoutMs: 20_000, what: 'one node connected, the other standby' });
    const ready = await (await fetch(`${standby.url}/readyz`)).json() as any;
    assert.match(ready.components['bridge:cl'].detail, /^standby: bridges run on the node holding the processing lease/);

    // A REST bridge made through the standby node is run by the holder.
    const made = await standby.api('POST', '/api/v1/bridges', { name: 'cl-rest', url: broker.url, topics: ['mtic/msg/client/realtime/+/+/+/cl-rest'], template: { pattern: PATTERN, autoProvision: true } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.status.state, 'standby');
    await waitFor(async () => (await state(leader, 'cl-rest')) === 'connected', { timeoutMs: 20_000, what: 'the holder runs the REST bridge' });

    await publish(0, 40);
    await waitFor(async () => (await stored(leader)).length >= 40, { timeoutMs: 20_000, what: '40 stored' });

    await leader.stop();
    if (leader === a) a = undefined; else b = undefined;
    await waitFor(async () => (await state(standby, 'cl')) === 'connected', { timeoutMs: 30_000, what: 'the other node took the bridge over' });
    await publish(40, 80);
    const got = await waitFor(async () => { const s = await stored(standby); return s.length >= 80 ? s : undefined; }, { timeoutMs: 30_000, what: '80 stored' });
    assert.equal(got.length, 80);
    assert.deepEqual(new Set(got).size, 80, 'each message once');
    assert.equal((await state(standby, 'cl-rest')), 'connected', 'the REST bridge moved too');
  });
});
