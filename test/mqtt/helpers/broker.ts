/**
 * @module Test helpers for the MQTT source: start a broker on port 0 over a given Log and a
 * registry of devices, connect mqtt.js clients that are all closed at the end, raw sockets.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/schema.js';
import { hashToken, generateToken } from '../../../src/core/ids.js';
import { createLogger } from '../../../src/core/logger.js';
import type { Log } from '../../../src/log/log.js';
import { createFileLog } from '../../../src/log/wal/index.js';
import { Metrics } from '../../../src/observability/metrics.js';
import { DeviceAuth } from '../../../src/registry/device-auth.js';
import { createMqttSource, type AppAuthenticator, type MqttSource } from '../../../src/sources/mqtt/index.js';
import { createEmbeddedStore } from '../../../src/stores/embedded/index.js';
import type { RegistryStore } from '../../../src/stores/store.js';
import { tempDir } from '../../helpers/wait.js';

/** Test applications: username `app:{tenant}`, password `app-secret`. */
export const testApps: AppAuthenticator = {
  async authenticate(username, password) {
    if (!username?.startsWith('app:') || password?.toString() !== 'app-secret') return undefined;
    return { tenant: username.slice(4), name: 'test-app' };
  },
};

export interface TestBroker {
  source: MqttSource;
  port: number;
  /** Port of the TLS listener when one was configured. */
  tlsPort?: number;
  url: string;
  log: Log;
  registry: RegistryStore;
  auth: DeviceAuth;
  metrics: Metrics;
  dataDir: string;
  /** Creates a device and returns its token. */
  addDevice(id: string, opts?: { tenant?: string; project?: string; disabled?: boolean }): Promise<string>;
  /** Stops the broker (idempotent). */
  stop(): Promise<void>;
}

export interface StartOptions {
  dataDir?: string;
  log?: Log;
  registry?: RegistryStore;
  metrics?: Metrics;
  mqtt?: Partial<Config['mqtt']>;
}

export async function startBroker(opts: StartOptions = {}): Promise<TestBroker> {
  const tmp = opts.dataDir ? undefined : await tempDir('fluxgate-mqtt-');
  const dataDir = opts.dataDir ?? tmp!.dir;
  const config = loadConfig({ env: {}, overrides: { dataDir, mqtt: { host: '127.0.0.1', port: 0, ...opts.mqtt } } });
  // The real embedded WAL unless a test injects a log (the in-memory stand-in for fault injection).
  const ownLog = opts.log ? undefined : createFileLog({ dir: join(dataDir, 'log'), segmentBytes: 4 * 1024 * 1024, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1_000_000_000 });
  await ownLog?.open();
  const log = opts.log ?? ownLog!;
  // The real embedded store (device registry) unless a test brings its own.
  const ownStore = opts.registry ? undefined : createEmbeddedStore({ dir: join(dataDir, 'store') });
  await ownStore?.open();
  const registry = opts.registry ?? ownStore!;
  const metrics = opts.metrics ?? new Metrics({ defaultMetrics: false });
  const auth = new DeviceAuth(registry);
  const source = createMqttSource({ config: config.mqtt, dataDir, log, auth, metrics, logger: createLogger('silent'), apps: testApps });
  let addr;
  let tlsAddr;
  try {
    [addr, tlsAddr] = await source.start();
  } catch (err) {
    await ownLog?.close();
    await ownStore?.close();
    await tmp?.cleanup();
    throw err;
  }
  let stopped = false;
  return {
    source, port: addr.port, tlsPort: tlsAddr?.port, url: `mqtt://127.0.0.1:${addr.port}`, log, registry, auth, metrics, dataDir,
    async addDevice(id, o = {}) {
      const token = generateToken('dev_');
      await registry.createDevice({ tenant: o.tenant ?? 'default', id, project: o.project ?? 'p1', tokenHash: hashToken(token), disabled: o.disabled ?? false, createdAt: Date.now() });
      return token;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await source.stop();
      await ownLog?.close();
      await ownStore?.close();
      await tmp?.cleanup();
    },
  };
}

const connacks = new WeakMap<MqttClient, mqtt.IConnackPacket>();

/** The CONNACK a client connected with. */
export function connackOf(client: MqttClient): mqtt.IConnackPacket {
  return connacks.get(client)!;
}

/** Keeps every client and socket a test opens, and closes them all in `closeAll` (call it in `finally`/`after`). */
export class Clients {
  private readonly clients: MqttClient[] = [];
  private readonly sockets: Socket[] = [];

  /** Connects with mqtt.js and resolves on CONNACK; rejects with the error (its `code` is the reason code). */
  connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    this.clients.push(client);
    // Listening from the start: a resumed session's messages may follow CONNACK in the same read.
    collect(client);
    return new Promise((resolve, reject) => {
      client.once('connect', (connack) => {
        connacks.set(client, connack);
        resolve(client);
      });
      client.once('error', reject);
      client.once('close', () => reject(new Error('closed before CONNACK')));
    });
  }

  /** Connects without waiting, for tests that watch what happens. */
  raw(port: number): Promise<Socket> {
    const s = netConnect(port, '127.0.0.1');
    this.sockets.push(s);
    s.on('error', () => {});
    return new Promise((resolve, reject) => {
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  }

  add(client: MqttClient): MqttClient {
    this.clients.push(client);
    return client;
  }

  async closeAll(): Promise<void> {
    const clients = this.clients.splice(0);
    await Promise.all(clients.map((c) => new Promise<void>((resolve) => {
      if (c.disconnected || c.disconnecting) {
        c.stream?.destroy();
        return resolve();
      }
      c.end(true, {}, () => resolve());
    })));
    for (const s of this.sockets.splice(0)) s.destroy();
  }
}

export interface Received { topic: string; payload: Buffer; packet: mqtt.IPublishPacket }
const received = new WeakMap<MqttClient, Received[]>();

/** The messages a client received (since it was created by `Clients.connect`, or since this first call). */
export function collect(client: MqttClient): Received[] {
  let got = received.get(client);
  if (!got) {
    const list: Received[] = (got = []);
    received.set(client, list);
    client.on('message', (topic, payload, packet) => list.push({ topic, payload, packet }));
  }
  return got;
}
