/**
 * @module One load-generator process of bench/shedding-100k.ts (started with fork, driven over
 * IPC). It opens its MQTT connections from its own source address (127.0.0.x, so the
 * generators together stay under the per-process open-file limit and spread over addresses),
 * and plays a time-compressed fleet: every device it carries sends a full snapshot every
 * `snapshotEveryS` seconds (random phase) and `eventsPerSnapshot` change events in between, all
 * QoS 1. A connection is either one device (native: username = device token, topic
 * devices/{id}/…) or a gateway carrying many devices under a topic template. Events are
 * numbered per device (`<device>:<seq>`), so the parent knows every event id that was
 * acknowledged and can compare them with the store. A message waits in a small bounded outbox
 * while the connection's window of unacknowledged publishes is full (the node is slow to
 * answer, or slows the connection down): what does not fit is counted as "held back" (a real
 * device would buffer or skip it), never as offered.
 *
 * Before the load, a warm-up makes every device known: one `attributes` message per device
 * (a fleet announcing itself at boot; under an autoProvision template it registers the device),
 * so registration does not compete with the measured phase.
 */
import { createConnection } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';

export interface GeneratorConn {
  username: string;
  password?: string;
  clientId: string;
  devices: string[];
}

export interface GeneratorConfig {
  host: string;
  port: number;
  localAddress: string;
  conns: GeneratorConn[];
  /** `{device}` and `{kind}` are replaced; kind words from `kindWords`. */
  topic: string;
  kindWords: { event: string; snapshot: string };
  snapshotEveryS: number;
  eventsPerSnapshot: number;
  durationS: number;
  /** QoS 1 publishes in flight per connection. */
  window: number;
  /** Messages queued per connection (beyond the window) before new ones are held back. */
  outboxMax: number;
  /** Topic of the warm-up message; `{device}` is replaced. */
  warmupTopic: string;
}

export interface GeneratorCounters {
  eventsOffered: number; eventsAcked: number; eventsRefused: number;
  snapshotsOffered: number; snapshotsAcked: number; snapshotsShed: number; snapshotsRefused: number;
  heldBack: number; connected: number; errors: string[];
  /** Warm-up messages acknowledged (reported during the warm-up, so the parent can say where it stalled). */
  warmupAcked: number;
}

interface Pending { device: number; kind: 'event' | 'snapshot' }

const counters: GeneratorCounters = { eventsOffered: 0, eventsAcked: 0, eventsRefused: 0, snapshotsOffered: 0, snapshotsAcked: 0, snapshotsShed: 0, snapshotsRefused: 0, heldBack: 0, connected: 0, errors: [], warmupAcked: 0 };

function noteError(msg: string): void {
  if (counters.errors.length < 20) counters.errors.push(msg);
}

class Conn {
  client!: MqttClient;
  private readonly outbox: Pending[] = [];
  private inflight = 0;
  private snapAcc = 0;
  private eventAcc = 0;
  private snapNext = 0;
  /** Next event sequence of each device of this connection; the parent rebuilds ids from it. */
  readonly eventSeq: Uint32Array;
  /** Event sequence numbers acknowledged per device (acks may come out of order; all must come). */
  readonly eventAcked: Uint32Array;
  private readonly phase: number[];

  constructor(private readonly cfg: GeneratorConfig, readonly spec: GeneratorConn) {
    this.eventSeq = new Uint32Array(spec.devices.length);
    this.eventAcked = new Uint32Array(spec.devices.length);
    // Random snapshot phase: the fleet's snapshots spread over the period.
    this.phase = spec.devices.map((_, i) => i);
    for (let i = this.phase.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [this.phase[i], this.phase[j]] = [this.phase[j]!, this.phase[i]!]; }
  }

  /**
   * Sends one attributes message per device of this connection, `window` at a time. Fails when
   * the connection closes meanwhile (mqtt.js leaves QoS 1 publishes in flight unanswered then).
   */
  async warmup(): Promise<void> {
    let next = 0;
    let onClose!: () => void;
    const closed = new Promise<never>((_, reject) => {
      onClose = () => reject(new Error(`${this.spec.clientId}: connection closed during the warm-up (${counters.warmupAcked} warm-up messages acknowledged in this generator; errors: ${counters.errors.slice(-3).join(' | ') || 'none'})`));
      this.client.once('close', onClose);
    });
    try {
      await Promise.race([closed, Promise.all(Array.from({ length: this.cfg.window }, async () => {
        while (next < this.spec.devices.length) {
          const device = this.spec.devices[next++]!;
          await this.client.publishAsync(this.cfg.warmupTopic.replace('{device}', device), JSON.stringify({ id: `${device}:boot`, fw: '2.4.1', model: 'door-sensor' }), { qos: 1 });
          counters.warmupAcked++;
        }
      }))]);
    } finally {
      this.client.off('close', onClose);
    }
  }

