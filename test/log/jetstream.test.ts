/**
 * @module The JetStream log runs the Log conformance suite against a real nats-server (one per
 * test file, on a free port, a stream per test), plus its own tests: de-duplication, the
 * server going away and coming back, retention, odd group names, several nodes on one stream.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createJetStreamLog, encodeToken, slotOf, SLOTS } from '../../src/log/jetstream/index.js';
import { decodeEnvelope, encodeEnvelope, subjectOf } from '../../src/log/jetstream/codec.js';
import { consumerNameOf } from '../../src/log/jetstream/group.js';
import { runLogSuite, readRecords, testEnvelope, assertSameEnvelope } from '../conformance/log.suite.js';
import { NATS_SERVER_BIN, startNatsServer, type NatsHandle } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';
import { consumerInfo, deleteStream, jetStreamHarness, streamState, uniqueStream, type JetStreamHarness } from './jetstream-harness.js';

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `m-${from + i}`);

if (!NATS_SERVER_BIN) {
  it('jetstream log', { skip: 'nats-server is not installed (apt-get install nats-server)' }, () => undefined);
} else {
  let nats: NatsHandle;
  before(async () => { nats = await startNatsServer(); });
  after(async () => { await nats?.cleanup(); });

  runLogSuite({ name: 'jetstream', create: ({ maxLagRecords }) => jetStreamHarness(nats.url, { maxLagRecords }) });

  async function withLog(over: Parameters<typeof jetStreamHarness>[1], fn: (h: JetStreamHarness) => Promise<void>): Promise<void> {
    const h = await jetStreamHarness(nats.url, over);
    try {
      await fn(h);
    } finally {
      await h.cleanup();
    }
  }

  describe('jetstream - encoding', () => {
    it('jetstream - envelopes round-trip through the binary body, with and without device time', () => {
      for (const n of [0, 1, 2, 3, 5, 30]) {
        const e = testEnvelope(n, { topic: 'a/ü/✓', messageId: `id ${n} . * >` });
        assertSameEnvelope(decodeEnvelope(encodeEnvelope(e)), e);
      }
    });

    it('jetstream - subject tokens carry any tenant and device, and differ when they differ', () => {
      const odd = ['', '.', '*', '>', 'a.b', 'a b', '=', '=2E', 'déviçe-✓', 'x'.repeat(64), 'plain-id_1'];
      const tokens = odd.map(encodeToken);
      assert.equal(new Set(tokens).size, odd.length);
      for (const t of tokens) assert.match(t, /^[A-Za-z0-9_=-]+$/);
      const subject = subjectOf('fluxgate.msg', testEnvelope(1, { tenant: 'a.b', device: '*>' }));
      assert.equal(subject.split('.').length, 6, subject);
      assert.ok(slotOf('t1', 'dev-1') < SLOTS);
      assert.equal(slotOf('t1', 'dev-1'), slotOf('t1', 'dev-1'));
    });
  });

  describe('jetstream - de-duplication', () => {
    it('jetstream - a retried append with the same message ids is logged once', () => withLog({}, async ({ log }) => {
      const batch = [testEnvelope(1), testEnvelope(2)];
      await log.append(batch);
      await log.append(batch); // the retry of a device whose acknowledgement was lost
      await log.append([testEnvelope(2), testEnvelope(3)]);
      const got = await readRecords(log, 'g', 3);
      assert.deepEqual(got.map((r) => r.envelope.messageId), ['m-1', 'm-2', 'm-3']);
      assert.equal((await log.read('g', 10, 200)).records.length, 0, 'no duplicate follows');
    }));

    it('jetstream - the same message id from another device or tenant is a different message', () => withLog({}, async ({ log }) => {
      await log.append([testEnvelope(1), testEnvelope(1, { device: 'other' }), testEnvelope(1, { tenant: 't2' })]);
      const got = await readRecords(log, 'g', 3);
      assert.deepEqual(got.map((r) => `${r.envelope.tenant}/${r.envelope.device}`), ['t1/dev-1', 't1/other', 't2/dev-1']);
    }));
  });

  describe('jetstream - groups', () => {
    it('jetstream - group names are data: dots, spaces, __proto__ and the empty name commit and resume', () => withLog({}, async (h) => {
      await h.log.append(Array.from({ length: 6 }, (_, i) => testEnvelope(i)));
      const groups = ['__proto__', 'a.b', 'with space', '', 'a>b*'];
      for (const [i, g] of groups.entries()) await h.log.commit(g, { records: await readRecords(h.log, g, i + 1) });
      const log = await h.reopen();
      for (const [i, g] of groups.entries()) {
        assert.deepEqual((await readRecords(log, g, 5 - i)).map((r) => r.envelope.messageId), ids(5 - i, i + 1), `group ${JSON.stringify(g)}`);
      }
    }));

    it('jetstream - when commit resolves the server has recorded every ack of the batch', () => withLog({}, async (h) => {
      for (let round = 0; round < 5; round++) {
        const from = round * 2000;
        await h.log.append(Array.from({ length: 2000 }, (_, i) => testEnvelope(from + i)));
        const got = await readRecords(h.log, 'g', 2000, 2000);
        await h.log.commit('g', { records: got });
        const info = await consumerInfo(nats.url, h.opts.stream!, consumerNameOf('g'));
        assert.equal(info.num_ack_pending, 0, `round ${round}`);
        assert.equal(BigInt(info.ack_floor.stream_seq), got[got.length - 1]!.offset);
      }
    }));

    it('jetstream - a changed ackWaitMs or maxAckPending reaches an existing group on its next start', () => withLog({ ackWaitMs: 60_000 }, async (h) => {
      await h.log.append([testEnvelope(1), testEnvelope(2)]);
      await h.log.commit('g', { records: await readRecords(h.log, 'g', 1) });
      h.opts.ackWaitMs = 30_000;
      h.opts.maxAckPending = 500;
      const log = await h.reopen();
      assert.deepEqual((await readRecords(log, 'g', 1)).map((r) => r.envelope.messageId), ['m-2']);
      const info = await consumerInfo(nats.url, h.opts.stream!, consumerNameOf('g'));
      assert.equal(info.config.ack_wait, 30_000 * 1e6);
      assert.equal(info.config.max_ack_pending, 500);
    }));

    it('jetstream - a message that is not a Fluxgate envelope is skipped and never holds a group back', () => withLog({}, async (h) => {
      await h.log.append([testEnvelope(1)]);
      const nc = await connect({ servers: nats.url });
      try {
        await jetstream(nc).publish(`${h.opts.stream!.toLowerCase()}.msg.0.t1.event.dev-x`, 'not an envelope');
      } finally {
        await nc.close();
      }
      await h.log.append([testEnvelope(2)]);
      const got = await readRecords(h.log, 'g', 2);
      assert.deepEqual(got.map((r) => r.envelope.messageId), ['m-1', 'm-2']);
      await h.log.commit('g', { records: got });
      const log = await h.reopen();
      assert.equal((await log.read('g', 10, 200)).records.length, 0);
    }));

    it('jetstream - before any group exists every record counts as lag, as in the WAL', () => withLog({ maxLagRecords: 5 }, async (h) => {
      await h.log.append(Array.from({ length: 5 }, (_, i) => testEnvelope(i)));
      await waitFor(() => h.log.pressure().lagRecords === 5, { what: 'lag 5 with no group' });
      assert.equal(h.log.pressure().overLimit, true);
      assert.equal(h.log.pressure().unavailable, false, 'behind is not unavailable');
      await h.log.commit('g', { records: await readRecords(h.log, 'g', 5) });
      await waitFor(() => h.log.pressure().lagRecords === 0, { what: 'lag 0 once the group committed' });
      assert.equal(h.log.pressure().overLimit, false);
    }));

    it('jetstream - appends in flight when close is called are acknowledged; reopen keeps them', () => withLog({}, async (h) => {
      const appends = Array.from({ length: 50 }, (_, i) => h.log.append([testEnvelope(i)]));
      const closed = h.log.close();
      await Promise.all(appends);
      await closed;
      const log = await h.reopen();
      assert.deepEqual((await readRecords(log, 'g', 50)).map((r) => r.envelope.messageId), ids(50));
    }));

    it('jetstream - two nodes open the same stream at once and share it', () => withLog({}, async (h) => {
      const stream = uniqueStream();
      const opts = { ...h.opts, stream };
      const a = createJetStreamLog(opts);
      const b = createJetStreamLog(opts);
      try {
        await Promise.all([a.open(), b.open()]);
        await a.append([testEnvelope(1)]);
        await b.append([testEnvelope(2)]);
        await a.append([testEnvelope(3)]);
        assert.deepEqual((await readRecords(b, 'g', 3)).map((r) => r.envelope.messageId), ['m-1', 'm-2', 'm-3']);
      } finally {
        await Promise.all([a.close(), b.close()]);
        await deleteStream(nats.url, stream);
      }
    }));
  });

  describe('jetstream - retention', () => {
    it('jetstream - retention by age purges committed records only', () => withLog({ retentionHours: 1 }, async (h) => {
      await h.log.append(Array.from({ length: 40 }, (_, i) => testEnvelope(i)));
      await h.log.commit('g', { records: await readRecords(h.log, 'g', 25) });
      await h.log.commit('slow', { records: await readRecords(h.log, 'slow', 10) });
      await h.log.enforceRetention(Date.now()); // nothing is an hour old yet
      assert.equal((await streamState(nats.url, h.opts.stream!)).first_seq, 1);
      await h.log.enforceRetention(Date.now() + 2 * 3600_000);
      const state = await streamState(nats.url, h.opts.stream!);
      assert.equal(state.first_seq, 11, 'everything the slowest group committed, nothing more');
      assert.equal(state.messages, 30);
      // Both groups go on where they were; a new group starts at the oldest record left.
      assert.deepEqual((await readRecords(h.log, 'slow', 30)).map((r) => r.envelope.messageId), ids(30, 10));
      assert.deepEqual((await readRecords(h.log, 'g', 15)).map((r) => r.envelope.messageId), ids(15, 25));
      assert.deepEqual((await readRecords(h.log, 'new', 30)).map((r) => r.envelope.messageId), ids(30, 10));
    }));

    it('jetstream - retention by size purges committed records oldest first', () => withLog({ retentionHours: 0, retentionBytes: 4000 }, async (h) => {
      const sent = Array.from({ length: 100 }, (_, i) => testEnvelope(i, { payload: new Uint8Array(100).fill(i) }));
      await h.log.append(sent);
      await h.log.commit('g', { records: await readRecords(h.log, 'g', 100) });
      await h.log.enforceRetention();
      const state = await streamState(nats.url, h.opts.stream!);
      assert.ok(state.bytes <= 4000 && state.messages > 10, `${state.messages} records, ${state.bytes} bytes left`);
      const left = await readRecords(h.log, 'new', state.messages);
      left.forEach((r, i) => assertSameEnvelope(r.envelope, sent[100 - state.messages + i]!));
    }));

    it('jetstream - with no group nothing is purged', () => withLog({ retentionHours: 1, retentionBytes: 100 }, async (h) => {
      await h.log.append(Array.from({ length: 10 }, (_, i) => testEnvelope(i)));
      await h.log.enforceRetention(Date.now() + 10 * 3600_000);
      assert.equal((await streamState(nats.url, h.opts.stream!)).messages, 10);
    }));
  });

  describe('jetstream - server unavailable', () => {
    it('jetstream - server stopped: appends reject with LOG_UNAVAILABLE quickly and overLimit is true; restarted: appends succeed by themselves', async () => {
      const own = await startNatsServer();
      const stream = uniqueStream();
      const log = createJetStreamLog({ servers: own.url, stream, maxLagRecords: 1000, retentionHours: 0, retentionBytes: 0, appendTimeoutMs: 2000 });
      try {
        await log.open();
        await log.append([testEnvelope(1)]);
        assert.equal(log.pressure().overLimit, false);
        await own.server.kill();
        await waitFor(() => log.pressure().overLimit, { what: 'overLimit after the server died' });
        const started = Date.now();
        await assert.rejects(log.append([testEnvelope(2)]), (err: { code?: string }) => err.code === 'LOG_UNAVAILABLE');
        assert.ok(Date.now() - started < 3000, `rejected after ${Date.now() - started} ms`);
        assert.equal(log.pressure().overLimit, true);
        assert.equal(log.pressure().unavailable, true);
        await own.server.start();
        // A source retries the same message until the log takes it; de-duplication keeps it single.
        await waitFor(async () => { await log.append([testEnvelope(2)]); return true; }, { timeoutMs: 15_000, what: 'an append after the restart' });
        await log.append([testEnvelope(3)]);
        await waitFor(() => !log.pressure().overLimit, { what: 'overLimit cleared' });
        assert.equal(log.pressure().unavailable, false);
        const got = await readRecords(log, 'g', 3);
        assert.deepEqual(got.map((r) => r.envelope.messageId), ['m-1', 'm-2', 'm-3']);
        assert.equal((await log.read('g', 10, 100)).records.length, 0);
      } finally {
        await log.close();
        await own.cleanup();
      }
    });

    it('jetstream - an append no stream answers (stream deleted) rejects with LOG_UNAVAILABLE without waiting for the timeout', () => withLog({ appendTimeoutMs: 20_000 }, async (h) => {
      await h.log.append([testEnvelope(1)]);
      await deleteStream(nats.url, h.opts.stream!);
      const started = Date.now();
      await assert.rejects(h.log.append([testEnvelope(2), testEnvelope(3)]), (err: { code?: string; message: string }) => err.code === 'LOG_UNAVAILABLE' && /503|no responders/.test(err.message));
      assert.ok(Date.now() - started < 5000, `rejected after ${Date.now() - started} ms`);
    }));

    it('jetstream - a read waiting while the server restarts neither hangs nor loses records; the group resumes by itself', async () => {
      const own = await startNatsServer();
      const log = createJetStreamLog({ servers: own.url, stream: uniqueStream(), maxLagRecords: 1000, retentionHours: 0, retentionBytes: 0, requestTimeoutMs: 1000 });
      try {
        await log.open();
        await log.append([testEnvelope(1)]);
        const first = await readRecords(log, 'g', 1);
        await log.commit('g', { records: first });
        const waiting = log.read('g', 10, 1500).catch((err: { code?: string }) => err);
        await own.server.kill();
        await own.server.start();
        const ended = await waiting;
        assert.ok(!(ended instanceof Error) || (ended as { code?: string }).code === 'LOG_UNAVAILABLE', String(ended));
        await waitFor(async () => { await log.append([testEnvelope(2), testEnvelope(3)]); return true; }, { timeoutMs: 15_000, what: 'an append after the restart' });
        const got: string[] = [];
        await waitFor(async () => {
          try {
            got.push(...(await log.read('g', 10, 200)).records.map((r) => r.envelope.messageId));
          } catch { /* reconnecting: the processing loop retries the same way */ }
          return got.includes('m-3');
        }, { timeoutMs: 15_000, what: 'the records appended after the restart' });
        // nats-server writes a consumer's acks to disk shortly after confirming them: killed right
        // after a commit, it may deliver the last committed record again (at least once).
        assert.deepEqual(got.filter((id) => id !== 'm-1'), ['m-2', 'm-3']);
        assert.ok(got.filter((id) => id === 'm-1').length <= 1);
      } finally {
        await log.close();
        await own.cleanup();
      }
    });

    it('jetstream - open fails with LOG_UNAVAILABLE when no server answers', async () => {
      const own = await startNatsServer();
      const url = own.url;
      await own.cleanup();
      const log = createJetStreamLog({ servers: url, maxLagRecords: 10, retentionHours: 0, retentionBytes: 0, requestTimeoutMs: 1000 });
      await assert.rejects(log.open(), (err: { code?: string }) => err.code === 'LOG_UNAVAILABLE');
    });
  });
}
