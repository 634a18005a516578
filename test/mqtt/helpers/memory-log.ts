/**
 * @module Fault-injection stand-in for tests only: an in-memory Log that can hold appends (to
 * observe that no PUBACK precedes durability) and report overload on demand. Every other MQTT
 * test runs on the real embedded WAL (src/log/wal/).
 */
import type { Envelope } from '../../../src/core/envelope.js';
import type { Log, LogBatch, LogPressure } from '../../../src/log/log.js';

export class MemoryLog implements Log {
  readonly records: Envelope[] = [];
  appendCalls = 0;
  overLimit = false;
  /** While set, appends wait until `release()` is called. */
  private held: Array<() => void> | undefined;
  private readonly groups = new Map<string, number>();

  async open(): Promise<void> {}

  async append(batch: Envelope[]): Promise<void> {
    this.appendCalls++;
    if (this.held) await new Promise<void>((resolve) => this.held!.push(resolve));
    this.records.push(...batch);
  }

  hold(): void {
    this.held ??= [];
  }

  /** Lets the held appends finish (not Log.release, which hands a consumer group back). */
  releaseHeld(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const w of waiting) w();
  }

  async read(group: string, max: number): Promise<LogBatch> {
    const from = this.groups.get(group) ?? 0;
    return { records: this.records.slice(from, from + max).map((envelope, i) => ({ offset: BigInt(from + i), envelope })) };
  }

  async commit(group: string, batch: LogBatch): Promise<void> {
    const last = batch.records[batch.records.length - 1];
    if (last) this.groups.set(group, Number(last.offset) + 1);
  }

  async enforceRetention(): Promise<void> {}

  pressure(): LogPressure {
    return { lagRecords: 0, pendingBytes: 0, overLimit: this.overLimit };
  }

  async close(): Promise<void> {}
}
