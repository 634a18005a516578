/**
 * @module Processing leadership in cluster mode: exactly one node at a time reads the
 * `process` consumer group from the JetStream log, and another takes over within seconds when
 * it dies. Why one reader: src/log/jetstream/index.ts (taking a group over resets its consumer;
 * two readers of one consumer split a device's records out of order).
 *
 * The lease is one key in a JetStream key-value bucket (default bucket `fluxgate_leases`, key
 * `process`). It is laid out as a NATS KV bucket — stream `KV_<bucket>`, subject
 * `$KV.<bucket>.<key>`, one message per subject — so `nats kv get fluxgate_leases process`
 * shows the holder, but it is written with plain JetStream publishes and expected-sequence
 * headers (the @nats-io/kv package is not a dependency):
 *
 * - acquire: publish with `Nats-Expected-Last-Subject-Sequence: 0`, which JetStream stores
 *   only when the key holds nothing. A key whose value says `released` (a graceful stop) is
 *   taken with the released entry's sequence instead.
 * - renew: every ttl/3, publish with the expected sequence of our own last write. Any other
 *   answer (someone else wrote, the key expired and was re-created, no answer within ttl/3,
 *   the connection dropped) makes the holder stop its pipeline at once and become standby.
 *   Independently, a local deadline (last confirmed renewal's send time + ttl − ttl/4) stops it
 *   even if a renewal hangs, so the old holder has stopped before the key can expire on the
 *   server and anyone else can acquire it.
 * - expiry: the bucket's max age is the TTL (default 4 s), so the key of a dead holder
 *   disappears TTL after its last renewal; standby nodes retry acquisition every ttl/4, so a
 *   takeover happens about ttl .. 1.25·ttl after the holder died (≈ 4–5 s by default).
 * - release: a graceful stop writes `released` with the expected sequence, so a successor
 *   takes over within ttl/4 instead of waiting for the expiry.
 *
 * The TTL lives in the bucket (its max_age), so every node uses the bucket's value; the first
 * node creates the bucket from its `cluster.leaseTtlMs`. A restarted node is a new instance
 * (random id per process) and waits for its predecessor's lease like anybody else, so two
 * processes with the same node name never both hold it.
 *
 * What a handover does not promise: the old holder's batch in hand may still be written to the
 * store while the new holder starts (its stop waits for that batch); stores are idempotent on
 * message id and latest state is last-write-wins by device time, so that overlap stores nothing
 * twice. The new holder's first read rewinds the group to its ack floor (group.ts), so records
 * the dead holder read and never committed come again, in order.
 *
 * `startProcessing()` is what src/node.ts calls: with the embedded log it just runs the
 * pipeline; with nats:// it runs the pipeline only while this node holds the lease.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, nanos, millis, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import type { Config } from '../config/schema.js';
import type { Log } from '../log/log.js';

export interface LeaseOptions {
  /** NATS server URL(s). */
  servers: string | string[];
  /** Human-readable name of this node (shown to the others as the holder). */
  nodeId: string;
  /** Lease time-to-live, ms, used when this node creates the bucket; default 4000. */
  ttlMs?: number;
  /** Replicas of the bucket's stream when this node creates it; default 1. */
  replicas?: number;
  /** Default `fluxgate_leases`. */
  bucket?: string;
  /** Default `process`. */
  key?: string;
  /** Called when this node becomes the holder / stops being it. Never overlap: see ProcessLease. */
  onAcquired?: () => void;
  onLost?: (reason: string) => void;
  logger?: Logger;
}

export interface LeaseValue { node: string; instance: string; since: number; released?: boolean }

export type LeaseState = 'closed' | 'standby' | 'leader';

const WRONG_LAST_SEQUENCE = 10071;
const enc = new TextEncoder();
const dec = new TextDecoder();

function apiCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; api_error?: { err_code?: number } };
  return e?.api_error?.err_code ?? (typeof e?.code === 'number' ? e.code : undefined);
}

export class ProcessLease {
  readonly instance = randomUUID();
  private nc?: NatsConnection;
  private js!: JetStreamClient;
  private jsm!: JetStreamManager;
  private _state: LeaseState = 'closed';
  private revision = 0;
  private since = 0;
  private validUntil = 0;
  private ttl: number;
  private timer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private closed = false;
  private connected = false;
  /** The holder as last seen by a standby node. */
  private holder?: LeaseValue;
  private lastError?: string;
  readonly bucket: string;
  readonly key: string;

  constructor(private readonly opts: LeaseOptions) {
    this.ttl = opts.ttlMs ?? 4000;
    this.bucket = opts.bucket ?? 'fluxgate_leases';
    this.key = opts.key ?? 'process';
  }

