/**
 * @module Persistent sessions on disk: <dataDir>/mqtt/sessions.jsonl. It records each
 * persistent session's subscriptions and expiry, and the QoS 1/2 messages owed to it while
 * it is offline, so a restarted node redelivers them [MQTT-4.1.0-1]. Records: `s` session,
 * `d` deleted, `q` queued message, `c` queue cleared (rewritten at the next disconnect).
 * A crash while a client is online may redeliver (never lose) what it had been sent.
 */
import { join } from 'node:path';
import type { QoS } from 'mqtt-packet';
import { Journal } from './journal.js';
import { messageFromJson, messageToJson } from './message.js';
import { Session, type Outgoing } from './session.js';
import type { SubOptions } from './subscriptions.js';
import type { ClientIdentity } from './topics.js';

type Rec =
  | { s: string; c: string; i: ClientIdentity; e: number; sub: Array<[string, SubOptions]>; at?: number }
  | { d: string }
  | { q: string; m: ReturnType<typeof messageToJson>; qos: QoS; r: boolean; ids?: number[] }
  | { c: string; clear: 1 };

export class SessionStore {
  private readonly journal: Journal;

  constructor(dir: string) {
    this.journal = new Journal(join(dir, 'sessions.jsonl'));
  }

  /** Loads the sessions that have not expired; the journal is compacted to exactly them. */
  async open(now = Date.now()): Promise<Session[]> {
    const byKey = new Map<string, Session>();
    for (const rec of (await this.journal.read()) as Rec[]) {
      if ('s' in rec) {
        let s = byKey.get(rec.s);
        if (!s) byKey.set(rec.s, (s = new Session(rec.s, rec.c, rec.i)));
        s.expirySeconds = rec.e;
        s.disconnectedAt = rec.at;
        s.subscriptions.clear();
        for (const [f, o] of rec.sub) s.subscriptions.set(f, o);
      } else if ('d' in rec) {
        byKey.delete(rec.d);
      } else if ('q' in rec) {
        byKey.get(rec.q)?.queue.push({ msg: messageFromJson(rec.m), qos: rec.qos, retain: rec.r, subIds: rec.ids, packetId: 0, released: false });
      } else if ('clear' in rec) {
        const s = byKey.get(rec.c);
        if (s) s.queue = [];
      }
    }
    const alive: Session[] = [];
    const compacted: Rec[] = [];
    for (const s of byKey.values()) {
      // A session that was online when the node stopped counts as disconnected now.
      s.disconnectedAt ??= now;
      if (s.disconnectedAt + s.expirySeconds * 1000 <= now) continue;
      s.queue = s.queue.filter((o) => o.msg.expiresAt === undefined || o.msg.expiresAt > now);
      s.stored = true;
      alive.push(s);
      compacted.push(this.sessionRecord(s), ...s.queue.map((o) => this.queuedRecord(s, o)));
    }
    await this.journal.open(compacted);
    return alive;
  }

  private sessionRecord(s: Session): Rec {
    return { s: s.key, c: s.clientId, i: s.identity, e: s.expirySeconds, sub: [...s.subscriptions], at: s.conn ? undefined : s.disconnectedAt };
  }

  private queuedRecord(s: Session, o: Outgoing): Rec {
    return { q: s.key, m: messageToJson(o.msg), qos: o.qos, r: o.retain, ids: o.subIds };
  }

  /** Records the session's subscriptions and expiry (on subscribe, unsubscribe, connect). */
  saveSession(s: Session): void {
    s.stored = true;
    this.journal.append(this.sessionRecord(s));
  }

  /** At disconnect: the session record and everything still owed to the client. */
  saveOffline(s: Session): void {
    this.saveSession(s);
    this.journal.append({ c: s.key, clear: 1 });
    for (const o of s.backlog()) this.journal.append(this.queuedRecord(s, o));
  }

  /** A message routed to an offline session. */
  saveQueued(s: Session, o: Outgoing): void {
    this.journal.append(this.queuedRecord(s, o));
  }

  deleteSession(s: Session): void {
    if (!s.stored) return;
    s.stored = false;
    this.journal.append({ d: s.key });
  }

  /** Rewrites the file from the live sessions when it grew well past them (called periodically). */
  compact(sessions: Iterable<Session>): Promise<void> {
    return this.journal.maybeCompact(() => {
      const out: Rec[] = [];
      for (const s of sessions) {
        if (!s.persistent || !s.stored) continue;
        out.push(this.sessionRecord(s));
        out.push(...s.backlog().map((o) => this.queuedRecord(s, o)));
      }
      return out;
    });
  }

  flush(): Promise<void> {
    return this.journal.flush();
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}
