/**
 * @module Shedding under overload with log lanes (issue 6 part 6), on a real node with real
 * MQTT 5 clients. Processing is off while devices send events and snapshots (the legitimate
 * "processing stopped" case: a node with process.enabled=false), so the lag rises past
 * log.shedSnapshotsAtRecords: snapshots are then refused with PUBACK 0x97, counted per tenant
 * in /metrics and shown in /readyz, and every event is still acknowledged. The node is then
 * restarted on the same data with processing on, small batches (10) and the default
 * log.snapshotShare (0.1): while events wait, each batch is 9 events and 1 snapshot, so the
 * snapshot lane drains at that share instead of waiting for the event lane to empty (the lanes
 * prefer events, they do not starve snapshots), and the store ends with every event and exactly
 * the snapshots that were acknowledged.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';

const DEVICES = 8;
const ROUNDS = 250; // events per device; a snapshot every second round
const SHED_AT = 600;

interface Sent { events: Set<string>; snapshotsAcked: Set<string>; snapshotsShed: Set<string> }

async function publishAll(t: TestNode, tokens: string[]): Promise<Sent> {
  const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
  const sent: Sent = { events: new Set(), snapshotsAcked: new Set(), snapshotsShed: new Set() };
  const clients: MqttClient[] = [];
  try {
    for (let d = 0; d < DEVICES; d++) {
      clients.push(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: tokens[d], clientId: `shed-${d}`, protocolVersion: 5, reconnectPeriod: 0 }));
    }
    await Promise.all(clients.map(async (c, d) => {
      const device = `shed-${d}`;
      for (let r = 0; r < ROUNDS; r++) {
        const id = `e-${d}-${r}`;
        await c.publishAsync(`devices/${device}/events`, JSON.stringify({ id, ts: Date.now(), door: r % 2 ? 'open' : 'closed' }), { qos: 1 });
        sent.events.add(id);
        if (r % 2 === 0) {
          const sid = `s-${d}-${r}`;
          try {
            await c.publishAsync(`devices/${device}/snapshot`, JSON.stringify({ id: sid, ts: Date.now(), door: 'closed', temp: 20 + r / 100 }), { qos: 1 });
            sent.snapshotsAcked.add(sid);
          } catch (err) {
            // MQTT 5: a shed snapshot is refused with PUBACK 0x97 (quota exceeded), never silently dropped.
            assert.equal((err as { code?: number }).code, 0x97, `snapshot ${sid} refused with ${String(err)}`);
            sent.snapshotsShed.add(sid);
          }
        }
      }
    }));
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
  }
  return sent;
}

/** Every raw message of a device the store holds, through the REST API. */
async function storedIds(t: TestNode, device: string): Promise<{ events: string[]; snapshots: string[] }> {
  const out = { events: [] as string[], snapshots: [] as string[] };
  let after: string | undefined;
  do {
    const r = await t.api('GET', `/api/v1/messages?device=${device}&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const m of r.body.items) (m.kind === 'snapshot' ? out.snapshots : out.events).push(m.messageId);
    after = r.body.next;
  } while (after);
  return out;
}

async function shedCounter(t: TestNode): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('fluxgate_snapshots_shed_total{') && l.includes('tenant="default"') && l.includes('protocol="mqtt"'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

it('shedding with lanes - past shedSnapshotsAtRecords snapshots are shed (counted per tenant, in /readyz), every event is stored, and while events wait snapshots are processed at the default share of one in ten', async (t) => {
  const tmp = await tempDir('fluxgate-shed-');
  const log = { shedSnapshotsAtRecords: SHED_AT, maxLagRecords: 1_000_000 };
  let first: TestNode | undefined;
  let second: TestNode | undefined;
  try {
    first = await startTestNode({ process: { enabled: false }, log }, tmp.dir);
    const tokens: string[] = [];
    for (let d = 0; d < DEVICES; d++) tokens.push(await first.createDevice(`shed-${d}`));
    const sent = await publishAll(first, tokens);

    assert.equal(sent.events.size, DEVICES * ROUNDS, 'every event acknowledged');
    assert.ok(sent.snapshotsShed.size > 0, 'some snapshots were shed');
    assert.ok(sent.snapshotsAcked.size > 0, 'snapshots were taken while the lag was below the limit');
    assert.equal(await shedCounter(first), sent.snapshotsShed.size, 'fluxgate_snapshots_shed_total{tenant="default"} counts every refused snapshot');
    const ready = await fetch(`${first.url}/readyz`);
    const body = await ready.json() as { ready: boolean; components: Record<string, { ok: boolean; detail: string }> };
    assert.equal(ready.status, 200, 'shedding keeps the node ready');
    assert.match(body.components.admission!.detail, /shedding snapshots: lag \d+ \(events \d+, snapshots \d+\)/);
    assert.ok(body.components.admission!.detail.endsWith(`; shed since start: default ${sent.snapshotsShed.size}`), body.components.admission!.detail);
    const p = first.node.log.pressure();
    assert.deepEqual(p.lanes, { events: { lagRecords: sent.events.size }, snapshots: { lagRecords: sent.snapshotsAcked.size } });
    await first.node.stop(); // keeps the data directory
    first = undefined;

    // Processing on, ten records per batch, log.snapshotShare left at its default (0.1): one place in each batch is the snapshots'.
    second = await startTestNode({ process: { enabled: true, batchSize: 10 }, log }, tmp.dir);
    const node = second.node;
    const samples: Array<{ events: number; snapshots: number }> = [];
    const sample = (): void => { const l = node.log.pressure().lanes!; samples.push({ events: l.events!.lagRecords, snapshots: l.snapshots!.lagRecords }); };
    sample();
    const timer = setInterval(sample, 2);
    try {
      await waitFor(() => node.log.pressure().lagRecords === 0, { timeoutMs: 120_000, intervalMs: 50, what: 'processing to drain both lanes' });
    } finally {
      clearInterval(timer);
    }
    sample();
    const whileEvents = samples.filter((s) => s.events > 0);
    assert.ok(whileEvents.length >= 10, `watched the event lane drain (${whileEvents.length} samples with events waiting)`);
    // Batch k has taken 9k events and k snapshots; a sample may fall between the two lanes' commits of one batch (±1).
    for (const s of whileEvents) {
      const eventsDone = sent.events.size - s.events;
      const snapshotsDone = sent.snapshotsAcked.size - s.snapshots;
      assert.ok(snapshotsDone <= Math.ceil(eventsDone / 9) + 1, `${snapshotsDone} snapshots processed after ${eventsDone} events: more than the share`);
      if (s.snapshots > 0) assert.ok(snapshotsDone >= Math.floor(eventsDone / 9) - 1, `${snapshotsDone} snapshots processed after ${eventsDone} events: less than the share`);
    }
    assert.ok(whileEvents.some((s) => s.snapshots < sent.snapshotsAcked.size), 'snapshots were processed while events still waited');

    const storedEvents = new Set<string>();
    const storedSnapshots = new Set<string>();
    for (let d = 0; d < DEVICES; d++) {
      const s = await storedIds(second, `shed-${d}`);
      s.events.forEach((id) => storedEvents.add(id));
      s.snapshots.forEach((id) => storedSnapshots.add(id));
    }
    assert.deepEqual([...storedEvents].sort(), [...sent.events].sort(), 'every event stored');
    assert.deepEqual([...storedSnapshots].sort(), [...sent.snapshotsAcked].sort(), 'exactly the acknowledged snapshots stored');
    t.diagnostic(`events ${sent.events.size} sent = ${storedEvents.size} stored; snapshots ${sent.snapshotsAcked.size + sent.snapshotsShed.size} sent, ${sent.snapshotsShed.size} shed (0x97), ${storedSnapshots.size} stored; ${samples.length} lane samples, ${whileEvents.length} with events waiting`);
  } finally {
    await first?.node.stop().catch(() => undefined);
    await second?.node.stop().catch(() => undefined);
    await rm(tmp.dir, { recursive: true, force: true });
  }
});
