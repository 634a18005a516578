/**
 * @module Revocations across a cluster (src/cluster/revocations.ts): two nodes sharing a NATS
 * server (log) and PostgreSQL (a fresh schema). A device known to node B (its credential
 * cached there, an MQTT session open there) is disabled, rotated or deleted through node A:
 * B disconnects it and refuses it within seconds — far inside the 30 s device cache — and
 * after. A tenant's quota changed through A applies on B at once (B's own settings refresh is
 * set to a minute here, so only the relay can explain it).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import pg from 'pg';
import { startNatsServer, NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `fluxgate_revoke_${randomBytes(4).toString('hex')}`;
/** Well inside the device cache's 30 s: only a relayed revocation meets it. */
const DEADLINE_MS = 5_000;

async function sql(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(text); } finally { await c.end(); }
}

describe('revocations across nodes', { skip: NATS_SERVER_BIN ? false : 'nats-server is not installed' }, () => {
  let nats: Awaited<ReturnType<typeof startNatsServer>>;
  let a: TestNode;
  let b: TestNode;

  before(async () => {
    nats = await startNatsServer();
    const common = { log: { backend: nats.url }, store: { backend: PG_URL, schema }, tenants: { settingsCacheMs: 60_000 } };
    a = await startTestNode(common);
    b = await startTestNode(common);
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await nats?.cleanup();
    await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  });

  const ingest = (node: TestNode, device: string, token: string) => fetch(`${node.url}/api/v1/devices/${device}/telemetry`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"v":1}',
  });
  const mqttUrl = (node: TestNode) => node.node.addresses.find((x) => x.name === 'mqtt')!.url;

  it('a device disabled through node A is disconnected from node B at once, and refused there after', async () => {
    const token = await a.createDevice('rv-1');
    assert.equal((await ingest(b, 'rv-1', token)).status, 202, 'B knows (and caches) the device');
    const client = await mqtt.connectAsync(mqttUrl(b), { protocolVersion: 5, username: token, reconnectPeriod: 0, clientId: 'rv-1-session' });
    let closed = false;
    client.on('close', () => { closed = true; });
    const started = Date.now();
    assert.equal((await a.api('PATCH', '/api/v1/devices/rv-1', { disabled: true })).status, 200);
    await waitFor(() => closed, { timeoutMs: DEADLINE_MS, what: 'the MQTT session on B closed' });
    const refused = await waitFor(async () => { const r = await ingest(b, 'rv-1', token); return r.status === 403 ? r : undefined; }, { timeoutMs: DEADLINE_MS, intervalMs: 50, what: 'B refuses the device' });
    assert.equal((await refused.json()).code, 'DEVICE_DISABLED');
    console.log(`# disabled on A → disconnected and refused on B in ${Date.now() - started} ms`);
    await assert.rejects(mqtt.connectAsync(mqttUrl(b), { protocolVersion: 5, username: token, reconnectPeriod: 0, clientId: 'rv-1-again' }), 'B refuses the reconnect');
    client.end(true);
    // Enabled again through A: B takes it again.
    assert.equal((await a.api('PATCH', '/api/v1/devices/rv-1', { disabled: false })).status, 200);
    await waitFor(async () => (await ingest(b, 'rv-1', token)).status === 202, { timeoutMs: DEADLINE_MS, intervalMs: 50, what: 'B takes the device again' });
  });

  it('a token rotated or a device deleted through node A is refused on node B at once', async () => {
    const token = await a.createDevice('rv-2');
    const token3 = await a.createDevice('rv-3');
    assert.equal((await ingest(b, 'rv-2', token)).status, 202);
    assert.equal((await ingest(b, 'rv-3', token3)).status, 202);
    const rotated = await a.api('POST', '/api/v1/devices/rv-2/token');
    assert.equal(rotated.status, 200);
    await waitFor(async () => (await ingest(b, 'rv-2', token)).status === 401, { timeoutMs: DEADLINE_MS, intervalMs: 50, what: 'B refuses the old token' });
    assert.equal((await ingest(b, 'rv-2', rotated.body.token)).status, 202, 'the new token works on B');
    assert.equal((await a.api('DELETE', '/api/v1/devices/rv-3')).status, 204);
    await waitFor(async () => (await ingest(b, 'rv-3', token3)).status === 401, { timeoutMs: DEADLINE_MS, intervalMs: 50, what: 'B refuses the deleted device' });
  });

  it('a quota set through node A applies on node B at once', async () => {
    assert.equal((await a.api('POST', '/api/v1/tenants', { id: 'rq' })).status, 201);
    const dev = await a.api('POST', '/api/v1/devices?tenant=rq', { id: 'rq-1' });
    const token = dev.body.token as string;
    for (let i = 0; i < 5; i++) assert.equal((await ingest(b, 'rq-1', token)).status, 202, 'no quota yet');
    assert.equal((await a.api('PATCH', '/api/v1/tenants/rq', { settings: { messagesPerSecond: 0.1, burstMessages: 1 } })).status, 200);
    await waitFor(async () => (await ingest(b, 'rq-1', token)).status === 429, { timeoutMs: DEADLINE_MS, intervalMs: 50, what: 'B applies the quota' });
  });
});
