/**
 * @module Subscriptions of one tenant as a topic trie: `+` and `#` wildcards [MQTT-4.7.1],
 * `$`-topics not matched by a leading wildcard [MQTT-4.7.2-1], and `$share/{group}/…`
 * shared subscriptions where each message goes to one member of the group [MQTT-4.8.2].
 */
import type { QoS } from 'mqtt-packet';
import type { ParsedFilter } from './topics.js';

/** Subscription options as SUBSCRIBE gave them (v5 §3.8.3.1) and the subscription identifier. */
export interface SubOptions { qos: QoS; nl: boolean; rap: boolean; rh: number; id?: number }

interface SharedGroup { members: Map<string, SubOptions>; cursor: number }

class TrieNode {
  readonly children = new Map<string, TrieNode>();
  subs?: Map<string, SubOptions>;
  shared?: Map<string, SharedGroup>;

  empty(): boolean {
    return this.children.size === 0 && !this.subs?.size && !this.shared?.size;
  }
}

/** Called for every matching subscription: session key and its options. */
export type MatchVisitor = (key: string, opts: SubOptions) => void;

export class SubscriptionTree {
  private readonly root = new TrieNode();
  private size = 0;

  get count(): number {
    return this.size;
  }

  /** Adds or replaces a subscription; returns true when it did not exist (for Retain Handling 1). */
  add(key: string, f: ParsedFilter, opts: SubOptions): boolean {
    let node = this.root;
    for (const level of f.filter.split('/')) {
      let next = node.children.get(level);
      if (!next) node.children.set(level, (next = new TrieNode()));
      node = next;
    }
    let members: Map<string, SubOptions>;
    if (f.group !== undefined) {
      node.shared ??= new Map();
      let g = node.shared.get(f.group);
      if (!g) node.shared.set(f.group, (g = { members: new Map(), cursor: 0 }));
      members = g.members;
    } else {
      members = node.subs ??= new Map();
    }
    const isNew = !members.has(key);
    members.set(key, opts);
    if (isNew) this.size++;
    return isNew;
  }

  remove(key: string, f: ParsedFilter): boolean {
    const path: TrieNode[] = [this.root];
    const levels = f.filter.split('/');
    for (const level of levels) {
      const next = path[path.length - 1].children.get(level);
      if (!next) return false;
      path.push(next);
    }
    const node = path[path.length - 1];
    let removed: boolean;
    if (f.group !== undefined) {
      const g = node.shared?.get(f.group);
      removed = g?.members.delete(key) ?? false;
      if (g && g.members.size === 0) node.shared!.delete(f.group);
    } else {
      removed = node.subs?.delete(key) ?? false;
    }
    if (removed) this.size--;
    for (let i = path.length - 1; i > 0 && path[i].empty(); i--) path[i - 1].children.delete(levels[i - 1]);
    return removed;
  }

  /**
   * Visits every subscription matching `topic`; each shared group yields one member,
   * chosen round-robin among those `preferred` accepts (online sessions), else any member.
   */
  match(topic: string, visit: MatchVisitor, preferred: (key: string) => boolean): void {
    const levels = topic.split('/');
    this.walk(this.root, levels, 0, topic.startsWith('$'), visit, preferred);
  }

  private walk(node: TrieNode, levels: string[], i: number, dollar: boolean, visit: MatchVisitor, preferred: (key: string) => boolean): void {
    if (i === levels.length) {
      this.visitNode(node, visit, preferred);
      // `a/#` matches `a` too [MQTT-4.7.1-2].
      const hash = node.children.get('#');
      if (hash) this.visitNode(hash, visit, preferred);
      return;
    }
    if (!(i === 0 && dollar)) {
      const hash = node.children.get('#');
      if (hash) this.visitNode(hash, visit, preferred);
      const plus = node.children.get('+');
      if (plus) this.walk(plus, levels, i + 1, dollar, visit, preferred);
    }
    const exact = node.children.get(levels[i]);
    if (exact) this.walk(exact, levels, i + 1, dollar, visit, preferred);
  }

  private visitNode(node: TrieNode, visit: MatchVisitor, preferred: (key: string) => boolean): void {
    if (node.subs) for (const [key, opts] of node.subs) visit(key, opts);
    if (node.shared) {
      for (const g of node.shared.values()) {
        const keys = [...g.members.keys()];
        let pick: string | undefined;
        for (let n = 0; n < keys.length && pick === undefined; n++) {
          const k = keys[(g.cursor + n) % keys.length];
          if (preferred(k)) pick = k;
        }
        pick ??= keys[g.cursor % keys.length];
        g.cursor = (keys.indexOf(pick) + 1) % keys.length;
        visit(pick, g.members.get(pick)!);
      }
    }
  }
}
