/**
 * @module Test helpers: real `nats-server` child processes with JetStream, on free ports and in
 * temporary directories — one server, or a cluster of three with routes. A server can be
 * killed and started again on the same port and store (a restart). Every process started here
 * is killed when the test process exits, even after a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './wait.js';

const CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

/** The nats-server binary, or undefined when it is not installed (tests then skip, saying so). */
export const NATS_SERVER_BIN: string | undefined = CANDIDATES.find((p) => existsSync(p));

const alive = new Set<ChildProcess>();
process.on('exit', () => { for (const c of alive) c.kill('SIGKILL'); });

/**
 * A port nothing listens on right now, picked below the kernel's ephemeral range: a port from
 * that range (what port 0 gives) can be taken by any outgoing connection — the cluster's own
 * routes — between this check and the server binding it, or when a killed server restarts.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768')).trim().split(/\s+/).map(Number);
  const low = 10_000;
  const high = Math.max(low + 1000, (ephemeralLow ?? 32768) - 1);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canBind(port)) return port;
  }
  throw new Error(`no free port between ${low} and ${high}`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  /** Its JetStream store directory (kept across kill/start). */
  readonly storeDir: string;
  readonly pid: number | undefined;
  /** Its server_name in a cluster (JetStream reports leaders by it). */
  readonly name: string;
  readonly running: boolean;
  /** The last 20 KiB of its log (stderr), for failure messages. */
  readonly output: string;
  /** Stops it abruptly (SIGKILL) and waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same store. */
  start(): Promise<void>;
}

class ServerProcess implements NatsServer {
  private child?: ChildProcess;
  output = '';
  constructor(readonly port: number, readonly storeDir: string, private readonly args: string[], readonly name: string) {}

  get url(): string { return `nats://127.0.0.1:${this.port}`; }
  get pid(): number | undefined { return this.child?.pid; }
  get running(): boolean { return this.child !== undefined; }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const child = spawn(NATS_SERVER_BIN!, this.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    alive.add(child);
    this.output = '';
    child.stderr!.on('data', (d: Buffer) => { this.output = (this.output + d.toString()).slice(-20_000); });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${this.name} not ready after 10 s:\n${this.output}`)), 10_000);
      const fail = (err: Error): void => { clearTimeout(timer); reject(err); };
      const ready = (): void => { if (this.output.includes('Server is ready')) { clearTimeout(timer); child.stderr!.off('data', ready); resolve(); } };
      child.stderr!.on('data', ready);
      child.once('exit', (code) => fail(new Error(`${this.name} exited with ${code} before it was ready:\n${this.output}`)));
    }).catch(async (err) => {
      await this.kill();
      throw err;
    });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
    alive.delete(child);
  }
}

export interface NatsHandle {
  server: NatsServer;
  url: string;
  /** Kills the server and removes its directory. */
  cleanup: () => Promise<void>;
}

/** One JetStream server on a free port with its store in a fresh temp dir. */
export async function startNatsServer(): Promise<NatsHandle> {
  const tmp = await tempDir('fluxgate-nats-');
  const port = await freePort();
  const storeDir = join(tmp.dir, 'js');
  const server = new ServerProcess(port, storeDir, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], `nats-server :${port}`);
  try {
    await server.start();
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
  return {
    server, url: server.url,
    async cleanup() {
      try { await server.kill(); } finally { await tmp.cleanup(); }
    },
  };
}

let clusters = 0;

export interface NatsCluster {
  /** In order; server i is named `<cluster>-n<i + 1>` (the name JetStream reports as leader). */
  servers: NatsServer[];
  urls: string[];
  cleanup: () => Promise<void>;
}

/** A JetStream cluster of `size` servers (routes between all of them), each with its own store. */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const tmp = await tempDir('fluxgate-nats-cluster-');
  const ports: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) { ports.push(await freePort()); routePorts.push(await freePort()); }
  // Names unique to this cluster: a server of another cluster on this machine that still tries
  // a route to a port now reused here is refused instead of joining (cluster names differ).
  const clusterName = `fg-${process.pid}-${++clusters}`;
  const servers: ServerProcess[] = [];
  for (let i = 0; i < size; i++) {
    const dir = join(tmp.dir, `n${i + 1}`);
    await mkdir(dir, { recursive: true });
    const conf = join(dir, 'nats.conf');
    const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
    await writeFile(conf, [
      `server_name: ${clusterName}-n${i + 1}`,
      `listen: 127.0.0.1:${ports[i]}`,
      `jetstream { store_dir: "${join(dir, 'js')}" }`,
      `cluster { name: ${clusterName}, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes}] }`,
    ].join('\n'));
    servers.push(new ServerProcess(ports[i]!, join(dir, 'js'), ['-c', conf], `${clusterName}-n${i + 1}`));
  }
  const cleanup = async (): Promise<void> => {
    try { await Promise.all(servers.map((s) => s.kill())); } finally { await tmp.cleanup(); }
  };
  try {
    await Promise.all(servers.map((s) => s.start()));
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { servers, urls: servers.map((s) => s.url), cleanup };
}
