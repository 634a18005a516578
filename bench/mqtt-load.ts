/**
 * @module MQTT load generator: runs Fluxgate's broker (standalone, real WAL with fdatasync
 * before every PUBACK) and Debian's Mosquitto (a second instance on a free port, no
 * persistence) side by side, each pinned to core 0, with this load on core 1. Raw sockets,
 * pre-encoded MQTT 3.1.1 frames, many connections from several loopback addresses
 * (127.0.0.1-4), QoS 0/1/2 with an in-flight window, HDR histograms. Bounded by time.
 *
 *   node --import tsx bench/mqtt-load.ts [--publishers 100] [--window 16] [--seconds 5] [--idle 0]
 *                                        [--fanout-rate 10000] [--repeat 3] [--only fluxgate|mosquitto]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';

const { values } = parseArgs({ options: { publishers: { type: 'string', default: '100' }, window: { type: 'string', default: '16' }, seconds: { type: 'string', default: '5' }, idle: { type: 'string', default: '0' }, 'fanout-rate': { type: 'string', default: '10000' }, repeat: { type: 'string', default: '3' }, 'half-rate': { type: 'string' }, phases: { type: 'string', default: 'idle,q1,q2,q0,half,fan' }, only: { type: 'string' } } });
const PUBLISHERS = Number(values.publishers);
const WINDOW = Number(values.window);
const SECONDS = Number(values.seconds);
const IDLE = Number(values.idle);
const FANOUT_RATE = Number(values['fanout-rate']);
const REPEAT = Number(values.repeat);

// The load runs on core 1, the brokers on core 0.
if (!process.env.FLUXGATE_BENCH_PINNED) {
  const r = spawnSync('taskset', ['-c', '1', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, FLUXGATE_BENCH_PINNED: '1' } });
  process.exit(r.status ?? 1);
}

/** Brokers on core 0 (FLUXGATE_BENCH_NOPIN=1 leaves them to the scheduler, for comparison). */
const PIN = process.env.FLUXGATE_BENCH_NOPIN ? ['-a', '0xffffffff'] : ['-c', '0'];

interface Broker { name: string; port: number; proc: ChildProcess; dir: string }

/** A 100-byte JSON object. */
const TS_AT = 6;
const JSON100 = Buffer.from(`{"ts":1795500000000,"temperature":21.5,"humidity":40.25,"state":"ok","pad":"${'x'.repeat(22)}"}`);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function startFluxgate(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'fluxgate-bench-'));
  const script = new URL('./mqtt-standalone.ts', import.meta.url).pathname;
  const prof = process.env.FLUXGATE_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.FLUXGATE_BENCH_PROF] : [];
  const proc = spawn('taskset', [...PIN, process.execPath, ...prof, '--import', 'tsx', script, '--data-dir', dir, '--devices', String(Math.max(PUBLISHERS, IDLE, 1000))], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve(JSON.parse(l).port));
    proc.once('exit', (c) => reject(new Error(`fluxgate exited ${c}`)));
  });
  return { name: 'fluxgate', port, proc, dir };
}

