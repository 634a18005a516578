/**
 * @module The redelivery journal of one bridge in a cluster (log.backend nats://…), kept in
 * JetStream so that it outlives the node running the bridge: only the processing-lease holder
 * runs bridges, and when it dies the next holder takes the external session over. The external
 * broker then redelivers what the dead node had logged but not acknowledged; the next holder
 * loads this journal before it subscribes and gives each such redelivery its first copy's
 * message id and receive time (matching rule: ./bridge.ts), so nothing is stored twice. A file
 * on the dead node's disk (./journal.ts, the embedded node's journal) could not do that.
 *
 * Layout: one bucket for every bridge, laid out like a NATS KV bucket (as the processing lease
 * is) — stream `KV_fluxgate_bridges`, one message per subject `$KV.fluxgate_bridges.<session>.<shard>`
 * (<session>: hash of bridge name, broker URL and client id, so a bridge pointed elsewhere
 * starts empty; <shard>: packet id >> 6, so a key holds the entries of 64 consecutive packet
 * ids), value `{"<packet id>": [payload hash, message id, receive time], …}`, so
 * `nats kv get fluxgate_bridges <session>.<shard>` shows them. Why shards and not one key per
 * packet id: brokers hand out packet ids in sequence, so a batch of 300 messages touches 5 or
 * 6 shards — 6 puts instead of 300 (one put per message cost the bridge about a third of its
 * throughput, docs/benchmarks.md). A shard is written whole from the journal's record of what
 * was persisted, so the latest entry of each packet id is what it holds. Written with plain
 * JetStream publishes (@nats-io/kv is not a dependency), with `log.replicas` replicas.
 *
 * Durability and order: `persist` resolves once JetStream acknowledged every put of the batch,
 * which it does after storing it (on a quorum of replicas with R3) — the same guarantee the
 * JetStream log gives an append. The bridge awaits it before the log append, and acknowledges
 * to the external broker only after the append: journal durable → log durable → PUBACK/PUBREC.
 * Puts are grouped: while one group is being written, every batch that arrives waits and goes
 * out in the next group (one put per shard touched), all puts of a group in flight at once;
 * groups are written one after another, so a shard's later content is never overtaken by an
 * earlier one.
 *
 * Size: the stream keeps one message per subject (max_msgs_per_subject 1), so a bridge has at
 * most 1,024 shards of 64 entries (one per packet id, ≈ 80 bytes each: ≤ 5.5 MB) whatever it
 * has carried: an entry is replaced when the broker reuses its packet id. Entries are NOT removed when we acknowledge:
 * our PUBACK may be lost with the connection (or the node) and the broker then redelivers the
 * message, which the entry must still recognise; the broker reuses the packet id only after
 * it has our acknowledgement, and that reuse overwrites the entry. Deleting the bridge purges
 * its subjects.
 *
 * Not fenced by the lease: writes carry no lease token. A holder that loses the lease without
 * dying stops its bridges within a second (BridgeSource checks `active()` every second, and
 * the lease's local deadline stops it before the key can expire), and a successor loads the
 * journal only after acquiring the expired key; a holder stalled for longer than that while
 * its journal write is in flight could still write an entry the successor did not load.
 */
import { createHash } from 'node:crypto';
import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { JournalMemory, type Journal, type JournalEntry } from './journal.js';

export const JOURNAL_BUCKET = 'fluxgate_bridges';
const STREAM = `KV_${JOURNAL_BUCKET}`;
/** Packet ids per key: 2^SHARD_BITS. */
const SHARD_BITS = 6;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The journal's key prefix of one bridge session (bridge name, broker URL, client id). */
export function journalSession(bridge: string, url: string, clientId: string): string {
  return createHash('sha256').update(`${bridge}\u0000${url}\u0000${clientId}`).digest('hex').slice(0, 20);
}

interface Waiter { resolve: () => void; reject: (err: Error) => void }

export interface JetStreamJournalOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** journalSession(...) of the bridge. */
  session: string;
  /** Replicas of the bucket's stream when this node creates it (log.replicas). */
  replicas: number;
  /** How long one put may wait for JetStream's acknowledgement, ms; default 5000. */
  timeoutMs?: number;
}

export class JetStreamJournal extends JournalMemory implements Journal {
  /** What is (or is being) persisted, per packet id: the shards are written from it. */
  private readonly written = new Map<number, JournalEntry>();
  /** Shards changed since the group being written. */
  private dirty = new Set<number>();
  private waiters: Waiter[] = [];
  private writing = false;
  private closed = false;
  /** Resolves when no group is being written. */
  private drained: Promise<void> = Promise.resolve();
  private settle?: () => void;

