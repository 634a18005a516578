/**
 * @module Durability under MQTT load: every publish that got its PUBACK (QoS 1) or PUBREC
 * (QoS 2) is in the log exactly once, after a graceful stop and after SIGKILL at a random
 * moment (5 rounds each; bench/mqtt-crash.ts runs 100).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { QoS } from 'mqtt-packet';
import { tempDir, waitFor } from '../helpers/wait.js';
import { Clients } from './helpers/broker.js';
import { killed, readLog, spawnBroker } from './helpers/standalone.js';

/** Publishes from `n` clients until stopped; returns the payloads acknowledged. */
async function load(c: Clients, url: string, n: number, qos: QoS, protocolVersion: 4 | 5) {
  const acked = new Set<string>();
  let running = true;
  const clients = await Promise.all(Array.from({ length: n }, (_, i) => c.connect(url, { protocolVersion, username: `dev-${i}`, password: `tok-${i}`, clientId: `crash-${i}` })));
  clients.forEach((cl, i) => {
    // An in-flight window of 10 per client.
    let seq = 0;
    const worker = async () => {
      while (running) {
        const payload = JSON.stringify({ c: i, n: seq++ });
        try {
          await cl.publishAsync(`devices/dev-${i}/telemetry`, payload, { qos });
          acked.add(payload);
        } catch {
          return;
        }
      }
    };
    for (let w = 0; w < 10; w++) void worker();
  });
  // Publishes in flight when the broker dies never settle in mqtt.js (reconnect is off): they are not waited for.
  return { acked, stop: () => { running = false; } };
}

async function round(qos: QoS, kill: boolean, protocolVersion: 4 | 5): Promise<{ acked: number; logged: number }> {
  const tmp = await tempDir();
  const c = new Clients();
  let child = await spawnBroker(tmp.dir);
  try {
    const l = await load(c, child.url, 4, qos, protocolVersion);
    const target = 50 + Math.floor(Math.random() * 400);
    await waitFor(() => l.acked.size >= target, { timeoutMs: 20_000, what: `${target} acks` });
    await killed(child, kill ? 'SIGKILL' : 'SIGTERM');
    l.stop();
    await c.closeAll();
    const logged = (await readLog(tmp.dir)).map((e) => Buffer.from(e.payload).toString());
    const counts = new Map<string, number>();
    for (const p of logged) counts.set(p, (counts.get(p) ?? 0) + 1);
    const lost = [...l.acked].filter((p) => !counts.has(p));
    const dup = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(lost, [], `acknowledged but not in the log`);
    assert.deepEqual(dup, [], `logged more than once`);
    // After a restart on the same directory the broker serves again.
    child = await spawnBroker(tmp.dir);
    await c.connect(child.url, { protocolVersion, username: 'dev-0', password: 'tok-0' });
    return { acked: l.acked.size, logged: logged.length };
  } finally {
    await c.closeAll();
    await killed(child, 'SIGKILL');
    await tmp.cleanup();
  }
}

describe('mqtt - acknowledged means kept', () => {
  it('graceful stop: every PUBACKed (QoS 1) and PUBRECed (QoS 2) message is in the log exactly once', async () => {
    await round(1, false, 4);
    await round(2, false, 5);
  });

  for (const qos of [1, 2] as const) {
    it(`SIGKILL under QoS ${qos} load at a random moment, 5 rounds: nothing acknowledged is lost or logged twice`, async () => {
      for (let i = 0; i < 5; i++) await round(qos, true, i % 2 === 0 ? 4 : 5);
    });
  }
});
