/**
 * @module A processing lease bounce A→B→A on the JetStream log (two JetStreamLog instances on one
 * stream stand for two nodes): records the second reader held uncommitted when processing left
 * it come back to the first one at once — not after the consumer's ack_wait — whether the
 * second released them (graceful handover: `release(group)` naks them) or died without a word
 * (the first reader released earlier, so it checks the consumer before reading again).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Envelope } from '../../src/core/envelope.js';
import { createJetStreamLog } from '../../src/log/jetstream/index.js';
import type { Log } from '../../src/log/log.js';
import { NATS_SERVER_BIN, startNatsServer, type NatsHandle } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';

const skip = NATS_SERVER_BIN ? false : 'nats-server is not installed (apt-get install nats-server)';
let nats: NatsHandle | undefined;
let streams = 0;

before(async () => { if (!skip) nats = await startNatsServer(); });
after(async () => { await nats?.cleanup(); });

const GROUP = 'process';
/** Far longer than any wait below: a record that comes back only after ack_wait fails the test. */
const ACK_WAIT_MS = 60_000;

function envelope(n: number): Envelope {
  return { tenant: 't1', project: 'p1', device: 'dev-1', kind: 'event', topic: 'devices/dev-1/events', protocol: 'http', receiveTime: 1_764_000_000_000 + n, messageId: `m-${n}`, payload: Buffer.from(`{"n":${n}}`) };
}

async function openLogs(): Promise<{ a: Log; b: Log; close(): Promise<void> }> {
  const stream = `BOUNCE${++streams}`;
  const opts = { servers: nats!.url, stream, maxLagRecords: 1_000_000, retentionHours: 0, retentionBytes: 0, ackWaitMs: ACK_WAIT_MS };
  const a = createJetStreamLog(opts);
  const b = createJetStreamLog(opts);
  await a.open();
  await b.open();
  return { a, b, async close() { await a.close(); await b.close(); } };
}

/** Reads until `n` records arrived or `timeoutMs` passed; returns their message ids. */
async function readIds(log: Log, n: number, timeoutMs: number): Promise<string[]> {
  const got: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < n && Date.now() < deadline) {
    const batch = await log.read(GROUP, n - got.length, 200);
    got.push(...batch.records.map((r) => r.envelope.messageId));
  }
  return got;
}

test('bounce A→B→A with a graceful handover: B\'s uncommitted records reach A at once', { skip }, async () => {
  const { a, b, close } = await openLogs();
  try {
    await a.append([1, 2, 3, 4, 5, 6].map(envelope));
    // A processes the first two and commits them, then loses the lease.
    const first = await a.read(GROUP, 2, 1000);
    assert.deepEqual(first.records.map((r) => r.envelope.messageId), ['m-1', 'm-2']);
    await a.commit(GROUP, first);
    await a.release!(GROUP);
    // B takes over, reads the rest, commits nothing and loses the lease again (graceful).
    assert.deepEqual(await readIds(b, 4, 3000), ['m-3', 'm-4', 'm-5', 'm-6']);
    await b.release!(GROUP);
    // A again: the four come back now, in order.
    const started = Date.now();
    assert.deepEqual(await readIds(a, 4, 5000), ['m-3', 'm-4', 'm-5', 'm-6']);
    assert.ok(Date.now() - started < 5000, `came back after ${Date.now() - started} ms`);
  } finally {
    await close();
  }
});

test('bounce A→B→A where B dies without releasing: A checks the consumer and re-reads B\'s records at once', { skip }, async () => {
  const { a, b, close } = await openLogs();
  try {
    await a.append([1, 2, 3, 4].map(envelope));
    const first = await a.read(GROUP, 1, 1000);
    await a.commit(GROUP, first);
    await a.release!(GROUP);
    assert.deepEqual(await readIds(b, 3, 3000), ['m-2', 'm-3', 'm-4']);
    // B "dies": its connection goes, its deliveries stay pending on the server until ack_wait.
    await b.close();
    const started = Date.now();
    const again = await waitFor(async () => {
      const ids = await readIds(a, 3, 1000);
      return ids.length === 3 ? ids : undefined;
    }, { timeoutMs: 5000, what: 'A to read B\'s uncommitted records again' });
    assert.deepEqual(again, ['m-2', 'm-3', 'm-4']);
    assert.ok(Date.now() - started < 5000);
  } finally {
    await close();
  }
});
