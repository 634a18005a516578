/** @module Test helpers for the JetStream log: a log on a fresh stream of a real server, that can be reopened (a restart). */
import { jetstreamManager, type ConsumerInfo } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Log } from '../../src/log/log.js';
import { createJetStreamLog, type JetStreamLogOptions } from '../../src/log/jetstream/index.js';
import { Metrics } from '../../src/observability/metrics.js';

export interface JetStreamHarness {
  readonly log: Log;
  opts: JetStreamLogOptions;
  metrics: Metrics;
  reopen: () => Promise<Log>;
  cleanup: () => Promise<void>;
}

let streams = 0;

/** A unique stream name for this test process. */
export function uniqueStream(): string {
  return `T${process.pid}_${++streams}`;
}

/** An open JetStream log on a stream of its own; `cleanup` closes it and deletes the stream. */
export async function jetStreamHarness(servers: string | string[], over: Partial<JetStreamLogOptions> = {}): Promise<JetStreamHarness> {
  const metrics = new Metrics({ defaultMetrics: false });
  const opts: JetStreamLogOptions = { servers, stream: uniqueStream(), maxLagRecords: 1000, retentionHours: 72, retentionBytes: 0, metrics, ...over };
  let current = createJetStreamLog(opts);
  await current.open();
  return {
    get log() { return current; },
    opts,
    metrics,
    async reopen() {
      await current.close();
      current = createJetStreamLog(opts);
      await current.open();
      return current;
    },
    async cleanup() {
      try {
        await current.close();
      } finally {
        await deleteStream(servers, opts.stream!);
      }
    },
  };
}

/** Deletes a stream (best effort: the server may be gone already). */
export async function deleteStream(servers: string | string[], stream: string): Promise<void> {
  const nc = await connect({ servers, timeout: 2000 }).catch(() => undefined);
  if (!nc) return;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

/** The stream's state (first and last sequence, messages, bytes), through a connection of its own. */
export async function streamState(servers: string | string[], stream: string): Promise<{ first_seq: number; last_seq: number; messages: number; bytes: number }> {
  const nc = await connect({ servers, timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(stream)).state;
  } finally {
    await nc.close();
  }
}

/** A consumer's info (ack floor, pending counts), through a connection of its own. */
export async function consumerInfo(servers: string | string[], stream: string, consumer: string): Promise<ConsumerInfo> {
  const nc = await connect({ servers, timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc);
    return await jsm.consumers.info(stream, consumer);
  } finally {
    await nc.close();
  }
}
