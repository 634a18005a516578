import { it } from 'node:test';
import assert from 'node:assert/strict';
import { crashRound } from '../helpers/crash-http.js';
import { tempDir } from '../helpers/wait.js';

it('crash - every message that got a 202 is stored exactly once after SIGKILL and restart (5 rounds)', async () => {
  const { dir, cleanup } = await tempDir('fluxgate-crash-');
  try {
    for (let round = 1; round <= 5; round++) {
      const r = await crashRound({ dataDir: dir, round });
      assert.ok(r.acked > 0, `round ${round}: some messages were acknowledged before the kill`);
      assert.equal(r.lost, 0, `round ${round}: ${r.lost} acknowledged messages lost of ${r.acked}`);
      assert.equal(r.duplicated, 0, `round ${round}: ${r.duplicated} messages stored twice`);
    }
  } finally {
    await cleanup();
  }
});

it('lifecycle - SIGTERM stops accepting, drains, flushes and exits 0; the data is there after restart', async () => {
  const { spawnNode, apiClient, ADMIN_KEY } = await import('../helpers/node.js');
  const { waitFor } = await import('../helpers/wait.js');
  const { dir, cleanup } = await tempDir('fluxgate-term-');
  try {
    let node = await spawnNode(dir);
    let api = apiClient(node.url, ADMIN_KEY);
    const token = (await api('POST', '/api/v1/devices', { id: 'term-1' })).body.token;
    const sends = Array.from({ length: 20 }, (_, i) => fetch(`${node.url}/api/v1/devices/term-1/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `t-${i}`, ts: 1_650_000_000_000 + i, i }) }).then((r) => r.status, () => 0));
    const statuses = await Promise.all(sends);
    const exit = new Promise<number | null>((r) => node.child.once('exit', (code) => r(code)));
    node.child.kill('SIGTERM');
    assert.equal(await exit, 0, node.output());
    node = await spawnNode(dir);
    api = apiClient(node.url, ADMIN_KEY);
    try {
      const accepted = statuses.filter((s) => s === 202).length;
      assert.equal(accepted, 20);
      const items = await waitFor(async () => {
        const r = await api('GET', '/api/v1/devices/term-1/telemetry?key=i&from=1650000000000&to=1650000001000');
        return r.body.items?.length === accepted ? r.body.items : undefined;
      }, { what: 'all accepted messages stored' });
      assert.deepEqual(items.map((p: { value: number }) => p.value), Array.from({ length: 20 }, (_, i) => i));
    } finally {
      node.child.kill('SIGTERM');
      await new Promise((r) => node.child.once('exit', r));
    }
  } finally {
    await cleanup();
  }
});
