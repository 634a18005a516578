/**
 * @module Crash rounds under MQTT load: 4 publishers (window 10 each) publish to the standalone
 * broker (real WAL), which is SIGKILLed after a random number of acknowledgements; the WAL is then
 * read back. Prints, per round and in total, acknowledged / logged / lost / duplicated.
 * Lost must be 0 (promise 1); duplicates in the log must be 0 without client retries.
 *
 *   node --import tsx bench/mqtt-crash.ts [--rounds 100] [--qos 1|2]
 */
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { killed, readLog, spawnBroker } from '../test/mqtt/helpers/standalone.js';
import { tempDir, waitFor } from '../test/helpers/wait.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' }, qos: { type: 'string', default: '1' } } });
const qos = Number(values.qos) as 1 | 2;

async function round(n: number): Promise<{ acked: number; logged: number; lost: number; dup: number }> {
  const tmp = await tempDir('fluxgate-crash-');
  const child = await spawnBroker(tmp.dir);
  const clients: MqttClient[] = [];
  const acked = new Set<string>();
  let running = true;
  try {
    for (let i = 0; i < 4; i++) {
      const c = mqtt.connect(child.url, { protocolVersion: n % 2 ? 5 : 4, username: `dev-${i}`, password: `tok-${i}`, reconnectPeriod: 0 });
      c.on('error', () => {});
      clients.push(c);
      await new Promise((r) => c.once('connect', r));
      let seq = 0;
      for (let w = 0; w < 10; w++) {
        void (async () => {
          while (running) {
            const payload = JSON.stringify({ c: i, n: seq++ });
            try {
              await c.publishAsync(`devices/dev-${i}/telemetry`, payload, { qos });
              acked.add(payload);
            } catch {
              return;
            }
          }
        })();
      }
    }
    const target = 20 + Math.floor(Math.random() * 2000);
    await waitFor(() => acked.size >= target, { timeoutMs: 30_000 });
    await killed(child, 'SIGKILL');
    running = false;
    const snapshot = new Set(acked);
    const counts = new Map<string, number>();
    for (const e of await readLog(tmp.dir)) {
      const p = Buffer.from(e.payload).toString();
      counts.set(p, (counts.get(p) ?? 0) + 1);
    }
    const lost = [...snapshot].filter((p) => !counts.has(p)).length;
    const dup = [...counts.values()].filter((c) => c > 1).length;
    return { acked: snapshot.size, logged: [...counts.values()].reduce((a, b) => a + b, 0), lost, dup };
  } finally {
    running = false;
    for (const c of clients) c.end(true);
    await killed(child, 'SIGKILL');
    await tmp.cleanup();
  }
}

const total = { acked: 0, logged: 0, lost: 0, dup: 0 };
for (let i = 0; i < Number(values.rounds); i++) {
  const r = await round(i);
  for (const k of Object.keys(total) as Array<keyof typeof total>) total[k] += r[k];
  console.log(`round ${i + 1}: acknowledged ${r.acked}, logged ${r.logged}, lost ${r.lost}, duplicated ${r.dup}`);
}
console.log(`TOTAL QoS ${qos}, ${values.rounds} rounds: acknowledged ${total.acked}, logged ${total.logged}, lost ${total.lost}, duplicated ${total.dup}`);
process.exit(total.lost === 0 && total.dup === 0 ? 0 : 1);