async function startMosquitto(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'mosquitto-bench-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'user root', 'max_queued_messages 100000', 'log_type error', 'log_dest stderr', ''].join('\n'));
  const proc = spawn('taskset', [...PIN, 'mosquitto', '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((r) => { const s = connect(port, '127.0.0.1'); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
    if (ok) break;
    if (i > 200) throw new Error('mosquitto did not start');
    await new Promise((r) => setTimeout(r, 25));
  }
  return { name: 'mosquitto', port, proc, dir };
}

async function stopBroker(b: Broker): Promise<void> {
  await new Promise<void>((r) => { b.proc.once('exit', () => r()); b.proc.kill('SIGTERM'); });
  await rm(b.dir, { recursive: true, force: true });
}

/** One load connection speaking pre-encoded MQTT 3.1.1. */
class LoadConn {
  readonly sock: Socket;
  inflight = 0;
  acked = 0;
  private nextId = 1;
  private carry: Buffer = Buffer.alloc(0);
  private readonly sentAt = new Float64Array(65536);
  onAck?: (latencyUs: number) => void;
  onPingresp?: () => void;
  /** Called after every chunk read (all its acks counted): the place to refill the window in one write. */
  onChunk?: () => void;
  private connack?: () => void;

  constructor(port: number, readonly index: number) {
    this.sock = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${1 + (index % 4)}` });
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', () => {});
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => { this.sock.once('connect', resolve); this.sock.once('error', reject); });
    const done = new Promise<void>((r) => (this.connack = r));
    this.sock.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `load-${this.index}`, clean: true, keepalive: 600, username: `dev-${this.index}`, password: Buffer.from(`tok-${this.index}`) }));
    await done;
  }

  private onData(d: Buffer): void {
    let b = this.carry.length ? Buffer.concat([this.carry, d]) : d;
    let i = 0;
    while (i + 2 <= b.length) {
      const len = b[i + 1];
      if (i + 2 + len > b.length) break;
      const type = b[i] >> 4;
      if (type === 2) this.connack?.();
      else if (type === 4 || type === 7) this.ack(b.readUInt16BE(i + 2)); // PUBACK, PUBCOMP
      else if (type === 5) this.sock.write(Buffer.from([0x62, 0x02, b[i + 2], b[i + 3]])); // PUBREC → PUBREL
      else if (type === 13) this.onPingresp?.();
      i += 2 + len;
    }
    this.carry = i < b.length ? Buffer.from(b.subarray(i)) : Buffer.alloc(0);
    b = this.carry;
    this.onChunk?.();
  }

  private ack(id: number): void {
    this.inflight--;
    this.acked++;
    this.onAck?.((performance.now() - this.sentAt[id]) * 1000);
  }

  /** Sends `n` QoS 1/2 publishes in one write, from a pre-encoded frame with the packet id (and, if asked, the send time) patched. */
  sendBatch(frame: Buffer, n: number, stamp = false): void {
    const out = Buffer.allocUnsafe(frame.length * n);
    const idAt = frame.length - JSON100.length - 2;
    const now = performance.now();
    for (let k = 0; k < n; k++) {
      frame.copy(out, k * frame.length);
      // "ts":NNNNNNNNNNNNN carries the send time in µs since the bench started (13 digits).
      if (stamp) out.write(String(Math.round(now * 1000)).padStart(13, '0'), k * frame.length + frame.length - JSON100.length + TS_AT, 'latin1');
      const id = this.nextId;
      this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1;
      out.writeUInt16BE(id, k * frame.length + idAt);
      this.sentAt[id] = now;
    }
    this.inflight += n;
    this.sock.write(out);
  }

  ping(): Promise<void> {
    return new Promise((r) => { this.onPingresp = r; this.sock.write(Buffer.from([0xc0, 0x00])); });
  }
}

const topicOf = (i: number) => `devices/dev-${i}/telemetry`;

async function openConns(port: number, n: number): Promise<LoadConn[]> {
  const conns = Array.from({ length: n }, (_, i) => new LoadConn(port, i));
  await Promise.all(conns.map((c) => c.open()));
  return conns;
}

interface Result { rate: number; p50?: number; p99?: number; max?: number; sent?: number }

/** Closed loop: each connection keeps `window` QoS 1/2 publishes in flight for `SECONDS`. */
async function maxRate(port: number, qos: 1 | 2, window: number): Promise<Result> {
  const conns = await openConns(port, PUBLISHERS);
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const frames = conns.map((_, i) => generate({ cmd: 'publish', topic: topicOf(i), payload: JSON100, qos, messageId: 1, retain: false, dup: false }));
  let measuring = false;
  let counted = 0;
  let running = true;
  for (const c of conns) {
    c.onAck = (us) => {
      if (measuring) { counted++; h.recordValue(Math.max(1, Math.round(us))); }
    };
    c.onChunk = () => {
      if (running && c.inflight < window) c.sendBatch(frames[c.index], window - c.inflight);
    };
    c.sendBatch(frames[c.index], window);
  }
  await new Promise((r) => setTimeout(r, 500)); // warm-up
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  running = false;
  for (const c of conns) c.sock.destroy();
  return { rate: counted / elapsed, p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, max: h.maxValue / 1000 };
}

/** Open loop at a fixed total rate (msg/s) spread over the connections; latency from send to PUBACK. */
async function fixedRate(port: number, rate: number, stamp = false): Promise<Result> {
  const conns = await openConns(port, PUBLISHERS);
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const frames = conns.map((_, i) => generate({ cmd: 'publish', topic: topicOf(i), payload: JSON100, qos: 1, messageId: 1, retain: false, dup: false }));
  let acked = 0;
  for (const c of conns) c.onAck = (us) => { acked++; h.recordValue(Math.max(1, Math.round(us))); };
  const t0 = performance.now();
  let sent = 0;
  let next = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = (performance.now() - t0) / 1000;
      if (elapsed >= SECONDS) { clearInterval(timer); resolve(); return; }
      const due = Math.max(0, Math.floor(rate * elapsed) - sent);
      // Spread over the connections round-robin, one write per connection per tick.
      const per = Math.floor(due / conns.length);
      const rest = due - per * conns.length;
      for (let k = 0; k < conns.length; k++) {
        const n = per + (((k - next + conns.length) % conns.length) < rest ? 1 : 0);
        if (n > 0) conns[k].sendBatch(frames[k], n, stamp);
      }
      next = (next + rest) % conns.length;
      sent += due;
    }, 1);
  });
  const deadline = performance.now() + 5000;
  while (acked < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  for (const c of conns) c.sock.destroy();
  return { rate: acked / SECONDS, p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, max: h.maxValue / 1000, sent };
}

/** QoS 0: write as fast as sockets take it, then PINGREQ on every connection; the rate counts until every PINGRESP. */
async function qos0Rate(port: number): Promise<Result> {
  const conns = await openConns(port, PUBLISHERS);
  const blocks = conns.map((_, i) => { const f = generate({ cmd: 'publish', topic: topicOf(i), payload: JSON100, qos: 0, retain: false, dup: false }); return { frame: f, block: Buffer.concat(Array(64).fill(f)) }; });
  let sent = 0;
  const t0 = performance.now();
  let running = true;
  await Promise.all(conns.map(async (c, i) => {
    while (running) {
      sent += 64;
      if (!c.sock.write(blocks[i].block)) await new Promise((r) => c.sock.once('drain', r));
      if (performance.now() - t0 >= SECONDS * 1000) running = false;
    }
  }));
  await Promise.all(conns.map((c) => c.ping()));
  const elapsed = (performance.now() - t0) / 1000;
  for (const c of conns) c.sock.destroy();
  return { rate: sent / elapsed };
}

/** Publish → subscriber latency: one subscriber on `devices/+/telemetry` (QoS 0), publishers at `rate` msg/s. */
async function fanout(port: number, rate: number): Promise<Result> {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const sub = connect({ port, host: '127.0.0.1' });
  sub.setNoDelay(true);
  const parser = createParser();
  let subscribed!: () => void;
  const ready = new Promise<void>((r) => (subscribed = r));
  let received = 0;
  parser.on('packet', (p: Packet) => {
    if (p.cmd === 'connack') sub.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/+/telemetry', qos: 0 }] }));
    else if (p.cmd === 'suback') subscribed();
    else if (p.cmd === 'publish') {
      const sent = Number((p.payload as Buffer).toString('latin1', TS_AT, TS_AT + 13)) / 1000;
      received++;
      h.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
    }
  });
  sub.on('data', (d: Buffer) => parser.parse(d));
  await new Promise<void>((r) => sub.once('connect', r));
  sub.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'fanout-sub', clean: true, keepalive: 600, username: 'app', password: Buffer.from('app') }));
  await ready;
  const r = await fixedRate(port, rate, true);
  const deadline = performance.now() + 5000;
  while (received < r.sent! && performance.now() < deadline) await new Promise((x) => setTimeout(x, 5));
  sub.destroy();
  return { rate: received / SECONDS, p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, max: h.maxValue / 1000 };
}

const rssKiB = (pid: number) => Number(spawnSync('ps', ['-o', 'rss=', '-p', String(pid)]).stdout.toString().trim());

/** Opens `n` idle connections (keepalive 600 s) from several loopback addresses and reports the broker's RSS growth. */
async function idle(b: Broker, n: number): Promise<{ connections: number; rssMiB: number; perConnKiB: number }> {
  const before = rssKiB(b.proc.pid!);
  const conns: LoadConn[] = [];
  for (let i = 0; i < n; i += 500) {
    const batch = Array.from({ length: Math.min(500, n - i) }, (_, k) => new LoadConn(b.port, i + k));
    await Promise.all(batch.map((c) => c.open()));
    conns.push(...batch);
  }
  // taskset execs the broker, so its pid is the broker's.
  const after = rssKiB(b.proc.pid!);
  for (const c of conns) c.sock.destroy();
  return { connections: conns.length, rssMiB: Math.round(after / 1024), perConnKiB: (after - before) / conns.length };
}

const fmt = (n: number | undefined, d = 0) => (n === undefined ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Runs `phase` on each broker in turn, `REPEAT` times (alternating, so a noisy moment hits both),
 * and keeps the median run: by rate for throughput phases, by p99 for fixed-rate latency phases.
 */
async function alternate(brokers: Broker[], label: string, phase: (b: Broker) => Promise<Result>, by: 'rate' | 'p99' = 'rate'): Promise<Map<string, Result>> {
  const runs = new Map<string, Result[]>(brokers.map((b) => [b.name, []]));
  for (let i = 0; i < REPEAT; i++) {
    for (const b of brokers) {
      const r = await phase(b);
      runs.get(b.name)!.push(r);
      console.log(`${label} ${b.name} run ${i + 1}: ${fmt(r.rate)} msg/s${r.p99 !== undefined ? `, p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms` : ''}`);
    }
  }
  const out = new Map<string, Result>();
  for (const [name, rs] of runs) {
    const m = median(rs.map((r) => r[by] ?? 0));
    out.set(name, rs.find((r) => (r[by] ?? 0) === m)!);
  }
  return out;
}

async function main(): Promise<void> {
  console.log(`# MQTT load: ${PUBLISHERS} publishers, window ${WINDOW}, ${SECONDS} s per phase, ${REPEAT} alternating runs (median), 100-byte JSON, ${cpus()[0]?.model ?? ''}`);
  const only = values.only?.split(',');
  const brokers: Broker[] = [];
  try {
    for (const start of [startFluxgate, startMosquitto]) {
      const b = await start();
      if (only && !only.includes(b.name)) await stopBroker(b);
      else brokers.push(b);
    }
    const phases = new Set(values.phases!.split(','));
    const none = new Map<string, Result>(brokers.map((b) => [b.name, { rate: NaN }]));
    // Idle connections first, on fresh brokers, so the heap of the load phases does not blur the figure.
    const idleRows = new Map<string, string>();
    if (IDLE > 0 && phases.has('idle')) {
      for (const b of brokers) {
        const r = await idle(b, IDLE);
        idleRows.set(b.name, `${r.connections}: ${r.rssMiB} MiB, ${fmt(r.perConnKiB, 1)} KiB each → 100k ≈ ${fmt((r.perConnKiB * 100_000) / 1024 / 1024, 2)} GiB`);
        console.log(`idle ${b.name}: ${idleRows.get(b.name)}`);
      }
    }
    const q1 = phases.has('q1') ? await alternate(brokers, 'QoS 1', (b) => maxRate(b.port, 1, WINDOW)) : none;
    const q2 = phases.has('q2') ? await alternate(brokers, 'QoS 2', (b) => maxRate(b.port, 2, WINDOW)) : none;
    const q0 = phases.has('q0') ? await alternate(brokers, 'QoS 0', (b) => qos0Rate(b.port)) : none;
    // Half of the slower broker's QoS 1 rate, so both get the same offered load.
    const halfRate = values['half-rate'] ? Number(values['half-rate']) : Math.floor(Math.min(...[...q1.values()].map((r) => r.rate)) / 2);
    const half = phases.has('half') ? await alternate(brokers, `QoS 1 at ${halfRate} msg/s`, (b) => fixedRate(b.port, halfRate), 'p99') : none;
    const fan = phases.has('fan') ? await alternate(brokers, `fan-out at ${FANOUT_RATE} msg/s`, (b) => fanout(b.port, FANOUT_RATE), 'p99') : none;
    const rows: Array<Record<string, string>> = [];
    for (const b of brokers) {
      const row: Record<string, string> = {
        broker: b.name,
        'QoS 1 msg/s': fmt(q1.get(b.name)!.rate), 'QoS 1 p50/p99 ms': `${fmt(q1.get(b.name)!.p50, 2)} / ${fmt(q1.get(b.name)!.p99, 2)}`,
        'QoS 2 msg/s': fmt(q2.get(b.name)!.rate),
        'QoS 0 msg/s': fmt(q0.get(b.name)!.rate),
        [`PUBACK p50/p99 ms at ${fmt(halfRate)} msg/s`]: `${fmt(half.get(b.name)!.p50, 2)} / ${fmt(half.get(b.name)!.p99, 2)}`,
        'publish→subscriber p50/p99 ms': `${fmt(fan.get(b.name)!.p50, 2)} / ${fmt(fan.get(b.name)!.p99, 2)} (${fmt(fan.get(b.name)!.rate)} msg/s received)`,
      };
      if (idleRows.has(b.name)) row['idle connections: RSS'] = idleRows.get(b.name)!;
      rows.push(row);
      console.log(JSON.stringify(row));
    }
    console.table(rows);
  } finally {
    for (const b of brokers) await stopBroker(b);
  }
}

await main();
