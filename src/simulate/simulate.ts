/**
 * @module `fluxgate simulate`: a fleet of simulated devices against a running node, to try
 * Fluxgate by hand or load it. Creates (or re-keys) devices `sim-0…` through the REST API,
 * then each sends a JSON reading at `--rate` per second over HTTP or MQTT (mqtt.js) for
 * `--duration`, and prints what was acknowledged, refused and how long acknowledgements took.
 * Bounded by design: it stops by itself after the duration.
 */
import mqtt from 'mqtt';
import { parseInterval } from '../api/rest/schemas.js';

export interface SimulateOptions {
  url: string;
  key: string;
  devices: number;
  durationMs: number;
  ratePerDevice: number;
  protocol: 'http' | 'mqtt';
  mqttUrl: string;
  prefix: string;
  qos: 0 | 1 | 2;
}

interface Tally { acked: number; refused: number; failed: number; latencies: number[] }

async function provision(o: SimulateOptions): Promise<Array<{ id: string; token: string }>> {
  const headers = { authorization: `Bearer ${o.key}`, 'content-type': 'application/json' };
  const ids = Array.from({ length: o.devices }, (_, i) => `${o.prefix}${i}`);
  const out: Array<{ id: string; token: string }> = [];
  // Devices belong to an existing project: make `simulation` (409 means it is there already).
  const p = await fetch(`${o.url}/api/v1/projects`, { method: 'POST', headers, body: JSON.stringify({ name: 'simulation' }) });
  if (p.status !== 201 && p.status !== 409) throw new Error(`cannot create project simulation: ${p.status} ${await p.text()}`);
  for (let i = 0; i < ids.length; i += 20) {
    out.push(...(await Promise.all(ids.slice(i, i + 20).map(async (id) => {
      let r = await fetch(`${o.url}/api/v1/devices`, { method: 'POST', headers, body: JSON.stringify({ id, project: 'simulation' }) });
      if (r.status === 409) r = await fetch(`${o.url}/api/v1/devices/${id}/token`, { method: 'POST', headers: { authorization: headers.authorization } });
      const body = await r.json() as { token?: string; message?: string };
      if (!body.token) throw new Error(`cannot provision ${id}: ${r.status} ${body.message ?? ''}`);
      return { id, token: body.token };
    }))));
  }
  return out;
}

const reading = (n: number) => JSON.stringify({ ts: Date.now(), seq: n, temperature: Math.round((20 + 5 * Math.sin(n / 10) + Math.random()) * 100) / 100, humidity: Math.round(40 + Math.random() * 20) });

async function runDevice(o: SimulateOptions, dev: { id: string; token: string }, until: number, tally: Tally): Promise<void> {
  const interval = 1000 / o.ratePerDevice;
  let client: mqtt.MqttClient | undefined;
  if (o.protocol === 'mqtt') {
    client = await mqtt.connectAsync(o.mqttUrl, { username: dev.token, clientId: dev.id, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000 });
  }
  try {
    for (let n = 0, next = Date.now() + Math.random() * interval; Date.now() < until; n++, next += interval) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // pacing the send rate
      const start = performance.now();
      try {
        if (client) {
          await client.publishAsync(`devices/${dev.id}/telemetry`, reading(n), { qos: o.qos });
          tally.acked++;
        } else {
          const r = await fetch(`${o.url}/api/v1/devices/${dev.id}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${dev.token}`, 'content-type': 'application/json' }, body: reading(n) });
          await r.arrayBuffer();
          if (r.status === 202) tally.acked++; else tally.refused++;
        }
        tally.latencies.push(performance.now() - start);
      } catch {
        tally.failed++;
      }
    }
  } finally {
    await client?.endAsync();
  }
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : 0);

export async function simulate(o: SimulateOptions, print: (line: string) => void = console.log): Promise<Tally> {
  print(`provisioning ${o.devices} devices (${o.prefix}0…) at ${o.url}`);
  const devices = await provision(o);
  print(`sending ${o.ratePerDevice}/s per device over ${o.protocol === 'mqtt' ? `MQTT ${o.mqttUrl} QoS ${o.qos}` : 'HTTP'} for ${o.durationMs / 1000} s`);
  const tally: Tally = { acked: 0, refused: 0, failed: 0, latencies: [] };
  const started = Date.now();
  await Promise.all(devices.map((d) => runDevice(o, d, started + o.durationMs, tally)));
  const seconds = (Date.now() - started) / 1000;
  const sorted = tally.latencies.sort((a, b) => a - b);
  print(`acknowledged ${tally.acked} (${Math.round(tally.acked / seconds)}/s), refused ${tally.refused}, failed ${tally.failed}; ack latency p50 ${pct(sorted, 0.5).toFixed(1)} ms, p99 ${pct(sorted, 0.99).toFixed(1)} ms`);
  return tally;
}

export function simulateOptions(flags: Record<string, string>, url: string, key: string): SimulateOptions {
  const protocol = flags.protocol ?? 'http';
  if (protocol !== 'http' && protocol !== 'mqtt') throw new Error(`--protocol ${protocol} is not supported by simulate yet: use http or mqtt`);
  const host = new URL(url).hostname;
  const num = (name: string, def: number) => {
    const v = flags[name] === undefined ? def : Number(flags[name]);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${flags[name]}`);
    return v;
  };
  const qos = Number(flags.qos ?? 1);
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new Error(`--qos must be 0, 1 or 2, got ${flags.qos}`);
  return {
    url, key, protocol, qos,
    devices: Math.floor(num('devices', 10)),
    durationMs: parseInterval(flags.duration ?? '30s'),
    ratePerDevice: num('rate', 1),
    mqttUrl: flags['mqtt-url'] ?? `mqtt://${flags.target ?? host}:${flags['mqtt-port'] ?? 1883}`,
    prefix: flags.prefix ?? 'sim-',
  };
}
