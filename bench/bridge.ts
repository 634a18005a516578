/**
 * Bridge throughput: QoS 1 messages published to a second Mosquitto and taken in by a bridge
 * (acknowledged to Mosquitto only once logged; journal sync + log append per batch), against
 * the same messages published straight to Fluxgate's own MQTT broker (PUBACK once logged).
 * One in-process node (embedded log and store; with `--cluster`, a JetStream log on a private
 * nats-server, so the bridge runs as the processing-lease holder and keeps its redelivery
 * journal in JetStream), `--messages` per run, `--publishers` mqtt.js clients with `--inflight`
 * publishes in flight each. Bridge figure: first publish → the bridge has acknowledged every
 * message; direct figure: first publish → every PUBACK.
 *
 *   node --import tsx bench/bridge.ts [--messages 20000] [--publishers 4] [--inflight 100] [--cluster]
 */
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { createMosquitto } from '../test/helpers/mosquitto.js';
import { startNatsServer } from '../test/helpers/nats-server.js';
import { startTestNode } from '../test/helpers/node.js';
import { waitFor } from '../test/helpers/wait.js';
import { machine } from './run.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '20000' }, publishers: { type: 'string', default: '4' }, inflight: { type: 'string', default: '100' }, cluster: { type: 'boolean', default: false } } });
const N = Number(values.messages);
const PUBLISHERS = Number(values.publishers);
const INFLIGHT = Number(values.inflight);

async function publishAll(url: string, topic: (i: number) => string, opts: mqtt.IClientOptions = {}): Promise<void> {
  const clients: MqttClient[] = await Promise.all(Array.from({ length: PUBLISHERS }, () => mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts })));
  let next = 0;
  await Promise.all(clients.flatMap((c) => Array.from({ length: INFLIGHT }, async () => {
    while (next < N) {
      const i = next++;
      await c.publishAsync(topic(i), JSON.stringify({ seq: i, v: i % 100 }), { qos: 1 });
    }
  })));
  await Promise.all(clients.map((c) => c.endAsync()));
}

const broker = await createMosquitto();
const nats = values.cluster ? await startNatsServer() : undefined;
const t = await startTestNode(nats ? { log: { backend: nats.url }, cluster: { leaseTtlMs: 2000 } } : {});
try {
  await t.api('POST', '/api/v1/tenants', { id: 'bench' });
  await t.api('POST', '/api/v1/projects?tenant=bench', { name: 'p' });
  const created = await t.api('POST', '/api/v1/bridges', {
    name: 'bench', url: broker.url, topics: ['mtic/msg/client/realtime/#'], qos: 1,
    template: { pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#', autoProvision: true },
  });
  if (created.status !== 201) throw new Error(JSON.stringify(created.body));
  await waitFor(async () => (await t.api('GET', '/api/v1/bridges/bench')).body.status.connected, { timeoutMs: 30_000 });
  // Warm-up: devices registered, caches filled.
  const warm = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  for (let d = 0; d < 10; d++) await warm.publishAsync(`mtic/msg/client/realtime/bench/p/dev-${d}/up`, '{}', { qos: 1 });
  await warm.endAsync();
  await waitFor(async () => (await t.api('GET', '/api/v1/bridges/bench')).body.status.counters.acknowledged >= 10);

  const base = (await t.api('GET', '/api/v1/bridges/bench')).body.status.counters.acknowledged as number;
  const t0 = performance.now();
  await publishAll(broker.url, (i) => `mtic/msg/client/realtime/bench/p/dev-${i % 10}/up`);
  const published = performance.now() - t0;
  await waitFor(async () => (await t.api('GET', '/api/v1/bridges/bench')).body.status.counters.acknowledged >= base + N, { timeoutMs: 300_000, intervalMs: 10 });
  const bridged = performance.now() - t0;
  const syncs = await (await fetch(`${t.url}/metrics`)).text();
  const fsyncs = /fluxgate_log_fsyncs_total (\d+)/.exec(syncs)?.[1];
  await t.api('DELETE', '/api/v1/bridges/bench');

  const token = await t.createDevice('direct-dev');
  const port = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
  const t1 = performance.now();
  await publishAll(`mqtt://127.0.0.1:${port}`, () => 'devices/direct-dev/telemetry', { username: token });
  const direct = performance.now() - t1;

  console.log(machine());
  console.log(`${N} QoS 1 messages, ${PUBLISHERS} publishers × ${INFLIGHT} in flight; ${nats ? 'cluster mode (JetStream log, one node)' : 'embedded log'}`);
  console.log(`bridge (Mosquitto → bridge → log, acknowledged when logged): ${Math.round(N / (bridged / 1000))} msg/s (${Math.round(bridged)} ms; publishers done after ${Math.round(published)} ms; log fsyncs so far ${fsyncs})`);
  console.log(`direct MQTT to Fluxgate (PUBACK when logged):                 ${Math.round(N / (direct / 1000))} msg/s (${Math.round(direct)} ms)`);
} finally {
  await t.stop();
  await broker.destroy();
  await nats?.cleanup();
}
