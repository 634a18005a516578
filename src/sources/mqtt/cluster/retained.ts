/**
 * @module Retained messages shared by the cluster's nodes: every retained publish is also
 * written to the key-value bucket `fgmqtt_retained` (one key per tenant and topic; an empty
 * payload writes a tombstone so that its removal travels too), and a node loads the bucket when
 * it starts, before it reads the message stream. Running nodes keep their retained stores in step
 * from the stream itself (cluster/index.ts); the bucket is for a node that was down or is new.
 * A retained message whose origin died between the stream and the bucket write reaches the
 * running nodes but not the bucket (a later start misses it until the topic is published again).
 */
import { createHash } from 'node:crypto';
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { RetainedStore } from '../retained.js';
import { messageFromJson, messageToJson, type RoutedMessage } from '../message.js';
import type { Bucket } from './kv.js';

export interface RetainedEntry { n: string; t: string; m?: ReturnType<typeof messageToJson> }

export function retainedKey(tenant: string, topic: string): string {
  return createHash('sha1').update(`${tenant}\u0000${topic}`).digest('hex');
}

/** Writes (or, for an empty payload, tombstones) the topic's retained message; fire and forget. */
export function saveRetained(bucket: Bucket<RetainedEntry>, tenant: string, msg: RoutedMessage): Promise<number> {
  const entry: RetainedEntry = { n: tenant, t: msg.topic };
  if (msg.payload.length > 0) entry.m = messageToJson({ ...msg, origin: undefined });
  return bucket.put(retainedKey(tenant, msg.topic), entry);
}

/** Applies every entry of the bucket to the node's retained store; returns how many were read. */
export async function loadRetained(js: JetStreamClient, jsm: JetStreamManager, bucket: Bucket<RetainedEntry>, store: RetainedStore): Promise<number> {
  if ((await jsm.streams.info(bucket.stream)).state.messages === 0) return 0;
  const consumer = await js.consumers.get(bucket.stream, { deliver_policy: DeliverPolicy.LastPerSubject });
  const dec = new TextDecoder();
  let n = 0;
  let done = false;
  try {
    while (!done) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        if (m.info.pending === 0) done = true;
        if (m.data.length === 0) continue;
        const e = JSON.parse(dec.decode(m.data)) as RetainedEntry;
        store.set(e.n, e.m ? messageFromJson(e.m) : { topic: e.t, payload: Buffer.alloc(0), qos: 0, retain: true });
        n++;
      }
      if (got === 0) done = true;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return n;
}