  constructor(private readonly o: JetStreamJournalOptions) { super(); }

  private subject(shard: number | '>'): string {
    return `$KV.${JOURNAL_BUCKET}.${this.o.session}.${shard}`;
  }

  /** Creates the bucket when missing, then loads the bridge's entries (each the last written for its packet id). */
  async open(): Promise<void> {
    await this.ensure();
    const { jsm, js } = this.o;
    const info = await jsm.consumers.add(STREAM, {
      filter_subject: this.subject('>'), deliver_policy: DeliverPolicy.LastPerSubject, ack_policy: AckPolicy.None,
      inactive_threshold: nanos(30_000), mem_storage: true,
    });
    try {
      let left = info.num_pending;
      const consumer = await js.consumers.get(STREAM, info.name);
      while (left > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(left, 1000), expires: 5000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          left = m.info.pending;
          const shard = Number(m.subject.slice(m.subject.lastIndexOf('.') + 1));
          let value: Record<string, unknown>;
          try { value = JSON.parse(dec.decode(m.data)); } catch { continue; }
          if (!Number.isInteger(shard) || typeof value !== 'object' || value === null) continue;
          for (const [key, e] of Object.entries(value)) {
            const packetId = Number(key);
            if (!Number.isInteger(packetId) || packetId >> SHARD_BITS !== shard || !Array.isArray(e)) continue;
            const [hash, messageId, receiveTime] = e as unknown[];
            if (typeof hash !== 'string' || typeof messageId !== 'string' || typeof receiveTime !== 'number') continue;
            const entry = { hash, messageId, receiveTime };
            this.written.set(packetId, entry);
            this.loaded(packetId, entry);
          }
        }
        if (got === 0) throw new Error(`reading the bridge journal from JetStream stream ${STREAM} stalled with ${left} entries left`);
      }
    } finally {
      await jsm.consumers.delete(STREAM, info.name).catch(() => undefined);
    }
  }

  private async ensure(): Promise<void> {
    const { jsm } = this.o;
    if (await jsm.streams.info(STREAM).then(() => true, () => false)) return;
    try {
      await jsm.streams.add({
        name: STREAM, subjects: [`$KV.${JOURNAL_BUCKET}.>`], retention: RetentionPolicy.Limits, storage: StorageType.File,
        discard: DiscardPolicy.Old, max_msgs_per_subject: 1, num_replicas: this.o.replicas, allow_rollup_hdrs: true, allow_direct: true,
      });
    } catch (err) {
      if (!/already in use|exists/i.test(String((err as Error)?.message))) throw err;
    }
  }

  /** Resolves once every entry of the batch is stored by JetStream (see the module comment). */
  persist(batch: Array<{ packetId: number } & JournalEntry>): Promise<void> {
    if (batch.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the bridge journal is closed'));
    for (const e of batch) {
      this.written.set(e.packetId, { hash: e.hash, messageId: e.messageId, receiveTime: e.receiveTime });
      this.dirty.add(e.packetId >> SHARD_BITS);
    }
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.writing) void this.pump();
    return done;
  }

  private async pump(): Promise<void> {
    this.writing = true;
    this.drained = new Promise<void>((r) => { this.settle = r; });
    while (this.dirty.size > 0) {
      const shards = this.dirty;
      const waiters = this.waiters;
      this.dirty = new Set();
      this.waiters = [];
      try {
        await Promise.all([...shards].map((shard) => this.o.js.publish(this.subject(shard), enc.encode(this.shardValue(shard)), { timeout: this.o.timeoutMs ?? 5000 })));
        for (const w of waiters) w.resolve();
      } catch (err) {
        const e = new Error(`the bridge journal could not be written to JetStream (${(err as Error).message})`);
        for (const w of waiters) w.reject(e);
      }
    }
    this.writing = false;
    this.settle?.();
  }

  /** The shard's entries as persisted (every packet id of the shard with an entry). */
  private shardValue(shard: number): string {
    const out: Record<number, [string, string, number]> = {};
    for (let p = shard << SHARD_BITS, end = (shard + 1) << SHARD_BITS; p < end; p++) {
      const e = this.written.get(p);
      if (e) out[p] = [e.hash, e.messageId, e.receiveTime];
    }
    return JSON.stringify(out);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.drained;
  }

  /** Closes and deletes the bridge's entries (the bridge was deleted). */
  async remove(): Promise<void> {
    await this.close();
    await this.o.jsm.streams.purge(STREAM, { filter: this.subject('>') });
  }
}
