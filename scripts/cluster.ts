/**
 * @module `scripts/cluster`: a whole Fluxgate cluster on this one machine, for trying it out
 * (docs/cluster.md): 3 nats-servers clustered with JetStream (the log stream at R3), N
 * Fluxgate nodes (`--log nats://…` with all three servers, each its own data dir and ports)
 * and HAProxy in front (config generated from deploy/haproxy.cfg with the real ports). Every
 * process runs detached; its pid, ports and log file go into the state directory, and `stop`
 * ends exactly those pids (after checking each still runs the program it started).
 *
 *   scripts/cluster start [--nodes 3] [--store postgres://…] [--schema S] [--dir DIR] [--http-port N] [--mqtt-port N]
 *   scripts/cluster status [--dir DIR]
 *   scripts/cluster kill NAME [--dir DIR]      SIGKILL one process (node-2, nats-1, haproxy): a failover drill
 *   scripts/cluster revive NAME [--dir DIR]    start it again with the same ports and data
 *   scripts/cluster stop [--dir DIR] [--clean] SIGTERM everything started (SIGKILL after 15 s); --clean removes DIR
 *
 * DIR defaults to $FLUXGATE_CLUSTER_DIR or /tmp/fluxgate-cluster. Ports are free ones below
 * the kernel's ephemeral range unless --http-port / --mqtt-port pick HAProxy's.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, readFileSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { haproxyConfig } from '../src/cluster/haproxy.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'bin', 'fluxgate.js');
const find = (names: string[]) => names.find((p) => existsSync(p));
const NATS_BIN = find(['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']);
const HAPROXY_BIN = find(['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy']);

interface Proc { name: string; pid: number; cmd: string; args: string[]; env: Record<string, string>; log: string; marker: string; ports: Record<string, number> }
interface State { dir: string; adminKey: string; store: string; schema?: string; natsUrls: string[]; haproxy: { httpPort: number; mqttPort: number; statsPort: number }; procs: Proc[] }

function parse(argv: string[]): { cmd?: string; pos: string[]; flags: Record<string, string> } {
  const pos: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (v !== undefined) flags[k] = v;
      else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags[k] = argv[++i]!;
      else flags[k] = 'true';
    } else pos.push(a);
  }
  return { cmd: pos.shift(), pos, flags };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, cond: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try { const v = await cond(); if (v) return v; } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100); // polling interval of a condition with a deadline
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((r) => {
    const srv = createServer();
    srv.once('error', () => r(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => r(true)));
  });
}

const taken = new Set<number>();
async function freePort(): Promise<number> {
  const [low0] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const low = 10_000;
  const high = Math.max(low + 1000, (low0 ?? 32768) - 1);
  for (let i = 0; i < 100; i++) {
    const p = low + Math.floor(Math.random() * (high - low));
    if (!taken.has(p) && await canBind(p)) { taken.add(p); return p; }
  }
  throw new Error('no free port found');
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** The pid still runs what we started (not a recycled pid). */
function isOurs(p: Proc): boolean {
  if (!isAlive(p.pid)) return false;
  try { return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(p.marker); } catch { return false; }
}

function launch(p: Omit<Proc, 'pid'>): Proc {
  const fd = openSync(p.log, 'a');
  const child = spawn(p.cmd, p.args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...p.env } });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`${p.name} could not be started (${p.cmd})`);
  return { ...p, pid: child.pid };
}

const stateFile = (dir: string) => join(dir, 'state.json');
async function loadState(dir: string): Promise<State> {
  try { return JSON.parse(await readFile(stateFile(dir), 'utf8')) as State; } catch {
    throw new Error(`no cluster state in ${dir} (start one with: scripts/cluster start${dir === defaultDir() ? '' : ` --dir ${dir}`})`);
  }
}
const saveState = (s: State) => writeFile(stateFile(s.dir), JSON.stringify(s, null, 2));
const defaultDir = () => resolve(process.env.FLUXGATE_CLUSTER_DIR ?? '/tmp/fluxgate-cluster');

