/**
 * @module The processing lease (src/cluster/process-lease.ts) against a real nats-server:
 * leases compete and exactly one leads; when the holder's connection dies without a release
 * another leads within about the TTL, and the old holder had stopped before; a graceful close
 * hands over at once; the pipelines behind startProcessing() never run on two nodes at once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ProcessLease, startProcessing } from '../../src/cluster/process-lease.js';
import { loadConfig } from '../../src/config/load.js';
import { NATS_SERVER_BIN, startNatsServer, type NatsHandle } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';

const skip = NATS_SERVER_BIN ? false : 'nats-server is not installed (apt-get install nats-server)';
let nats: NatsHandle | undefined;
let bucketNo = 0;

before(async () => { if (!skip) nats = await startNatsServer(); });
after(async () => { await nats?.cleanup(); });

const TTL = 1500;

interface Seen { lease: ProcessLease; events: Array<{ at: number; what: 'acquired' | 'lost' }> }

function lease(nodeId: string, bucket: string): Seen {
  const events: Seen['events'] = [];
  const l = new ProcessLease({
    servers: nats!.url, nodeId, ttlMs: TTL, bucket,
    onAcquired: () => events.push({ at: Date.now(), what: 'acquired' }),
    onLost: () => events.push({ at: Date.now(), what: 'lost' }),
  });
  return { lease: l, events };
}

test('two leases compete: exactly one leads, the other names it', { skip }, async () => {
  const bucket = `t${++bucketNo}`;
  const a = lease('node-a', bucket);
  const b = lease('node-b', bucket);
  try {
    await Promise.all([a.lease.open(), b.lease.open()]);
    const leaders = [a, b].filter((x) => x.lease.state === 'leader');
    assert.equal(leaders.length, 1, 'one leader right after both opened');
    const [leader, standby] = a.lease.state === 'leader' ? [a, b] : [b, a];
    await waitFor(() => standby.lease.describe().includes(`leader: ${leader === a ? 'node-a' : 'node-b'}`), { timeoutMs: 3000, what: 'standby names the leader' });
    // Across several renewals nothing changes.
    const until = Date.now() + 2 * TTL;
    await waitFor(() => {
      assert.equal(leader.lease.state, 'leader');
      assert.equal(standby.lease.state, 'standby');
      return Date.now() > until;
    }, { timeoutMs: 4 * TTL, intervalMs: 50, what: 'stable leadership over two TTLs' });
    assert.deepEqual(leader.events.map((e) => e.what), ['acquired']);
    assert.deepEqual(standby.events, []);
  } finally {
    await a.lease.close();
    await b.lease.close();
  }
});

test('the leader\'s connection dies: the other leads within the TTL and a bit, after the old one stopped', { skip }, async () => {
  const bucket = `t${++bucketNo}`;
  const a = lease('node-a', bucket);
  const b = lease('node-b', bucket);
  try {
    await a.lease.open();
    assert.equal(a.lease.state, 'leader');
    await b.lease.open();
    assert.equal(b.lease.state, 'standby');
    const died = Date.now();
    await a.lease.abandonForTest();
    await waitFor(() => b.lease.state === 'leader', { timeoutMs: 3 * TTL, what: 'node-b takes over' });
    const tookOver = b.events.find((e) => e.what === 'acquired')!.at;
    const lostAt = a.events.find((e) => e.what === 'lost')?.at;
    assert.ok(lostAt !== undefined && lostAt <= tookOver, 'the old holder stopped before the new one started');
    const took = tookOver - died;
    assert.ok(took <= TTL * 1.25 + 1000, `takeover after ${took} ms (ttl ${TTL} ms)`);
  } finally {
    await a.lease.close();
    await b.lease.close();
  }
});

test('a graceful close releases the lease: the standby takes over well before the TTL', { skip }, async () => {
  const bucket = `t${++bucketNo}`;
  const a = lease('node-a', bucket);
  const b = lease('node-b', bucket);
  try {
    await a.lease.open();
    await b.lease.open();
    assert.equal(a.lease.state, 'leader');
    const closed = Date.now();
    await a.lease.close();
    await waitFor(() => b.lease.state === 'leader', { timeoutMs: 3 * TTL, what: 'node-b takes over' });
    assert.ok(Date.now() - closed < TTL, `released lease taken after ${Date.now() - closed} ms`);
  } finally {
    await a.lease.close();
    await b.lease.close();
  }
});

test('startProcessing: three nodes, never two pipelines running at once, through two failovers', { skip }, async () => {
  const config = loadConfig({ env: {}, overrides: { log: { backend: nats!.url }, cluster: { leaseTtlMs: TTL } } });
  let running = 0;
  let maxRunning = 0;
  let starts = 0;
  const fake = () => {
    let on = false;
    return {
      start() { if (on) return; on = true; running++; starts++; maxRunning = Math.max(maxRunning, running); },
      async stop() { if (!on) return; await new Promise((r) => setImmediate(r)); on = false; running--; },
      status: () => ({ ok: true, detail: '0 records processed' }),
    };
  };
  // Each with its own bucket name would not compete: share the default bucket, reset first.
  const nodes = await Promise.all([0, 1, 2].map(async (i) => startProcessing({ ...config, cluster: { ...config.cluster, nodeId: `n${i}` } }, fake())));
  try {
    assert.equal(running, 1);
    for (let round = 0; round < 2; round++) {
      const leader = nodes.find((n) => n.lease!.state === 'leader')!;
      assert.match(leader.status().detail!, /^leader since/);
      for (const n of nodes) if (n !== leader && n.lease!.state !== 'closed') assert.match(n.status().detail!, /^standby/);
      const before = starts;
      await leader.lease!.abandonForTest();
      await waitFor(() => starts > before && running === 1, { timeoutMs: 3 * TTL, what: `a new leader (round ${round + 1})` });
    }
    assert.equal(maxRunning, 1, 'never two pipelines at once');
  } finally {
    for (const n of nodes) await n.stop();
  }
});
