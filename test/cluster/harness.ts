/**
 * @module A whole local cluster in child processes for tests and benchmarks: a 3-server NATS
 * JetStream cluster (test/helpers/nats-server.ts), N Fluxgate nodes (`fluxgate start --log
 * nats://a,nats://b,nats://c`, replicas 3, each its own data dir and free ports) and HAProxy
 * in front with a config generated from deploy/haproxy.cfg. Every process is ended by pid in
 * cleanup() (and killed when the test process exits), temp dirs are removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { haproxyConfig } from '../../src/cluster/haproxy.js';
import { freePort, startNatsCluster, type NatsCluster } from '../helpers/nats-server.js';
import { spawnNode, apiClient, ADMIN_KEY } from '../helpers/node.js';
import { tempDir, waitFor } from '../helpers/wait.js';

const HAPROXY_CANDIDATES = ['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy'];
export const HAPROXY_BIN: string | undefined = HAPROXY_CANDIDATES.find((p) => existsSync(p));

const alive = new Set<ChildProcess>();
process.on('exit', () => { for (const c of alive) c.kill('SIGKILL'); });

export interface ClusterNode {
  name: string;
  dir: string;
  child: ChildProcess;
  url: string;
  httpPort: number;
  mqttPort: number;
  running: boolean;
  output: () => string;
}

export interface LocalCluster {
  nats: NatsCluster;
  nodes: ClusterNode[];
  /** HAProxy's HTTP frontend, e.g. http://127.0.0.1:12345. */
  httpUrl: string;
  mqttPort: number;
  statsUrl: string;
  haproxyOutput: () => string;
  haproxyPid: number | undefined;
  /** SIGKILLs node i and waits until it is gone. */
  killNode(i: number): Promise<void>;
  /** Starts node i again on its data dir and ports; resolves once HAProxy has it UP again. */
  restartNode(i: number): Promise<void>;
  /** The /readyz body of node i. */
  readyz(i: number): Promise<any>;
  cleanup(): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  /** FLUXGATE_STORE for every node (postgres://…); unset: each node on its embedded store. */
  store?: string;
  leaseTtlMs?: number;
  env?: Record<string, string>;
}

/** Waits until the NATS cluster has a JetStream meta leader (account info answers). */
async function jetStreamReady(urls: string[]): Promise<void> {
  const nc = await connect({ servers: urls, timeout: 2000 });
  try {
    await waitFor(async () => {
      const jsm = await jetstreamManager(nc, { timeout: 1000 });
      return (await jsm.getAccountInfo()) !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 100, what: 'a JetStream meta leader' });
  } finally {
    await nc.close();
  }
}

export async function startLocalCluster(opts: ClusterOptions = {}): Promise<LocalCluster> {
  if (!HAPROXY_BIN) throw new Error('haproxy is not installed (apt-get install haproxy)');
  const tmp = await tempDir('fluxgate-cluster-');
  const nodes: ClusterNode[] = [];
  let nats: NatsCluster | undefined;
  let haproxy: ChildProcess | undefined;
  let haproxyOut = '';
  let respawn: ((i: number, ports?: { httpPort: number; mqttPort: number }) => Promise<void>) | undefined;
  const stopChild = async (c: ChildProcess, signal: NodeJS.Signals): Promise<void> => {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill(signal);
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    alive.delete(c);
  };
  const cleanup = async (): Promise<void> => {
    try {
      if (haproxy) await stopChild(haproxy, 'SIGTERM');
      await Promise.all(nodes.filter((n) => n.running).map(async (n) => { n.running = false; await stopChild(n.child, 'SIGTERM'); }));
      await nats?.cleanup();
    } finally {
      await tmp.cleanup();
    }
  };
  try {
    nats = await startNatsCluster(3);
    await jetStreamReady(nats.urls);
    const count = opts.nodes ?? 3;
    const env = {
      FLUXGATE_LOG: nats.urls.join(','), FLUXGATE_LOG_REPLICAS: '3', FLUXGATE_CLUSTER_LEASE_TTL_MS: String(opts.leaseTtlMs ?? 2000),
      ...(opts.store ? { FLUXGATE_STORE: opts.store } : {}), ...opts.env,
    };
    // One after the other: the first creates the stream and the lease bucket.
    const spawnAt = async (i: number, ports?: { httpPort: number; mqttPort: number }): Promise<void> => {
      const name = `node-${i + 1}`;
      const dir = join(tmp.dir, name);
      const n = await spawnNode(dir, { ...env, FLUXGATE_NODE_ID: name, ...(ports ? { FLUXGATE_HTTP_PORT: String(ports.httpPort), FLUXGATE_MQTT_PORT: String(ports.mqttPort) } : {}) });
      alive.add(n.child);
      const httpPort = Number(new URL(n.url).port);
      nodes[i] = { name, dir, child: n.child, url: n.url, httpPort, mqttPort: n.mqttPort!, running: true, output: n.output };
      n.child.once('exit', () => { if (nodes[i]!.child === n.child) nodes[i]!.running = false; });
    };
    respawn = spawnAt;
    for (let i = 0; i < count; i++) await spawnAt(i);
    const ports = { mqttPort: await freePort(), httpPort: await freePort(), statsPort: await freePort() };
    const cfg = join(tmp.dir, 'haproxy.cfg');
    await writeFile(cfg, haproxyConfig({ ...ports, nodes: nodes.map((n) => ({ name: n.name, host: '127.0.0.1', httpPort: n.httpPort, mqttPort: n.mqttPort })) }));
    haproxy = spawn(HAPROXY_BIN, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    alive.add(haproxy);
    haproxy.stdout!.on('data', (d) => { haproxyOut = (haproxyOut + d).slice(-20_000); });
    haproxy.stderr!.on('data', (d) => { haproxyOut = (haproxyOut + d).slice(-20_000); });
    const httpUrl = `http://127.0.0.1:${ports.httpPort}`;
    const statsUrl = `http://127.0.0.1:${ports.statsPort}/`;
    // Ready when HAProxy answers and every running node is UP in its stats (CSV: svname, status).
    const allUp = () => waitFor(async () => {
      if (haproxy!.exitCode !== null) throw new Error(`haproxy exited:\n${haproxyOut}`);
      const csv = await (await fetch(`${statsUrl};csv`)).text();
      const up = csv.split('\n').filter((l) => /^fluxgate_(mqtt|http),node-/.test(l) && l.split(',')[17] === 'UP');
      return up.length === nodes.filter((n) => n.running).length * 2;
    }, { timeoutMs: 20_000, intervalMs: 50, what: `haproxy with every node UP` });
    await allUp();
    return {
      nats, nodes, httpUrl, mqttPort: ports.mqttPort, statsUrl,
      haproxyOutput: () => haproxyOut,
      haproxyPid: haproxy.pid,
      async killNode(i) {
        const n = nodes[i]!;
        n.running = false;
        await stopChild(n.child, 'SIGKILL');
      },
      async restartNode(i) {
        const n = nodes[i]!;
        if (n.running) throw new Error(`${n.name} is running`);
        await respawn!(i, { httpPort: n.httpPort, mqttPort: n.mqttPort });
        await allUp();
      },
      async readyz(i) {
        return (await apiClient(nodes[i]!.url, ADMIN_KEY)('GET', '/readyz')).body;
      },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
