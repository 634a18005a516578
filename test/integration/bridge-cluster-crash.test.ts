/**
 * @module Bridges in a cluster, with the node running them SIGKILLed: NATS JetStream (private
 * nats-server), PostgreSQL (a fresh schema, dropped after), a second Mosquitto, and two Fluxgate
 * nodes in child processes with the same bridge. Publishers send QoS 1 and 2 messages (JSON,
 * `{}` and text repeated identically on one device, unique text and binary) to Mosquitto; the
 * node holding the processing lease — the one running the bridge — is killed with SIGKILL
 * mid-stream, four times (each victim is restarted and takes over at the next kill). The other
 * node takes the lease and the bridge over and loads the bridge's redelivery journal from
 * JetStream, so what the dead node had logged but not acknowledged keeps its message id when
 * Mosquitto redelivers it (with the file journal, the takeover node has no entries and stores
 * those messages a second time: this test then fails — checked by hand). Afterwards every message Mosquitto accepted is stored
 * exactly once: by content and count (identical payloads counted per device) over REST.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import { createMosquitto, MOSQUITTO_BIN, type Mosquitto } from '../helpers/mosquitto.js';
import { startNatsServer, NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { ADMIN_KEY, apiClient, spawnNode } from '../helpers/node.js';
import { startPhasedPublisher } from '../helpers/phased-publisher.js';
import { tempDir, waitFor } from '../helpers/wait.js';

const PG_URL = process.env.FLUXGATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `fluxgate_bcc_${randomBytes(4).toString('hex')}`;
const TENANT = 'bcc-t';
const PROJECT = 'bcc-p';
const TOTAL = 1400;

async function sql(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try { await c.query(text); } finally { await c.end(); }
}

interface Sent { n: number; device: string; qos: 1 | 2; payload: Buffer }

function messageOf(n: number): Sent {
  const qos = (n % 2 === 0 ? 1 : 2) as 1 | 2;
  switch (n % 5) {
    case 0: return { n, qos, device: `dev-${n % 3}`, payload: Buffer.from(JSON.stringify({ seq: n })) };
    // Identical payloads, again and again, on one device: only their count tells them apart.
    case 1: return { n, qos, device: 'same', payload: Buffer.from('{}') };
    case 2: return { n, qos, device: 'same', payload: Buffer.from('on') };
    case 3: return { n, qos, device: `dev-${n % 3}`, payload: Buffer.from(`text ${n}`) };
    default: return { n, qos, device: `dev-${n % 3}`, payload: Buffer.concat([Buffer.from([0xff, 0x00]), Buffer.from(String(n))]) };
  }
}

const topicOf = (device: string) => `mtic/msg/client/realtime/${TENANT}/${PROJECT}/${device}/up`;
const skip = !NATS_SERVER_BIN ? 'nats-server is not installed' : !MOSQUITTO_BIN ? 'mosquitto is not installed' : false;

type Spawned = Awaited<ReturnType<typeof spawnNode>>;

describe('bridges in a cluster: the node running them is SIGKILLed, nothing lost, nothing stored twice', { skip, timeout: 300_000 }, () => {
  let nats: Awaited<ReturnType<typeof startNatsServer>>;
  let broker: Mosquitto;
  let dir: { dir: string; cleanup: () => Promise<void> };
  const nodes: Array<Spawned | undefined> = [undefined, undefined];
  const children = new Set<ChildProcess>();

  before(async () => {
    nats = await startNatsServer();
    broker = await createMosquitto();
    dir = await tempDir('fluxgate-bridge-cluster-crash-');
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await nats?.cleanup();
    await broker?.destroy();
    await dir?.cleanup();
    await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
  });

  it('every message Mosquitto accepted is stored exactly once across four crash-takeovers', async (t) => {
    const configFile = join(dir.dir, 'config.json');
    await writeFile(configFile, JSON.stringify({
      log: { backend: nats.url }, store: { backend: PG_URL, schema }, cluster: { leaseTtlMs: 1500 },
      bridges: [{
        name: 'seed', url: broker.url, topics: ['mtic/msg/client/realtime/#'], qos: 2,
        template: { pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#', autoProvision: true },
        reconnect: { initialMs: 100, maxMs: 1000 },
      }],
    }));
    const spawn = async (i: number) => {
      const n = await spawnNode(join(dir.dir, `node-${i}`), { FLUXGATE_CONFIG: configFile });
      children.add(n.child);
      nodes[i] = n;
      return n;
    };
    await spawn(0);
    await spawn(1);
    const api = (i: number) => apiClient(nodes[i]!.url, ADMIN_KEY);
    const state = async (i: number) => (await api(i)('GET', '/api/v1/bridges/seed').catch(() => undefined))?.body?.status?.state as string | undefined;
    const holder = () => waitFor(async () => {
      const [s0, s1] = [nodes[0] ? await state(0) : undefined, nodes[1] ? await state(1) : undefined];
      if (s0 === 'connected' && s1 !== 'connected') return { i: 0 };
      if (s1 === 'connected' && s0 !== 'connected') return { i: 1 };
      return undefined;
    }, { timeoutMs: 30_000, what: 'one node running the bridge' });

    assert.equal((await api(0)('POST', '/api/v1/tenants', { id: TENANT })).status, 201);
    assert.equal((await api(0)('POST', `/api/v1/projects?tenant=${TENANT}`, { name: PROJECT })).status, 201);
    await holder();

    const { accepted, openUpTo, finish } = await startPhasedPublisher(broker.url, 'bcc-publisher', TOTAL, messageOf, (m) => topicOf(m.device));

    const kills: string[] = [];
    for (const [killAt, phaseEnd] of [[200, 350], [500, 650], [800, 950], [1100, 1250]]) {
      const { i } = await holder();
      openUpTo(phaseEnd);
      await waitFor(() => accepted.size >= killAt, { timeoutMs: 60_000, intervalMs: 5, what: `${killAt} messages accepted` });
      const victim = nodes[i]!;
      victim.child.kill('SIGKILL');
      kills.push(`node ${i} at ${accepted.size} accepted`);
      await new Promise((r) => victim.child.once('exit', r));
      children.delete(victim.child);
      nodes[i] = undefined;
      // The survivor takes the lease and the bridge over; the broker keeps the session's messages meanwhile.
      await waitFor(async () => (await state(1 - i)) === 'connected', { timeoutMs: 30_000, what: `node ${1 - i} took the bridge over` });
      await waitFor(() => accepted.size >= phaseEnd, { timeoutMs: 60_000, what: `${phaseEnd} messages accepted` });
      await spawn(i);
    }
    await finish();
    assert.equal(accepted.size, TOTAL);

    const { i: last } = await holder();
    const read = api(last);
    const stored = async () => {
      const out: any[] = [];
      let cursor: string | undefined;
      for (;;) {
        const r = await read('GET', `/api/v1/messages?tenant=${TENANT}&from=0&limit=10000${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        out.push(...r.body.items);
        if (!r.body.next) return out;
        cursor = r.body.next;
      }
    };
    await waitFor(async () => (await stored()).length >= TOTAL, { timeoutMs: 90_000, intervalMs: 500, what: `${TOTAL} messages stored` }).catch(async (err) => {
      throw new Error(`${err.message} (stored ${(await stored()).length}); holder output:\n${nodes[last]!.output().slice(-3000)}`);
    });
    await waitFor(async () => (await read('GET', '/api/v1/bridges/seed')).body.status.lag === 0, { what: 'bridge lag 0' });
    // Let the pipeline finish anything still in the log before counting (a duplicate would arrive now).
    await waitFor(async () => {
      const m = await (await fetch(`${nodes[last]!.url}/metrics`)).text();
      return /fluxgate_consumer_lag_records\{group="process"\} 0\b/.test(m);
    }, { timeoutMs: 30_000, what: 'the process group caught up' });
    const items = await stored();

    const key = (device: string, payload: Buffer) => `${device}\u0000${payload.toString('base64')}`;
    const want = new Map<string, number>();
    for (const s of accepted.values()) want.set(key(s.device, s.payload), (want.get(key(s.device, s.payload)) ?? 0) + 1);
    const got = new Map<string, number>();
    for (const m of items) {
      assert.equal(m.project, PROJECT, `project of ${m.device}`);
      const bytes = Buffer.from(m.payload, m.encoding === 'base64' ? 'base64' : 'utf8');
      got.set(key(m.device, bytes), (got.get(key(m.device, bytes)) ?? 0) + 1);
    }
    const wrong = [...new Set([...want.keys(), ...got.keys()])]
      .filter((k) => want.get(k) !== got.get(k))
      .map((k) => `${k.replace('\u0000', ' ')}: accepted ${want.get(k) ?? 0}, stored ${got.get(k) ?? 0}`);
    assert.deepEqual(wrong, [], 'every accepted message stored exactly once (by content and count)');
    assert.equal(items.length, TOTAL, 'no message stored twice');

    const metrics = await (await fetch(`${nodes[last]!.url}/metrics`)).text();
    const redelivered = /fluxgate_bridge_messages_total\{bridge="seed",outcome="redelivered"\} (\d+)/.exec(metrics)?.[1] ?? '0';
    t.diagnostic(`killed ${kills.join(', then ')}; redeliveries recognised through the JetStream journal by the last holder: ${redelivered}`);
  });
});
