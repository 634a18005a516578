/**
 * @module A minimal key-value bucket on JetStream for the MQTT cluster state (session owners,
 * node positions). Laid out like a NATS KV bucket — stream `KV_<bucket>`, subject
 * `$KV.<bucket>.<key>`, one message per subject — so `nats kv get` can read it, and written
 * with plain JetStream publishes and expected-sequence headers, as the processing lease does
 * (src/cluster/process-lease.ts; @nats-io/kv is not a dependency). A deleted key holds an
 * empty value.
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';

const enc = new TextEncoder();
/** JetStream's answer when an expected last sequence does not match (someone else wrote the key). */
export const WRONG_LAST_SEQUENCE = 10071;

export function isWrongLastSequence(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number } };
  return e?.api_error?.err_code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(String((err as Error)?.message));
}
const dec = new TextDecoder();

export interface Entry<T> { value: T; seq: number }

export class Bucket<T> {
  constructor(private readonly js: JetStreamClient, private readonly jsm: JetStreamManager, readonly name: string) {}

  get stream(): string { return `KV_${this.name}`; }
  private subject(key: string): string { return `$KV.${this.name}.${key}`; }

  /** Creates the bucket's stream when missing (several nodes at once is fine). */
  async ensure(replicas: number, maxAgeMs = 0): Promise<void> {
    const exists = await this.jsm.streams.info(this.stream).then(() => true, () => false);
    if (exists) return;
    try {
      await this.jsm.streams.add({
        name: this.stream, subjects: [`$KV.${this.name}.>`], retention: RetentionPolicy.Limits, storage: StorageType.File,
        discard: DiscardPolicy.Old, max_msgs_per_subject: 1, num_replicas: replicas, allow_rollup_hdrs: true, allow_direct: true,
        ...(maxAgeMs > 0 ? { max_age: nanos(maxAgeMs) } : {}),
      });
    } catch (err) {
      if (!/already in use|exists/i.test(String((err as Error)?.message))) throw err;
    }
  }

  async get(key: string): Promise<Entry<T> | undefined> {
    const e = await this.lookup(key);
    return e.value === undefined ? undefined : { value: e.value, seq: e.seq };
  }

  /** The key's value (undefined when absent or deleted) and the sequence to expect when writing it next (0: never written). */
  async lookup(key: string): Promise<{ value?: T; seq: number }> {
    const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subject(key) }).catch((err: unknown) => {
      if (/not found/i.test(String((err as Error)?.message)) || (err as { code?: number })?.code === 404) return null;
      throw err;
    });
    if (!m) return { seq: 0 };
    return m.data.length === 0 ? { seq: m.seq } : { value: JSON.parse(dec.decode(m.data)) as T, seq: m.seq };
  }

  /** Writes `value`; with `expectSeq` only if the key's last write is that one (0: only if it never existed). */
  async put(key: string, value: T, expectSeq?: number, timeoutMs = 5000): Promise<number> {
    const ack = await this.js.publish(this.subject(key), enc.encode(JSON.stringify(value)), {
      timeout: timeoutMs, ...(expectSeq !== undefined ? { expect: { lastSubjectSequence: expectSeq } } : {}),
    });
    return ack.seq;
  }

  async delete(key: string, expectSeq?: number): Promise<void> {
    await this.js.publish(this.subject(key), new Uint8Array(0), expectSeq !== undefined ? { expect: { lastSubjectSequence: expectSeq } } : {});
  }
}
