/**
 * @module The cluster log behind the Log contract: one JetStream stream, message-id
 * de-duplication, one durable pull consumer per group. `append` resolves only when JetStream
 * acknowledged every envelope of the batch (PubAck: stored, on a quorum of replicas for R3).
 * While the connection is down appends fail at once with LOG_UNAVAILABLE and pressure() says
 * overLimit; the client reconnects by itself forever, and appends succeed again when it has.
 */
import { OneAtATime } from '../one-at-a-time.js';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Envelope } from '../../core/envelope.js';
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Log, LogBatch, LogPressure } from '../log.js';
import { encodeEnvelope, msgIdOf, subjectOf } from './codec.js';
import { GroupReader } from './group.js';
import { LagMonitor } from './lag.js';
import { BatchPublisher } from './publisher.js';
import { purgeCommitted } from './retention.js';
import { ensureStream } from './stream.js';

export interface JetStreamLogOptions {
  /** NATS server URL(s), e.g. `nats://n1:4222`; more than one for a cluster. */
  servers: string | string[];
  /** Stream name; default `FLUXGATE`. */
  stream?: string;
  /** Subjects are `<subjectPrefix>.<slot>.<tenant>.<lane>.<device>`; default the stream name in lower case + `.msg`. */
  subjectPrefix?: string;
  /** Stream replicas; default 1, 3 in production (needs a JetStream cluster of at least 3 servers). */
  replicas?: number;
  /** `pressure().overLimit` once the slowest group is this many records behind. */
  maxLagRecords: number;
  /** Committed records older than this are purged by enforceRetention(); 0: no age limit. */
  retentionHours: number;
  /** Committed records are purged oldest first while the stream is larger; 0: no size limit. */
  retentionBytes: number;
  /** JetStream de-duplication window for `Nats-Msg-Id`; default 120000 (2 min). */
  duplicateWindowMs?: number;
  /** An append not acknowledged within this time rejects with LOG_UNAVAILABLE; default 5000. */
  appendTimeoutMs?: number;
  /** Connecting in open(), and each JetStream API request and commit; default 5000. */
  requestTimeoutMs?: number;
  /** Records read and not committed for this long are delivered again (at least once); default 60000. */
  ackWaitMs?: number;
  /** At most this many records of a group delivered and not committed; default 20000. */
  maxAckPending?: number;
  /** The cached consumer lag is refreshed at most this often; default 250. */
  lagRefreshMs?: number;
  metrics?: Metrics;
  logger?: Logger;
}

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

const CONSUMER_PREFIX = 'fg_';

export class JetStreamLog implements Log {
  private state: State = 'new';
  private nc?: NatsConnection;
  private publisher!: BatchPublisher;
  private jsm!: JetStreamManager;
  private lag!: LagMonitor;
  private connected = false;
  private readonly stream: string;
  private readonly prefix: string;
  private readonly groups = new Map<string, GroupReader>();
  /** One read at a time per group, so successive reads hand out successive records. */
  private readonly reads = new OneAtATime();
  private readonly inflight = new Set<Promise<unknown>>();
  private pendingBytes = 0;
  /** One retention pass at a time; a call during a pass waits for it and then runs its own. */
  private readonly retention = new OneAtATime();
  private closing?: Promise<void>;

  constructor(private readonly opts: JetStreamLogOptions) {
    this.stream = opts.stream ?? 'FLUXGATE';
    this.prefix = opts.subjectPrefix ?? `${this.stream.toLowerCase()}.msg`;
  }

  private get requestTimeoutMs(): number { return this.opts.requestTimeoutMs ?? 5000; }