async function waitReady(p: Proc, s: State): Promise<void> {
  const tail = () => { try { return readFileSync(p.log, 'utf8').slice(-3000); } catch { return ''; } };
  if (p.name.startsWith('nats-')) {
    await until(`${p.name} to listen`, 15_000, async () => { if (!isAlive(p.pid)) throw new Error(`${p.name} exited:\n${tail()}`); return !(await canBind(p.ports.client!)); });
  } else if (p.name.startsWith('node-')) {
    await until(`${p.name} /readyz`, 60_000, async () => {
      if (!isAlive(p.pid)) throw new Error(`${p.name} exited:\n${tail()}`);
      return (await fetch(`http://127.0.0.1:${p.ports.http}/readyz`)).ok;
    });
  } else {
    await until('haproxy to route to every node', 20_000, async () => {
      if (!isAlive(p.pid)) throw new Error(`haproxy exited:\n${tail()}`);
      const up = (await stats(s)).filter((r) => r.status === 'UP').length;
      return up === s.procs.filter((x) => x.name.startsWith('node-') && isOurs(x)).length * 2;
    });
  }
}

async function stats(s: State): Promise<Array<{ backend: string; server: string; status: string; check: string }>> {
  const csv = await (await fetch(`http://127.0.0.1:${s.haproxy.statsPort}/;csv`)).text();
  return csv.split('\n').filter((l) => /^fluxgate_(mqtt|http),node-/.test(l)).map((l) => {
    const f = l.split(',');
    return { backend: f[0]!, server: f[1]!, status: f[17]!, check: f[36] ?? '' };
  });
}

async function jetStreamReady(urls: string[]): Promise<void> {
  const nc = await connect({ servers: urls, timeout: 2000 });
  try {
    await until('a JetStream meta leader', 30_000, async () => (await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo()) !== undefined);
  } finally { await nc.close(); }
}

