/**
 * @module The cluster's redelivery journal (src/sources/bridge/journal-jetstream.ts) on its own,
 * against a private nats-server: what one instance persisted, a second one (another node taking
 * the bridge over) loads as entries of a previous run; batches persisted while another is in
 * flight are written in order (the later entry of a packet id wins); each shard of 64 packet
 * ids is kept once in the stream (bounded); another bridge session sees nothing of it;
 * remove() purges it. With three replicas on a 3-server NATS cluster, the journal keeps what
 * was persisted when the stream's leader server is killed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamJournal, journalSession } from '../../src/sources/bridge/journal-jetstream.js';
import { messageHash } from '../../src/sources/bridge/journal.js';
import { startNatsCluster, startNatsServer, NATS_SERVER_BIN } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';

describe('bridge redelivery journal in JetStream', { skip: NATS_SERVER_BIN ? false : 'nats-server is not installed', timeout: 60_000 }, () => {
  let nats: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.cleanup();
  });

  const journal = async (session: string) => new JetStreamJournal({ js: jetstream(nc), jsm: await jetstreamManager(nc), session, replicas: 1 });

  it('another instance loads what was persisted; later entries win; bounded per packet id; remove purges', async () => {
    const session = journalSession('b1', 'mqtt://h:1883', 'c1');
    const a = await journal(session);
    await a.open();
    assert.equal(a.get(1), undefined);
    const e = (p: number, n: number) => ({ packetId: p, hash: messageHash('t', Buffer.from(`m${n}`)), messageId: `id-${n}`, receiveTime: 1000 + n });
    // Three batches at once: the second and third wait for the first and go out together.
    await Promise.all([a.persist([e(1, 1), e(2, 2)]), a.persist([e(1, 3)]), a.persist([e(3, 4), e(1, 5)])]);
    for (let n = 0; n < 20; n++) await a.persist([e(7, 100 + n)]);
    await a.persist([e(70, 70), e(65535, 65535)]);
    a.assign(9, e(9, 9));
    a.acked(9, 'id-9');
    assert.equal(a.get(9)?.acked, true);
    await a.close();
    await assert.rejects(a.persist([e(4, 4)]), /closed/);

    const b = await journal(session);
    await b.open();
    assert.deepEqual(b.get(1), { hash: e(1, 5).hash, messageId: 'id-5', receiveTime: 1005, previousRun: true, acked: false });
    assert.equal(b.get(2)?.messageId, 'id-2');
    assert.equal(b.get(3)?.messageId, 'id-4');
    assert.equal(b.get(7)?.messageId, 'id-119');
    assert.equal(b.get(70)?.messageId, 'id-70');
    assert.equal(b.get(65535)?.receiveTime, 1000 + 65535);
    assert.equal(b.get(9), undefined, 'assigned but never persisted');
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('KV_fluxgate_bridges');
    assert.equal(info.state.messages, 3, 'one message per shard of 64 packet ids (0, 1 and 1023), however often written');
    assert.equal(info.config.max_msgs_per_subject, 1);

    const other = await journal(journalSession('b2', 'mqtt://h:1883', 'c1'));
    await other.open();
    assert.equal(other.get(1), undefined, 'another bridge session has its own entries');
    await other.persist([e(1, 50)]);

    await b.remove();
    const c = await journal(session);
    await c.open();
    assert.equal(c.get(1), undefined, 'removed');
    const d = await journal(journalSession('b2', 'mqtt://h:1883', 'c1'));
    await d.open();
    assert.equal(d.get(1)?.messageId, 'id-50', 'remove() purged only its own session');
  });

  it('R3: what was persisted survives the loss of the stream leader', async () => {
    const cluster = await startNatsCluster(3);
    const conn = await connect({ servers: cluster.urls });
    try {
      // The cluster elects its meta leader first: until then JetStream does not answer.
      const jsm = await waitFor(() => jetstreamManager(conn).catch(() => undefined), { timeoutMs: 30_000, what: 'JetStream on the cluster' });
      const session = journalSession('r3', 'mqtt://h:1883', 'c1');
      const e = (p: number, n: number) => ({ packetId: p, hash: messageHash('t', Buffer.from(`m${n}`)), messageId: `id-${n}`, receiveTime: n });
      const a = new JetStreamJournal({ js: jetstream(conn), jsm, session, replicas: 3 });
      await waitFor(() => a.open().then(() => true, () => false), { timeoutMs: 30_000, what: 'journal opened on the cluster' });
      await a.persist(Array.from({ length: 200 }, (_, i) => e(i + 1, i + 1)));
      const info = await jsm.streams.info('KV_fluxgate_bridges');
      assert.equal(info.config.num_replicas, 3);
      const leader = cluster.servers.find((s) => s.name === info.cluster?.leader);
      assert.ok(leader, `stream leader ${info.cluster?.leader} is one of the servers`);
      await leader.kill();
      // Writes go on once a new leader is elected.
      await waitFor(() => a.persist([e(300, 300)]).then(() => true, () => false), { timeoutMs: 30_000, what: 'a put after the leader was killed' });
      const b = new JetStreamJournal({ js: jetstream(conn), jsm, session, replicas: 3 });
      await waitFor(() => b.open().then(() => true, () => false), { timeoutMs: 30_000, what: 'journal loaded after the leader was killed' });
      for (let p = 1; p <= 200; p++) assert.equal(b.get(p)?.messageId, `id-${p}`, `packet id ${p}`);
      assert.equal(b.get(300)?.messageId, 'id-300');
    } finally {
      await conn.close();
      await cluster.cleanup();
    }
  });
});
