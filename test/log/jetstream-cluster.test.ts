/**
 * @module The JetStream log on a 3-server NATS cluster with replicas 3: the server leading the
 * stream is killed (SIGKILL) while appenders and a reader run. Every append that resolved is
 * in the log exactly once, in order per device, and the reader gets all of them.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Log, LogRecord } from '../../src/log/log.js';
import { createJetStreamLog } from '../../src/log/jetstream/index.js';
import { consumerNameOf } from '../../src/log/jetstream/group.js';
import { testEnvelope } from '../conformance/log.suite.js';
import { NATS_SERVER_BIN, startNatsCluster, type NatsCluster } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';
import { consumerInfo } from './jetstream-harness.js';

const APPENDERS = 12;
const PER_APPENDER = 150;

if (!NATS_SERVER_BIN) {
  it('jetstream cluster', { skip: 'nats-server is not installed (apt-get install nats-server)' }, () => undefined);
} else {
  let cluster: NatsCluster;
  before(async () => { cluster = await startNatsCluster(3); });
  after(async () => { await cluster?.cleanup(); });

  it('jetstream cluster - R3: the stream leader is killed mid-run and every acknowledged append is read back exactly once, in order per device', async () => {
    const opts = { servers: cluster.urls, stream: 'R3TEST', replicas: 3, maxLagRecords: 1e9, retentionHours: 0, retentionBytes: 0, appendTimeoutMs: 2000, requestTimeoutMs: 2000, ackWaitMs: 5000 };
    // The cluster elects its JetStream meta leader after start; open succeeds once it has.
    const log: Log = await waitFor(async () => {
      const l = createJetStreamLog(opts);
      await l.open();
      return l;
    }, { timeoutMs: 30_000, what: 'the JetStream cluster to create the stream' }).catch((err: Error) => {
      throw new Error(`${err.message}\n${cluster.servers.map((s) => s.output).join('\n----\n')}`);
    });
    const acked = new Set<string>();
    const seen = new Set<string>();
    const deliveries = new Map<string, number>();
    const readerErrors: string[] = [];
    let failures = 0;
    let appendsDone = false;
    try {
      const reader = (async () => {
        // A processor: reads, "processes", commits — across the failover.
        while (!appendsDone || seen.size < acked.size) {
          try {
            const b = await log.read('proc', 200, 200);
            for (const r of b.records) deliveries.set(r.envelope.messageId, (deliveries.get(r.envelope.messageId) ?? 0) + 1);
            await log.commit('proc', b);
            // Counted once committed: a batch whose commit failed comes again and is committed then.
            for (const r of b.records) seen.add(r.envelope.messageId);
          } catch (err) {
            readerErrors.push((err as Error).message);
            await delay(50); // back-off while the cluster elects a new leader, not synchronisation
          }
        }
      })();
      const appenders = Array.from({ length: APPENDERS }, async (_, a) => {
        for (let k = 0; k < PER_APPENDER; k++) {
          const e = testEnvelope(a + k * APPENDERS, { device: `dev-${a}`, messageId: `m-${a}-${k}` });
          // Like a device: retry the same message until the log acknowledges it.
          await waitFor(async () => {
            try {
              await log.append([e]);
              return true;
            } catch (err) {
              failures++;
              assert.equal((err as { code?: string }).code, 'LOG_UNAVAILABLE');
              return false;
            }
          }, { timeoutMs: 30_000, intervalMs: 100, what: `append of ${e.messageId}` });
          acked.add(e.messageId);
        }
      });
      await waitFor(() => acked.size >= (APPENDERS * PER_APPENDER) / 3, { timeoutMs: 30_000, what: 'a third of the appends' });
      const killed = await killStreamLeader(cluster, 'R3TEST');
      const ackedAtKill = acked.size;
      await Promise.all(appenders);
      appendsDone = true;
      await waitFor(() => seen.size >= acked.size, { timeoutMs: 60_000, what: `the reader to commit ${acked.size} records (has ${seen.size})` });
      await reader;
      // Every commit resolved, so the (replicated) consumer holds nothing unacknowledged.
      // (The JetStream API may still be settling after the failover: ask until it answers.)
      const info = await waitFor(() => consumerInfo(cluster.urls, 'R3TEST', consumerNameOf('proc')), { timeoutMs: 30_000, what: 'consumer info' });
      assert.equal(info.num_ack_pending, 0);
      assert.equal(info.num_pending, 0);
      assert.equal(acked.size, APPENDERS * PER_APPENDER);
      assert.ok(ackedAtKill < acked.size, 'appends went on after the kill');
      for (const id of acked) assert.ok(seen.has(id), `${id} was read`);
      // A fresh group reads the whole log: each acknowledged message exactly once, in order per device.
      // (Creating its consumer right after a failover may time out once; a processor retries.)
      const all = await readRetrying(log, 'audit', acked.size);
      assert.equal((await log.read('audit', 100, 300)).records.length, 0, 'nothing beyond the acknowledged appends');
      const ids = all.map((r) => r.envelope.messageId);
      assert.equal(new Set(ids).size, ids.length, 'no message twice');
      const last = new Map<string, number>();
      for (const id of ids) {
        const [, a, k] = id.split('-');
        assert.ok((last.get(a!) ?? -1) < Number(k), `order of device ${a}`);
        last.set(a!, Number(k));
      }
      console.log(`# killed ${killed} after ${ackedAtKill} acknowledged appends; ${failures} append attempts failed and were retried; reader got ${[...deliveries.values()].reduce((n, c) => n + c, 0)} deliveries of ${acked.size} records; reader errors: ${readerErrors.length ? readerErrors.join('; ') : 'none'}`);
    } finally {
      appendsDone = true;
      await log.close();
    }
  });

  it('jetstream cluster - R3 without a quorum: appends reject within the timeout and overLimit is set; with the quorum back they succeed by themselves', async () => {
    for (const s of cluster.servers) if (!s.running) await s.start();
    const opts = { servers: cluster.urls, stream: 'R3QUORUM', replicas: 3, maxLagRecords: 1e9, retentionHours: 0, retentionBytes: 0, appendTimeoutMs: 2000, requestTimeoutMs: 2000 };
    const log: Log = await waitFor(async () => {
      const l = createJetStreamLog(opts);
      await l.open();
      return l;
    }, { timeoutMs: 30_000, what: 'the JetStream cluster to create the stream' });
    try {
      await waitFor(async () => { await log.append([testEnvelope(1)]); return true; }, { timeoutMs: 30_000, what: 'the first append' });
      const [a, b] = cluster.servers;
      await Promise.all([a!.kill(), b!.kill()]);
      await waitFor(() => log.pressure().overLimit, { timeoutMs: 20_000, what: 'overLimit without a quorum' });
      const started = Date.now();
      await assert.rejects(log.append([testEnvelope(2)]), (err: { code?: string }) => err.code === 'LOG_UNAVAILABLE');
      assert.ok(Date.now() - started < 3000, `rejected after ${Date.now() - started} ms`);
      await a!.start();
      // A source retries the same message until the log takes it; de-duplication keeps it single.
      await waitFor(async () => {
        try { await log.append([testEnvelope(2)]); return true; } catch { await delay(100); return false; }
      }, { timeoutMs: 60_000, intervalMs: 0, what: 'an append with the quorum back' });
      await waitFor(() => !log.pressure().overLimit, { timeoutMs: 20_000, what: 'overLimit cleared' });
      const got = await readRetrying(log, 'g', 2);
      assert.deepEqual(got.map((r) => r.envelope.messageId), ['m-1', 'm-2']);
    } finally {
      await log.close();
    }
  });
}

/** Reads `count` records of a group, retrying a read that fails (as the processing pipeline does). */
async function readRetrying(log: Log, group: string, count: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  await waitFor(async () => {
    try {
      out.push(...(await log.read(group, 1000, 500)).records);
    } catch {
      await delay(100);
    }
    return out.length >= count;
  }, { timeoutMs: 30_000, intervalMs: 0, what: `${count} records of ${group} (have ${out.length})` });
  return out;
}

/** Kills the server that leads the stream; returns its name. */
async function killStreamLeader(cluster: NatsCluster, stream: string): Promise<string> {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    const leader = (await jsm.streams.info(stream)).cluster?.leader;
    assert.ok(leader, 'the stream has a leader');
    const server = cluster.servers.find((s) => s.name === leader);
    assert.ok(server, `the leader ${leader} is one of ours`);
    await server.kill();
    return leader;
  } finally {
    await nc.close().catch(() => undefined);
  }
}
