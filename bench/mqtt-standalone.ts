/**
 * @module A standalone Fluxgate MQTT broker for benchmarks and crash tests: the real embedded
 * WAL in <data-dir>/log and a fixed in-memory device registry (devices `dev-0` … `dev-{N-1}`
 * with tokens `tok-0` …, tenant `default`; an application client `app` / `app` that may subscribe
 * to anything in `default`). Prints one JSON line `{"port": N, "pid": P}` once
 * listening; SIGTERM stops it gracefully.
 *
 *   node --import tsx bench/mqtt-standalone.ts --data-dir DIR [--port 0] [--devices 1000]
 */
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import { hashToken } from '../src/core/ids.js';
import { createLogger } from '../src/core/logger.js';
import { createFileLog } from '../src/log/wal/index.js';
import { Metrics } from '../src/observability/metrics.js';
import { DeviceAuth } from '../src/registry/device-auth.js';
import { createMqttSource } from '../src/sources/mqtt/index.js';
import type { DeviceRecord, RegistryStore } from '../src/stores/store.js';

const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, port: { type: 'string', default: '0' }, devices: { type: 'string', default: '1000' }, host: { type: 'string', default: '127.0.0.1' } } });
const dataDir = values['data-dir'];
if (!dataDir) throw new Error('--data-dir is required');

const byHash = new Map<string, DeviceRecord>();
for (let i = 0; i < Number(values.devices); i++) {
  byHash.set(hashToken(`tok-${i}`), { tenant: 'default', id: `dev-${i}`, project: 'bench', tokenHash: hashToken(`tok-${i}`), disabled: false, createdAt: 0 });
}
const registry: RegistryStore = {
  async findDeviceByTokenHash(h) { return byHash.get(h); },
  async createDevice() { throw new Error('read-only registry'); },
  async createDevices() { throw new Error('read-only registry'); },
  async getDevice(_t, id) { return [...byHash.values()].find((d) => d.id === id); },
  async listDevices() { return { items: [] }; },
  async updateDevice() { return undefined; },
  async deleteDevice() { return false; },
};

const config = loadConfig({ env: {}, overrides: { dataDir, mqtt: { host: values.host, port: Number(values.port), maxConnections: 1_000_000, receiveMaximum: 1000 } } });
const metrics = new Metrics({ defaultMetrics: false });
const logger = createLogger('warn');
const log = createFileLog({ dir: join(dataDir, 'log'), segmentBytes: config.log.segmentBytes, retentionHours: 0, retentionBytes: 0, maxLagRecords: Number.MAX_SAFE_INTEGER, metrics });
await log.open();
const apps = { async authenticate(u: string | undefined, p: Buffer | undefined) { return u === 'app' && p?.toString() === 'app' ? { tenant: 'default', name: 'bench-app' } : undefined; } };
const source = createMqttSource({ config: config.mqtt, dataDir, log, auth: new DeviceAuth(registry), metrics, logger, apps });
const [addr] = await source.start();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const cpuStart = process.cpuUsage();
const wallStart = performance.now();
process.stdout.write(JSON.stringify({ port: addr.port, pid: process.pid }) + '\n');

process.once('SIGTERM', () => {
  void (async () => {
    await source.stop();
    await log.close();
    if (process.env.FLUXGATE_BENCH_METRICS) {
      const cpu = process.cpuUsage(cpuStart);
      process.stderr.write(await metrics.registry.metrics());
      process.stderr.write(`event loop delay ms: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(2)} p99 ${(loopDelay.percentile(99) / 1e6).toFixed(2)} max ${(loopDelay.max / 1e6).toFixed(2)}; cpu ${(((cpu.user + cpu.system) / 1000 / (performance.now() - wallStart)) * 100).toFixed(0)} %\n`);
    }
    process.exit(0);
  })();
});
