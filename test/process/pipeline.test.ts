/**
 * Processing over the real WAL and the real embedded store, behind a store wrapper that fails
 * on command: transient failures are retried and store each message once; a message the store
 * refuses for its content becomes a dead letter and never stops the others.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFileLog } from '../../src/log/wal/index.js';
import { createEmbeddedStore } from '../../src/stores/embedded/index.js';
import { Pipeline } from '../../src/process/pipeline.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createLogger } from '../../src/core/logger.js';
import { FluxgateError } from '../../src/core/errors.js';
import type { Store, WriteBatch } from '../../src/stores/store.js';
import type { Envelope } from '../../src/core/envelope.js';
import { tempDir, waitFor } from '../helpers/wait.js';

/** Fails the next `transient` writes with STORE_UNAVAILABLE, and refuses any batch holding the value "poison". */
function faultyStore(inner: Store, faults: { transient: number }): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'writeBatch') {
        return async (batch: WriteBatch) => {
          if (faults.transient > 0) { faults.transient--; throw new FluxgateError('STORE_UNAVAILABLE', 'injected: store down'); }
          if (batch.points.some((p) => p.value === 'poison')) throw new FluxgateError('BAD_REQUEST', 'injected: value "poison" is not storable');
          return target.writeBatch(batch);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const env = (i: number, value: unknown): Envelope => ({
  tenant: 'default', project: 'p', device: 'd1', kind: 'telemetry', topic: 'devices/d1/telemetry', protocol: 'http',
  receiveTime: 1_700_000_000_000 + i, messageId: `m-${i}`, payload: Buffer.from(JSON.stringify({ ts: 1_700_000_000_000 + i, v: value })),
});

it('pipeline - retries a failing store, dead-letters what it refuses, stores the rest exactly once', async () => {
  const { dir, cleanup } = await tempDir('fluxgate-pipeline-');
  const metrics = new Metrics({ defaultMetrics: false });
  const log = createFileLog({ dir: join(dir, 'log'), segmentBytes: 1 << 20, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e6, metrics });
  const inner = createEmbeddedStore({ dir: join(dir, 'store') });
  const faults = { transient: 3 };
  const store = faultyStore(inner, faults);
  await log.open();
  await inner.open();
  const pipeline = new Pipeline({ log, store, metrics, logger: createLogger('silent'), batchSize: 100, readWaitMs: 20 });
  try {
    const batch = Array.from({ length: 40 }, (_, i) => env(i, i === 17 || i === 31 ? 'poison' : i));
    await log.append(batch);
    pipeline.start();
    await waitFor(() => log.pressure().lagRecords === 0, { what: 'everything processed', timeoutMs: 20_000 });
    assert.equal(faults.transient, 0, 'the transient failures were hit and retried');
    const stored = await inner.range({ tenant: 'default', device: 'd1', key: 'v', from: 0, to: 2e12, limit: 1000 });
    assert.deepEqual(stored.items.map((p) => p.value), Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 17 && i !== 31));
    const letters = await inner.deadLetters('default', 100);
    assert.deepEqual(letters.items.map((d) => d.messageId).sort(), ['m-17', 'm-31']);
    assert.match(letters.items[0].reason, /store refused the message: injected: value "poison"/);
    const text = await metrics.registry.metrics();
    assert.match(text, /fluxgate_dead_letters_total\{tenant="default",reason="store_refused"\} 2/);
    assert.equal(pipeline.status().ok, true);
  } finally {
    await pipeline.stop();
    await log.close();
    await inner.close();
    await cleanup();
  }
});