  async open(): Promise<void> {
    if (this.state !== 'new') throw new Error(`the JetStream log ${this.stream} is already ${this.state}`);
    if (!/^[A-Za-z0-9_-]+$/.test(this.stream)) throw new FluxgateError('CONFIG_INVALID', `log stream name ${JSON.stringify(this.stream)} may hold only letters, digits, _ and -`);
    this.state = 'opening';
    const { logger } = this.opts;
    try {
      this.nc = await connect({
        servers: this.opts.servers, name: `fluxgate-log-${this.stream}`, timeout: this.requestTimeoutMs,
        // Reconnect forever; a dead peer is noticed within about 15 s even without a TCP reset.
        maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100, pingInterval: 5000, maxPingOut: 3,
        // Async traces build Error objects for every request; nothing here needs their stacks.
        noAsyncTraces: true,
      });
      this.connected = true;
      this.watchConnection(this.nc);
      this.jsm = await jetstreamManager(this.nc, { timeout: this.requestTimeoutMs });
      this.publisher = new BatchPublisher(this.nc, this.stream);
      const result = await ensureStream(this.jsm, {
        name: this.stream, subjectPrefix: this.prefix, replicas: this.opts.replicas ?? 1, duplicateWindowMs: this.opts.duplicateWindowMs ?? 120_000,
      });
      this.lag = new LagMonitor(this.jsm, this.stream, CONSUMER_PREFIX, this.opts.lagRefreshMs ?? 250, () => this.connected, this.opts.metrics, logger);
      this.lag.start();
      this.state = 'open';
      logger?.info({ stream: this.stream, subjects: `${this.prefix}.>`, replicas: this.opts.replicas ?? 1, server: this.nc.getServer(), stream_config: result }, 'log opened on JetStream');
    } catch (err) {
      this.state = 'closed';
      await this.nc?.close().catch(() => undefined);
      throw new FluxgateError('LOG_UNAVAILABLE', `the JetStream log ${this.stream} at ${String(this.opts.servers)} cannot be opened: ${(err as Error).message}`, { cause: err });
    }
  }