  get state(): LeaseState { return this._state; }
  get ttlMs(): number { return this.ttl; }
  private get streamName(): string { return `KV_${this.bucket}`; }
  private get subject(): string { return `$KV.${this.bucket}.${this.key}`; }

  /** Connects, creates the bucket if missing and makes the first acquisition attempt. */
  async open(): Promise<void> {
    this.nc = await connect({
      servers: this.opts.servers, name: `fluxgate-lease-${this.opts.nodeId}`, timeout: 5000,
      maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100,
      // A dead server is noticed within ~3 s even without a TCP reset.
      pingInterval: 1000, maxPingOut: 2, noAsyncTraces: true,
    });
    this.connected = true;
    this.watch(this.nc);
    this.jsm = await jetstreamManager(this.nc, { timeout: 5000 });
    this.js = jetstream(this.nc, { timeout: 5000 });
    await this.ensureBucket();
    this._state = 'standby';
    await this.tick();
    this.schedule();
  }

  /** Stops renewing; a holder stops processing first (onLost, then `beforeRelease` awaited) and then releases the key. */
  async close(beforeRelease?: () => Promise<void>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    await this.ticking;
    if (this._state === 'leader') {
      const rev = this.revision;
      this.lose('node stopping');
      // Processing has stopped before the successor may start (if the lease expires meanwhile, the release below is refused, harmlessly).
      await beforeRelease?.().catch(() => undefined);
      await this.write({ node: this.opts.nodeId, instance: this.instance, since: this.since, released: true }, rev).catch(() => undefined);
    }
    this._state = 'closed';
    const nc = this.nc;
    if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
  }

  /** For /readyz: `leader` or `standby (leader: node-x)`. */
  describe(): string {
    if (this._state === 'leader') return `leader since ${new Date(this.since).toISOString()} (lease ${this.bucket}/${this.key}, ttl ${this.ttl} ms)`;
    if (this._state === 'closed') return 'lease closed';
    if (!this.connected) return 'standby (lease connection down; reconnecting)';
    if (this.holder && !this.holder.released) return `standby (leader: ${this.holder.node})`;
    return `standby (no leader right now${this.lastError ? `: ${this.lastError}` : ''})`;
  }

  private async ensureBucket(): Promise<void> {
    const info = await this.jsm.streams.info(this.streamName).catch((err: unknown) => {
      if (apiCode(err) === 10059 || /not found/i.test(String((err as Error)?.message))) return undefined;
      throw err;
    });
    if (info) { this.adoptTtl(info.config.max_age); return; }
    try {
      await this.jsm.streams.add({
        name: this.streamName, subjects: [`$KV.${this.bucket}.>`],
        retention: RetentionPolicy.Limits, storage: StorageType.Memory, discard: DiscardPolicy.Old,
        max_msgs_per_subject: 1, max_age: nanos(this.ttl), duplicate_window: nanos(Math.min(this.ttl, 120_000)),
        num_replicas: this.opts.replicas ?? 1, allow_rollup_hdrs: true, allow_direct: true,
      });
    } catch (err) {
      // Another node created it first: use its settings.
      if (!/already in use|exists/i.test(String((err as Error)?.message))) throw err;
      this.adoptTtl((await this.jsm.streams.info(this.streamName)).config.max_age);
    }
  }

  private adoptTtl(maxAgeNanos: number): void {
    const ttl = millis(maxAgeNanos);
    if (ttl > 0 && ttl !== this.ttl) {
      this.opts.logger?.info({ bucket: this.bucket, ttlMs: ttl, configured: this.ttl }, 'lease bucket exists with another TTL; using the bucket\'s');
      this.ttl = ttl;
    }
  }