async function start(flags: Record<string, string>): Promise<void> {
  if (!NATS_BIN) throw new Error('nats-server is not installed: apt-get install nats-server');
  if (!HAPROXY_BIN) throw new Error('haproxy is not installed: apt-get install haproxy');
  const dir = resolve(flags.dir ?? defaultDir());
  if (existsSync(stateFile(dir))) {
    const old = await loadState(dir);
    if (old.procs.some(isOurs)) throw new Error(`a cluster from ${dir} is running: scripts/cluster status${flags.dir ? ` --dir ${dir}` : ''}, or stop it first`);
  }
  const nodes = Number(flags.nodes ?? 3);
  if (!Number.isInteger(nodes) || nodes < 1) throw new Error('--nodes must be a whole number ≥ 1');
  const store = flags.store ?? 'embedded';
  await mkdir(join(dir, 'logs'), { recursive: true });
  const s: State = {
    dir, adminKey: randomBytes(16).toString('hex'), store, schema: flags.schema, natsUrls: [],
    haproxy: { httpPort: Number(flags['http-port'] ?? 0) || await freePort(), mqttPort: Number(flags['mqtt-port'] ?? 0) || await freePort(), statsPort: await freePort() },
    procs: [],
  };
  try {
    // NATS: three servers with routes to each other, JetStream in each.
    const client = [await freePort(), await freePort(), await freePort()];
    const route = [await freePort(), await freePort(), await freePort()];
    const monitor = [await freePort(), await freePort(), await freePort()];
    const clusterName = `fluxgate-${randomBytes(3).toString('hex')}`;
    for (let i = 0; i < 3; i++) {
      const name = `nats-${i + 1}`;
      const nd = join(dir, name);
      await mkdir(nd, { recursive: true });
      const conf = join(nd, 'nats.conf');
      await writeFile(conf, [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${client[i]}`,
        `http: 127.0.0.1:${monitor[i]}`,
        `jetstream { store_dir: "${join(nd, 'js')}" }`,
        `cluster { name: ${clusterName}, listen: 127.0.0.1:${route[i]}, routes: [${route.map((p) => `nats-route://127.0.0.1:${p}`).join(', ')}] }`,
      ].join('\n') + '\n');
      s.procs.push(launch({ name, cmd: NATS_BIN, args: ['-c', conf], env: {}, log: join(dir, 'logs', `${name}.log`), marker: conf, ports: { client: client[i]!, route: route[i]!, monitor: monitor[i]! } }));
      s.natsUrls.push(`nats://127.0.0.1:${client[i]}`);
    }
    await saveState(s);
    for (const p of s.procs) await waitReady(p, s);
    await jetStreamReady(s.natsUrls);

    // Fluxgate nodes: the first creates the stream and the lease bucket, then the others.
    for (let i = 0; i < nodes; i++) {
      const name = `node-${i + 1}`;
      const http = await freePort();
      const mqtt = await freePort();
      const data = join(dir, name);
      const env: Record<string, string> = {
        FLUXGATE_DATA_DIR: data, FLUXGATE_HTTP_HOST: '127.0.0.1', FLUXGATE_HTTP_PORT: String(http), FLUXGATE_MQTT_HOST: '127.0.0.1', FLUXGATE_MQTT_PORT: String(mqtt),
        FLUXGATE_LOG: s.natsUrls.join(','), FLUXGATE_LOG_REPLICAS: '3', FLUXGATE_NODE_ID: name, FLUXGATE_ADMIN_KEY: s.adminKey, FLUXGATE_STORE: store,
        ...(flags.schema ? { FLUXGATE_STORE_SCHEMA: flags.schema } : {}),
      };
      const p = launch({ name, cmd: process.execPath, args: [CLI, 'start', '--data-dir', data], env, log: join(dir, 'logs', `${name}.log`), marker: data, ports: { http, mqtt } });
      s.procs.push(p);
      await saveState(s);
      if (i === 0) await waitReady(p, s);
    }
    await Promise.all(s.procs.filter((p) => p.name.startsWith('node-')).map((p) => waitReady(p, s)));

    // HAProxy in front, config from deploy/haproxy.cfg with these ports.
    const cfg = join(dir, 'haproxy.cfg');
    await writeFile(cfg, haproxyConfig({ ...s.haproxy, nodes: s.procs.filter((p) => p.name.startsWith('node-')).map((p) => ({ name: p.name, host: '127.0.0.1', httpPort: p.ports.http!, mqttPort: p.ports.mqtt! })) }) + '\n');
    const h = launch({ name: 'haproxy', cmd: HAPROXY_BIN, args: ['-f', cfg, '-db'], env: {}, log: join(dir, 'logs', 'haproxy.log'), marker: cfg, ports: { ...s.haproxy } });
    s.procs.push(h);
    await saveState(s);
    await waitReady(h, s);
  } catch (err) {
    console.error(`start failed: ${(err as Error).message}\nstopping what was started…`);
    await stop(s, false);
    process.exitCode = 1;
    return;
  }
  console.log(`Fluxgate cluster is running (state and logs in ${dir})\n`);
  await status(s);
  const http = `http://127.0.0.1:${s.haproxy.httpPort}`;
  console.log(`
Try next:
  export FLUXGATE_ADMIN_KEY=${s.adminKey}
  npm run fluxgate -- device create thermo-1 --url ${http}
  curl -H "Authorization: Bearer <token>" -d '{"temperature":21.5}' ${http}/api/v1/devices/thermo-1/telemetry
  scripts/cluster kill node-1        # then: scripts/cluster status  (HAProxy routes around it, processing moves)
  scripts/cluster stop`);
  if (store === 'embedded') {
    console.log(`
Note: the nodes run on the EMBEDDED store (no --store postgres://… given): each node has its own
device registry and history, so a device created through HAProxy exists only on the node that took
that request. For a real cluster: scripts/cluster start --store postgres://USER@HOST:5432/DB`);
  }
}

async function status(s: State): Promise<void> {
  const row = (cols: string[]) => console.log(cols.map((c, i) => c.padEnd([10, 9, 8, 0][i] ?? 0)).join(' '));
  row(['name', 'pid', 'state', 'where']);
  for (const p of s.procs) {
    const up = isOurs(p);
    let where = '';
    if (p.name.startsWith('nats-')) where = `nats://127.0.0.1:${p.ports.client}  monitor http://127.0.0.1:${p.ports.monitor}/jsz`;
    else if (p.name.startsWith('node-')) {
      where = `http://127.0.0.1:${p.ports.http}  mqtt :${p.ports.mqtt}`;
      if (up) {
        try {
          const r = await (await fetch(`http://127.0.0.1:${p.ports.http}/readyz`, { signal: AbortSignal.timeout(2000) })).json() as { ready: boolean; components: Record<string, { ok: boolean; detail?: string }> };
          where += `  ${r.ready ? 'ready' : 'NOT READY'}; process: ${r.components.process?.detail ?? '?'}; log: ${r.components.log?.detail ?? '?'}`;
        } catch (err) { where += `  /readyz: ${(err as Error).message}`; }
      }
    } else where = `HTTP http://127.0.0.1:${s.haproxy.httpPort}  MQTT :${s.haproxy.mqttPort}  stats http://127.0.0.1:${s.haproxy.statsPort}/`;
    row([p.name, String(p.pid), up ? 'running' : 'DOWN', where]);
  }
  const h = s.procs.find((p) => p.name === 'haproxy');
  if (h && isOurs(h)) {
    try {
      const byServer = new Map<string, string[]>();
      for (const r of await stats(s)) byServer.set(r.server, [...(byServer.get(r.server) ?? []), `${r.backend.replace('fluxgate_', '')} ${r.status}`]);
      console.log(`\nHAProxy sees: ${[...byServer].map(([k, v]) => `${k} (${v.join(', ')})`).join('; ')}`);
    } catch (err) { console.log(`\nHAProxy stats: ${(err as Error).message}`); }
  }
  console.log(`\nadmin key: ${s.adminKey}   store: ${s.store}${s.schema ? ` (schema ${s.schema})` : ''}   NATS: ${s.natsUrls.join(',')}`);
}

async function stop(s: State, clean: boolean): Promise<void> {
  const order = [...s.procs.filter((p) => p.name === 'haproxy'), ...s.procs.filter((p) => p.name.startsWith('node-')), ...s.procs.filter((p) => p.name.startsWith('nats-'))];
  const running = order.filter(isOurs);
  for (const group of [running.filter((p) => !p.name.startsWith('nats-')), running.filter((p) => p.name.startsWith('nats-'))]) {
    for (const p of group) { try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone already */ } }
    await until('processes to exit', 15_000, async () => group.every((p) => !isAlive(p.pid))).catch(() => {
      for (const p of group) if (isAlive(p.pid)) { console.error(`${p.name} (pid ${p.pid}) did not exit after SIGTERM; SIGKILL`); try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
    });
    for (const p of group) console.log(`stopped ${p.name} (pid ${p.pid})`);
  }
  if (clean) { await rm(s.dir, { recursive: true, force: true }); console.log(`removed ${s.dir}`); }
  else if (existsSync(s.dir)) await rm(stateFile(s.dir), { force: true });
}

async function kill(s: State, name: string): Promise<void> {
  const p = s.procs.find((x) => x.name === name);
  if (!p) throw new Error(`no process named ${name}: ${s.procs.map((x) => x.name).join(', ')}`);
  if (!isOurs(p)) { console.log(`${name} is not running`); return; }
  process.kill(p.pid, 'SIGKILL');
  await until(`${name} to exit`, 5000, async () => !isAlive(p.pid));
  console.log(`killed ${name} (pid ${p.pid}) with SIGKILL at ${new Date().toISOString()}`);
}

async function revive(s: State, name: string): Promise<void> {
  const i = s.procs.findIndex((x) => x.name === name);
  if (i < 0) throw new Error(`no process named ${name}`);
  const old = s.procs[i]!;
  if (isOurs(old)) { console.log(`${name} is running (pid ${old.pid})`); return; }
  const { pid: _pid, ...spec } = old;
  const p = launch(spec);
  s.procs[i] = p;
  await saveState(s);
  await waitReady(p, s);
  console.log(`${name} is running again (pid ${p.pid})`);
}

async function main(): Promise<void> {
  const { cmd, pos, flags } = parse(process.argv.slice(2));
  const dir = resolve(flags.dir ?? defaultDir());
  switch (cmd) {
    case 'start': return start(flags);
    case 'status': return status(await loadState(dir));
    case 'stop': return stop(await loadState(dir), flags.clean === 'true');
    case 'kill': return kill(await loadState(dir), pos[0] ?? '');
    case 'revive': return revive(await loadState(dir), pos[0] ?? '');
    default:
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => /^ \*   scripts\/cluster|^ \* DIR|^ \* the kernel/.test(l)).map((l) => l.slice(3)).join('\n'));
      if (cmd && cmd !== 'help') process.exitCode = 1;
  }
}

main().catch((err) => { console.error((err as Error).message); process.exitCode = 1; });