  async connect(): Promise<void> {
    const { host, port, localAddress } = this.cfg;
    this.client = new mqtt.MqttClient(() => createConnection({ host, port, localAddress }), {
      username: this.spec.username, password: this.spec.password, clientId: this.spec.clientId, protocolVersion: 5,
      reconnectPeriod: 0, connectTimeout: 60_000, keepalive: 120, clean: true,
    } as never);
    await new Promise<void>((resolve, reject) => {
      this.client.once('connect', () => resolve());
      this.client.once('error', reject);
    });
    this.client.on('error', (err) => noteError(`${this.spec.clientId}: ${err.message}`));
    this.client.on('close', () => { if (!stopping) noteError(`${this.spec.clientId}: connection closed`); });
    this.client.on('disconnect', (p) => noteError(`${this.spec.clientId}: DISCONNECT from the node, reason 0x${(p.reasonCode ?? 0).toString(16)}${p.properties?.reasonString ? ` (${p.properties.reasonString})` : ''}`));
    counters.connected++;
  }

  /** Adds what is due over `dtS` seconds to the outbox. */
  tick(dtS: number): void {
    const n = this.spec.devices.length;
    this.snapAcc += (n * dtS) / this.cfg.snapshotEveryS;
    this.eventAcc += (n * this.cfg.eventsPerSnapshot * dtS) / this.cfg.snapshotEveryS;
    while (this.snapAcc >= 1) {
      this.snapAcc--;
      this.enqueue({ device: this.phase[this.snapNext++ % n]!, kind: 'snapshot' });
    }
    while (this.eventAcc >= 1) {
      this.eventAcc--;
      this.enqueue({ device: Math.floor(Math.random() * n), kind: 'event' });
    }
    this.pump();
  }

  get busy(): boolean { return this.inflight > 0 || this.outbox.length > 0; }

  private enqueue(p: Pending): void {
    if (this.outbox.length >= this.cfg.outboxMax) { counters.heldBack++; return; }
    this.outbox.push(p);
  }

  pump(): void {
    while (this.inflight < this.cfg.window && this.outbox.length > 0) this.send(this.outbox.shift()!);
  }

  private send(p: Pending): void {
    const device = this.spec.devices[p.device]!;
    const now = Date.now();
    const topic = this.cfg.topic.replace('{device}', device).replace('{kind}', this.cfg.kindWords[p.kind]);
    let payload: string;
    if (p.kind === 'event') {
      const seq = this.eventSeq[p.device]!++;
      payload = JSON.stringify({ id: `${device}:${seq}`, ts: now, door: seq % 2 ? 'open' : 'closed', alarm: seq % 7 === 0 });
      counters.eventsOffered++;
    } else {
      payload = JSON.stringify({ id: `${device}:s${now}`, ts: now, temperature: 20 + (now % 100) / 10, humidity: 40 + (now % 37), door: 'closed', rssi: -60 - (now % 30), battery: 3.3, fw: '2.4.1', uptime: Math.floor(now / 1000) });
      counters.snapshotsOffered++;
    }
    this.inflight++;
    this.client.publish(topic, payload, { qos: 1 }, (err) => {
      this.inflight--;
      const code = (err as { code?: number } | undefined)?.code;
      if (p.kind === 'event') {
        if (err) { counters.eventsRefused++; noteError(`event refused: ${err.message}`); } else { counters.eventsAcked++; this.eventAcked[p.device]!++; }
      } else if (!err) counters.snapshotsAcked++;
      else if (code === 0x97) counters.snapshotsShed++;
      else { counters.snapshotsRefused++; noteError(`snapshot refused: ${err.message}`); }
      this.pump();
    });
  }
}

let stopping = false;

function nextCommand(want: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => { if (m === want) { process.off('message', on); resolve(); } };
    process.on('message', on);
  });
}

async function run(cfg: GeneratorConfig): Promise<void> {
  const conns = cfg.conns.map((c) => new Conn(cfg, c));
  // Connect a few at a time: a burst of thousands of CONNECTs is not what is measured here.
  for (let i = 0; i < conns.length; i += 50) await Promise.all(conns.slice(i, i + 50).map((c) => c.connect()));
  process.send!({ type: 'connected', connected: counters.connected });
  await nextCommand('warmup');
  const warmReport = setInterval(() => process.send!({ type: 'progress', counters }), 1000);
  try {
    await Promise.all(conns.map((c) => c.warmup()));
  } finally {
    clearInterval(warmReport);
  }
  process.send!({ type: 'warmed' });
  await nextCommand('start');
  const started = Date.now();
  let last = started;
  const report = setInterval(() => process.send!({ type: 'progress', counters }), 1000);
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = Date.now();
      const dt = (now - last) / 1000;
      last = now;
      for (const c of conns) c.tick(dt);
      if (now - started >= cfg.durationS * 1000) { clearInterval(timer); resolve(); }
    }, 50);
  });
  // Offering stops; what is queued or in flight is still sent and answered.
  const drainUntil = Date.now() + 60_000;
  while (conns.some((c) => c.busy) && Date.now() < drainUntil) {
    for (const c of conns) c.pump();
    await new Promise((r) => setTimeout(r, 50));
  }
  clearInterval(report);
  stopping = true;
  const acked = conns.map((c) => ({ devices: c.spec.devices, acked: Array.from(c.eventAcked), sent: Array.from(c.eventSeq) }));
  process.send!({ type: 'done', counters, acked, undrained: conns.filter((c) => c.busy).length });
  await Promise.all(conns.map((c) => c.client.endAsync(true).catch(() => undefined)));
}

process.once('message', (cfg: GeneratorConfig) => {
  run(cfg).catch((err) => { process.send!({ type: 'failed', error: String((err as Error)?.stack ?? err) }); }).finally(() => setTimeout(() => process.exit(0), 200));
});