  private schedule(): void {
    if (this.closed) return;
    const every = this._state === 'leader' ? Math.max(100, Math.floor(this.ttl / 3)) : Math.max(100, Math.floor(this.ttl / 4));
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => this.schedule());
    }, every);
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    try {
      if (this._state === 'leader') await this.renew();
      else if (this.connected) await this.tryAcquire();
    } catch (err) {
      this.lastError = (err as Error).message;
      if (this._state === 'leader') this.lose(`renewal failed: ${(err as Error).message}`);
    }
  }

  private async write(value: LeaseValue, expected: number): Promise<number> {
    const ack = await this.js.publish(this.subject, enc.encode(JSON.stringify(value)), {
      expect: { lastSubjectSequence: expected }, timeout: Math.max(100, Math.floor(this.ttl / 3)),
    });
    return ack.seq;
  }

  private async tryAcquire(): Promise<void> {
    const value: LeaseValue = { node: this.opts.nodeId, instance: this.instance, since: Date.now() };
    const sentAt = Date.now();
    try {
      this.revision = await this.write(value, 0);
    } catch (err) {
      if (apiCode(err) !== WRONG_LAST_SEQUENCE) throw err;
      // Held, or released by a graceful stop.
      const entry = await this.jsm.streams.getMessage(this.streamName, { last_by_subj: this.subject });
      if (!entry) return; // expired in between: the next attempt creates it
      const held = JSON.parse(dec.decode(entry.data)) as LeaseValue;
      this.holder = held;
      this.lastError = undefined;
      if (!held.released) return;
      this.revision = await this.write(value, entry.seq);
    }
    this.since = value.since;
    this.holder = value;
    this.lastError = undefined;
    this.confirmed(sentAt);
    this._state = 'leader';
    this.opts.logger?.info({ node: this.opts.nodeId, bucket: this.bucket, key: this.key, ttlMs: this.ttl }, 'processing lease acquired: this node processes the log');
    this.opts.onAcquired?.();
  }

  private async renew(): Promise<void> {
    const sentAt = Date.now();
    const rev = await this.write({ node: this.opts.nodeId, instance: this.instance, since: this.since }, this.revision);
    if (this._state !== 'leader') return; // lost while the renewal was on its way (watchdog, disconnect)
    this.revision = rev;
    this.confirmed(sentAt);
  }

  /** The server stored our write at or after `sentAt`, so the key lives at least until sentAt + ttl. */
  private confirmed(sentAt: number): void {
    this.validUntil = sentAt + this.ttl - Math.floor(this.ttl / 4);
    // Wall-clock steps could move this; the renewal timeout (ttl/3) bounds a hanging renewal anyway.
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this._state === 'leader') this.lose('no renewal confirmed in time');
    }, Math.max(0, this.validUntil - Date.now()));
  }

  private lose(reason: string): void {
    if (this._state !== 'leader') return;
    this._state = 'standby';
    this.holder = undefined;
    clearTimeout(this.watchdog);
    this.opts.logger?.warn({ node: this.opts.nodeId, reason }, 'processing lease lost: this node stops processing');
    this.opts.onLost?.(reason);
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.connected = false;
          this.lose('lease connection lost');
        } else if (s.type === 'reconnect') {
          this.connected = true;
        }
      }
    })().catch(() => undefined);
    void nc.closed().then(() => { this.connected = false; this.lose('lease connection closed'); });
  }

  /** Test hook: the connection dies without a graceful release (as when the process is killed). */
  async abandonForTest(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.nc?.close().catch(() => undefined);
  }
}

export interface Processing {
  status(): { ok: boolean; detail?: string };
  stop(): Promise<void>;
  /** The lease, in cluster mode. */
  lease?: ProcessLease;
}

interface PipelineLike {
  start(): void;
  stop(): Promise<void>;
  status(): { ok: boolean; detail?: string };
}

/**
 * Runs `pipeline` on this node: at once with the embedded log; with a nats:// log only while
 * this node holds the processing lease. Start and stop never overlap (a stop is awaited before
 * the next start), so one process never runs two loops of the same group. After each stop the
 * log's `release(group)` hands what this node read and did not commit back to the server at
 * once (and makes its next read check the consumer): without it, after a lease bounce A→B→A
 * the records B had in hand came back to A only after the consumer's ack_wait (60 s).
 */
/** This node's name in the cluster: cluster.nodeId, else the host name and the process id (the lease, MQTT sessions and /readyz show it). */
export function clusterNodeId(config: Pick<Config, 'cluster'>): string {
  return config.cluster.nodeId ?? `${hostname()}-${process.pid}`;
}

export async function startProcessing(config: Readonly<Config>, pipeline: PipelineLike, logger?: Logger, log?: Pick<Log, 'release'>, group = 'process'): Promise<Processing> {
  if (!/^nats:\/\//.test(config.log.backend)) {
    pipeline.start();
    return { status: () => pipeline.status(), stop: () => pipeline.stop() };
  }
  let chain: Promise<void> = Promise.resolve();
  let want = false;
  const sync = () => {
    chain = chain.then(async () => {
      if (want) pipeline.start();
      else {
        await pipeline.stop();
        await log?.release?.(group);
      }
    }).catch((err) => logger?.error({ err }, 'processing start/stop failed'));
  };
  const lease = new ProcessLease({
    servers: config.log.backend.split(','), nodeId: clusterNodeId(config),
    ttlMs: config.cluster.leaseTtlMs, replicas: config.log.replicas, logger,
    onAcquired: () => { want = true; sync(); },
    onLost: () => { want = false; sync(); },
  });
  await lease.open();
  return {
    lease,
    status: () => {
      if (lease.state !== 'leader') return { ok: true, detail: lease.describe() };
      const p = pipeline.status();
      return { ok: p.ok, detail: `${lease.describe()}; ${p.detail ?? ''}` };
    },
    async stop() {
      const stopped = async () => { want = false; sync(); await chain; };
      await lease.close(stopped);
      await stopped();
    },
  };
}