  async append(batch: Envelope[]): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closing and takes no appends');
    if (this.state !== 'open') throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    if (batch.length === 0) return;
    if (!this.connected) throw new FluxgateError('LOG_UNAVAILABLE', `JetStream at ${String(this.opts.servers)} is unreachable; reconnecting`);
    const started = performance.now();
    let bytes = 0;
    const items = batch.map((e) => {
      const data = encodeEnvelope(e);
      bytes += data.length;
      return { subject: subjectOf(this.prefix, e), data, msgId: msgIdOf(e) };
    });
    this.pendingBytes += bytes;
    // All of the batch in flight at once; one connection keeps their order in the stream.
    const acks = this.publisher.publishAll(items, this.opts.appendTimeoutMs ?? 5000);
    this.inflight.add(acks);
    try {
      await acks;
    } catch (err) {
      throw new FluxgateError('LOG_UNAVAILABLE', `JetStream did not acknowledge the append: ${(err as Error).message}`, { cause: err });
    } finally {
      this.inflight.delete(acks);
      this.pendingBytes -= bytes;
      this.opts.metrics?.logAppendSeconds.observe((performance.now() - started) / 1000);
      this.lag.kick();
    }
  }

  read(group: string, max: number, waitMs: number): Promise<LogBatch> {
    return this.reads.run(group, () => this.readNow(group, max, waitMs));
  }

  async commit(group: string, batch: LogBatch): Promise<void> {
    if (this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closed');
    if (this.state !== 'open' && this.state !== 'closing') throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    // Records this process never handed out (or already committed) need nothing.
    const reader = this.groups.get(group);
    if (!reader || batch.records.length === 0) return;
    try {
      await reader.commit(batch.records);
    } catch (err) {
      throw new FluxgateError('LOG_UNAVAILABLE', `JetStream did not confirm the commit of group ${group}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.lag.kick();
    }
  }

  /** Processing of `group` stops on this node: what it holds uncommitted goes back to the server at once (group.ts release()). */
  release(group: string): Promise<void> {
    const reader = this.groups.get(group);
    if (!reader || this.state !== 'open') return Promise.resolve();
    // No flush: while NATS is unreachable it would wait for the reconnect, and the naks are a
    // courtesy (a lost one means that record waits for ack_wait or for the next reader's check).
    return this.reads.run(group, async () => reader.release());
  }

  enforceRetention(now: number = Date.now()): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    return this.retention.run('retention', () => this.retain(now));
  }

  pressure(): LogPressure {
    if (this.state !== 'open') return { lagRecords: 0, pendingBytes: 0, overLimit: false };
    this.lag.kick();
    const lagRecords = this.lag.lagRecords;
    const overLimit = !this.connected || !this.lag.healthy || lagRecords >= this.opts.maxLagRecords;
    return { lagRecords, pendingBytes: this.pendingBytes, overLimit, unavailable: !this.connected };
  }

  close(): Promise<void> {
    if (this.state === 'new') { this.state = 'closed'; return Promise.resolve(); }
    if (this.state === 'closed') return Promise.resolve();
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    this.state = 'closing';
    for (const g of this.groups.values()) g.cancelWaits();
    // Appends already sent still get their answer (ack or timeout) before the connection goes.
    await Promise.allSettled([...this.inflight, this.reads.idle(), this.retention.idle()]);
    this.lag?.stop();
    this.publisher?.close();
    const nc = this.nc!;
    const drained = nc.drain().catch(() => undefined);
    const timer = new Promise<void>((r) => setTimeout(r, this.requestTimeoutMs).unref());
    await Promise.race([drained, timer]);
    if (!nc.isClosed()) await nc.close().catch(() => undefined);
    this.state = 'closed';
    this.opts.logger?.info({ stream: this.stream }, 'log closed');
  }

  private async readNow(group: string, max: number, waitMs: number): Promise<LogBatch> {
    if (this.state === 'closing' || this.state === 'closed') throw new FluxgateError('SHUTTING_DOWN', 'the log is closing');
    if (this.state !== 'open') throw new FluxgateError('LOG_UNAVAILABLE', 'the log is not open');
    if (!this.connected) throw new FluxgateError('LOG_UNAVAILABLE', `JetStream at ${String(this.opts.servers)} is unreachable; reconnecting`);
    let reader = this.groups.get(group);
    if (!reader) {
      reader = new GroupReader(this.nc!, this.jsm, this.stream, group, {
        ackWaitMs: this.opts.ackWaitMs ?? 60_000, maxAckPending: this.opts.maxAckPending ?? 20_000, requestTimeoutMs: this.requestTimeoutMs,
      }, this.opts.logger);
      this.groups.set(group, reader);
    }
    try {
      return { records: await reader.read(max, waitMs) };
    } catch (err) {
      if (isFluxgateError(err)) throw err;
      throw new FluxgateError('LOG_UNAVAILABLE', `reading group ${group} from JetStream failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private async retain(now: number): Promise<void> {
    if (this.state !== 'open') return;
    const { retentionHours, retentionBytes, logger } = this.opts;
    try {
      const purged = await purgeCommitted(this.jsm, { stream: this.stream, consumerPrefix: CONSUMER_PREFIX, retentionHours, retentionBytes }, now);
      if (purged > 0) logger?.info({ stream: this.stream, purged }, 'log retention purged committed records');
    } catch (err) {
      throw new FluxgateError('LOG_UNAVAILABLE', `JetStream retention of ${this.stream} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private watchConnection(nc: NatsConnection): void {
    const { logger } = this.opts;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.connected = false;
          logger?.warn({ stream: this.stream, server: s.server }, 'log lost its JetStream connection; appends refused until it is back');
        } else if (s.type === 'reconnect') {
          this.connected = true;
          logger?.info({ stream: this.stream, server: s.server }, 'log reconnected to JetStream');
          for (const g of this.groups.values()) g.markSuspect();
          this.lag?.kick();
        }
      }
    })().catch(() => undefined);
    void nc.closed().then(() => { this.connected = false; });
  }
}
