/**
 * @module Retained messages per tenant, kept across restarts in <dataDir>/mqtt/retained.jsonl.
 * [MQTT-3.3.1-5] a retained PUBLISH replaces the topic's retained message; [MQTT-3.3.1-6]
 * an empty retained payload removes it and is not stored.
 */
import { join } from 'node:path';
import { Journal } from './journal.js';
import { messageFromJson, messageToJson, type RoutedMessage } from './message.js';
import { topicMatches } from './topics.js';

interface RetainedRecord { n: string; k: string; m?: ReturnType<typeof messageToJson> }

export class RetainedStore {
  private readonly byTenant = new Map<string, Map<string, RoutedMessage>>();
  private readonly journal: Journal;

  constructor(dir: string) {
    this.journal = new Journal(join(dir, 'retained.jsonl'));
  }

  async open(): Promise<void> {
    for (const rec of (await this.journal.read()) as RetainedRecord[]) {
      if (rec.m) this.tenant(rec.n).set(rec.k, messageFromJson(rec.m));
      else this.byTenant.get(rec.n)?.delete(rec.k);
    }
    await this.journal.open(this.snapshot());
  }

  private snapshot(): RetainedRecord[] {
    const now = Date.now();
    const out: RetainedRecord[] = [];
    for (const [n, topics] of this.byTenant) {
      for (const [k, m] of topics) {
        if (m.expiresAt !== undefined && m.expiresAt <= now) topics.delete(k);
        else out.push({ n, k, m: messageToJson(m) });
      }
    }
    return out;
  }

  /** Rewrites the file when it grew well past the retained set (called periodically). */
  compact(): Promise<void> {
    return this.journal.maybeCompact(() => this.snapshot());
  }

  private tenant(n: string): Map<string, RoutedMessage> {
    let t = this.byTenant.get(n);
    if (!t) this.byTenant.set(n, (t = new Map()));
    return t;
  }

  /** Stores (or with an empty payload, clears) the retained message of a topic. */
  set(tenant: string, msg: RoutedMessage): void {
    if (msg.payload.length === 0) {
      if (this.byTenant.get(tenant)?.delete(msg.topic)) this.journal.append({ n: tenant, k: msg.topic });
      return;
    }
    const kept: RoutedMessage = { ...msg, origin: undefined };
    this.tenant(tenant).set(msg.topic, kept);
    this.journal.append({ n: tenant, k: msg.topic, m: messageToJson(kept) });
  }

  /** Retained messages whose topic matches `filter` (expired ones are dropped). */
  match(tenant: string, filter: string, now = Date.now()): RoutedMessage[] {
    const topics = this.byTenant.get(tenant);
    if (!topics) return [];
    const out: RoutedMessage[] = [];
    const exact = !filter.includes('+') && !filter.includes('#');
    if (exact) {
      const m = topics.get(filter);
      if (m) out.push(m);
    } else {
      for (const m of topics.values()) if (topicMatches(filter, m.topic)) out.push(m);
    }
    return out.filter((m) => {
      if (m.expiresAt === undefined || m.expiresAt > now) return true;
      this.set(tenant, { ...m, payload: Buffer.alloc(0) });
      return false;
    });
  }

  count(): number {
    let n = 0;
    for (const t of this.byTenant.values()) n += t.size;
    return n;
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}
