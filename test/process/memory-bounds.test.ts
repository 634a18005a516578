/**
 * @module The in-memory maps of processing hold no more than their settings allow, over a
 * running node: process.dedupMaxIds bounds the de-duplication window and
 * process.suppressMaxKeys the same-value suppression's remembered keys, both read back from
 * /metrics after more messages (and keys) than the bound were stored; every queue gauge the
 * memory table of docs/benchmarks.md reads is exposed.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

async function gauge(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const lines = text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return lines.length ? lines.reduce((n, l) => n + Number(l.split(' ').at(-1)), 0) : undefined;
}

it('process.dedupMaxIds and process.suppressMaxKeys bound the ids and keys processing remembers', async () => {
  const t = await startTestNode({ process: { dedupMaxIds: 5, suppressMaxKeys: 3 } });
  try {
    const token = await t.createDevice('m1', 'sup');
    assert.equal((await t.api('PUT', '/api/v1/projects/sup/settings', { suppressSameValueSeconds: 60 })).status, 200);
    // 12 messages, each with its own id and 2 keys of its own: 12 ids, 24 series.
    for (let i = 0; i < 12; i++) {
      const r = await t.api('POST', '/api/v1/devices/m1/telemetry', { id: `msg-${i}`, ts: 1_700_000_000_000 + i, [`a${i}`]: i, [`b${i}`]: i }, token);
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    await waitFor(async () => (await t.api('GET', '/api/v1/devices/m1/latest')).body.latest?.b11, { what: 'the last message stored' });
    assert.equal(await gauge(t.url, 'fluxgate_dedup_window_ids'), 5);
    assert.equal(await gauge(t.url, 'fluxgate_suppress_keys'), 3);
    // The other queues have their gauges (idle now).
    assert.equal(await gauge(t.url, 'fluxgate_mqtt_ingest_queue_messages'), 0);
    assert.equal(await gauge(t.url, 'fluxgate_store_queue_requests'), 0);
  } finally {
    await t.stop();
  }
});
