/**
 * @module The seed-shaped run: a second Mosquitto receives
 * `mtic/msg/client/realtime/<tenant>/<project>/<device>/…` publishes at QoS 1 and 2 (JSON
 * without ts or id, `{}`, text, binary); a Fluxgate node in a child process bridges them in and
 * is killed with SIGKILL twice during the run (the broker holds the session's messages while it
 * is down) and restarted; afterwards every message Mosquitto accepted is stored exactly once —
 * checked by content in the raw archive and by point count — under the right tenant and project.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { createMosquitto, MOSQUITTO_BIN, type Mosquitto } from '../helpers/mosquitto.js';
import { ADMIN_KEY, apiClient, spawnNode } from '../helpers/node.js';
import { startPhasedPublisher } from '../helpers/phased-publisher.js';
import { tempDir, waitFor } from '../helpers/wait.js';

const TENANT = 'seed-t1';
const PROJECT = 'seed-p1';
const TOTAL = 1200;
const DEVICES = 4;

type Shape = 'json' | 'text' | 'binary' | 'empty-object';
interface Sent { n: number; device: string; qos: 1 | 2; shape: Shape; payload: Buffer }

function messageOf(n: number): Sent {
  const qos = (n % 2 === 0 ? 1 : 2) as 1 | 2;
  // `{}` cannot be told apart by content, so each goes to a device of its own.
  if (n % 100 === 7) return { n, device: `empty-${n}`, qos, shape: 'empty-object', payload: Buffer.from('{}') };
  const device = `dev-${n % DEVICES}`;
  switch (n % 3) {
    case 0: return { n, device, qos, shape: 'json', payload: Buffer.from(JSON.stringify({ seq: n })) };
    case 1: return { n, device, qos, shape: 'text', payload: Buffer.from(`text message ${n}`) };
    default: return { n, device, qos, shape: 'binary', payload: Buffer.concat([Buffer.from([0xff, 0x00, 0xfe]), Buffer.from(String(n))]) };
  }
}

const topicOf = (device: string) => `mtic/msg/client/realtime/${TENANT}/${PROJECT}/${device}/up`;

describe('bridge: SIGKILL during the run, every accepted message stored exactly once', { skip: MOSQUITTO_BIN ? false : 'mosquitto is not installed', timeout: 240_000 }, () => {
  let broker: Mosquitto;
  let dir: { dir: string; cleanup: () => Promise<void> };
  let child: ChildProcess | undefined;

  before(async () => {
    broker = await createMosquitto();
    dir = await tempDir('fluxgate-bridge-crash-');
  });
  after(async () => {
    child?.kill('SIGKILL');
    await broker?.destroy();
    await dir?.cleanup();
  });

  it('stores each of the messages once, under the tenant and project of its topic', async (t) => {
    const configFile = join(dir.dir, 'config.json');
    await writeFile(configFile, JSON.stringify({
      bridges: [{
        name: 'seed', url: broker.url, topics: ['mtic/msg/client/realtime/#'], qos: 2,
        template: { pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#', autoProvision: true },
        reconnect: { initialMs: 100, maxMs: 1000 },
      }],
    }));
    const dataDir = join(dir.dir, 'data');
    const env = { FLUXGATE_CONFIG: configFile };
    let node = await spawnNode(dataDir, env);
    child = node.child;
    let api = apiClient(node.url, ADMIN_KEY);
    assert.equal((await api('POST', '/api/v1/tenants', { id: TENANT })).status, 201);
    assert.equal((await api('POST', `/api/v1/projects?tenant=${TENANT}`, { name: PROJECT })).status, 201);
    await waitFor(async () => (await api('GET', '/api/v1/bridges/seed')).body?.status?.connected, { what: 'bridge connected' });

    // Publish in phases so the kills land mid-stream.
    const { accepted, openUpTo, finish } = await startPhasedPublisher(broker.url, 'seed-publisher', TOTAL, messageOf, (m) => topicOf(m.device));

    const kills: number[] = [];
    for (const [killAt, phaseEnd] of [[250, 500], [700, 900]]) {
      openUpTo(phaseEnd);
      await waitFor(() => accepted.size >= killAt, { timeoutMs: 60_000, what: `${killAt} messages accepted` });
      node.child.kill('SIGKILL');
      kills.push(accepted.size);
      await new Promise((r) => node.child.once('exit', r));
      // While Fluxgate is down the broker keeps taking messages for the bridge's session.
      await waitFor(() => accepted.size >= phaseEnd, { timeoutMs: 60_000, what: 'messages accepted while Fluxgate is down' });
      node = await spawnNode(dataDir, env);
      child = node.child;
      api = apiClient(node.url, ADMIN_KEY);
    }
    await finish();
    assert.equal(accepted.size, TOTAL);

    // Everything arrives; then nothing more (no duplicate trickles in late).
    const stored = async () => {
      const out: any[] = [];
      let after: string | undefined;
      for (;;) {
        const r = await api('GET', `/api/v1/messages?tenant=${TENANT}&from=0&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        out.push(...r.body.items);
        if (!r.body.next) return out;
        after = r.body.next;
      }
    };
    await waitFor(async () => (await stored()).length >= TOTAL, { timeoutMs: 90_000, intervalMs: 500, what: `${TOTAL} messages stored` }).catch(async (err) => {
      throw new Error(`${err.message} (stored ${(await stored()).length}); node output:\n${node.output().slice(-3000)}`);
    });
    await waitFor(async () => (await api('GET', '/api/v1/bridges/seed')).body.status.lag === 0, { what: 'bridge lag 0' });
    const items = await stored();
    assert.equal(items.length, TOTAL, 'no message stored twice');

    const key = (device: string, payload: Buffer) => `${device}\u0000${payload.toString('base64')}`;
    const seen = new Map<string, number>();
    for (const m of items) {
      assert.equal(m.project, PROJECT, `project of ${m.device}`);
      const bytes = Buffer.from(m.payload, m.encoding === 'base64' ? 'base64' : 'utf8');
      seen.set(key(m.device, bytes), (seen.get(key(m.device, bytes)) ?? 0) + 1);
    }
    const missing: number[] = [];
    for (const s of accepted.values()) {
      const c = seen.get(key(s.device, s.payload)) ?? 0;
      if (c !== 1) missing.push(s.n);
    }
    assert.deepEqual(missing, [], 'every accepted message exactly once by content');

    // Points: JSON messages without ts take their receive time — a redelivery must not add a second point.
    for (let d = 0; d < DEVICES; d++) {
      const device = `dev-${d}`;
      const want = [...accepted.values()].filter((s) => s.device === device && s.shape === 'json').map((s) => s.n).sort((a, b) => a - b);
      const got: number[] = [];
      let after: string | undefined;
      for (;;) {
        const r = await api('GET', `/api/v1/devices/${device}/telemetry?tenant=${TENANT}&key=seq&from=${Date.now() - 3_600_000}&resolution=raw&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        got.push(...r.body.items.map((p: any) => p.value));
        if (!r.body.next) break;
        after = r.body.next;
      }
      assert.deepEqual(got.sort((a, b) => a - b), want, `points of ${device}`);
    }
    const dev = await api('GET', `/api/v1/devices/dev-0?tenant=${TENANT}`);
    assert.equal(dev.body.project, PROJECT);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    const redelivered = /fluxgate_bridge_messages_total\{bridge="seed",outcome="redelivered"\} (\d+)/.exec(metrics)?.[1] ?? '0';
    t.diagnostic(`killed at ${kills.join(' and ')} accepted; redeliveries recognised by the journal after the last restart: ${redelivered}`);
  });
});
