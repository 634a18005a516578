/**
 * Synthetic fleet for the store benchmarks: 1,000 devices × 3 keys every 30 s, batches in
 * arrival order (time-major, every device reports all keys in one message), optionally with
 * each message's raw archive row. Shared by bench/store-ingest.ts and bench/postgres-ingest.ts
 * so both stores ingest the same data.
 */
import type { RawMessage, TelemetryPoint, WriteBatch } from '../../src/stores/store.js';

const DEVICES = 1000;
const KEYS = ['temperature', 'humidity', 'voltage'];
const STEP_MS = 30_000;
export const FLEET_T0 = Date.UTC(2026, 10, 1);
const deviceNames = Array.from({ length: DEVICES }, (_, d) => `dev-${d}`);
const payload = new TextEncoder().encode(JSON.stringify({ temperature: 21.5, humidity: 40.25, voltage: 3.31, fw: '1.4.2', seq: 123456 }));

/** Yields batches of `batch` points until `target` points were produced. */
export function* fleetBatches(opts: { target: number; batch: number; messages: boolean }): Generator<WriteBatch> {
  let points: TelemetryPoint[] = [];
  let messages: RawMessage[] = [];
  let n = 0;
  for (let step = 0; ; step++) {
    const ts = FLEET_T0 + step * STEP_MS;
    for (let d = 0; d < DEVICES; d++) {
      const messageId = `${d.toString(36)}-${step.toString(36).padStart(6, '0')}-a1b2c3d4`;
      const device = deviceNames[d];
      if (opts.messages) messages.push({ tenant: 'acme', project: 'plant-7', device, topic: `mtic/msg/client/realtime/acme/plant-7/${device}`, kind: 'telemetry', ts, receiveTime: ts + 40, messageId, payload });
      for (let k = 0; k < KEYS.length; k++) {
        points.push({ tenant: 'acme', project: 'plant-7', device, key: KEYS[k], ts, value: 20 + ((d * 7 + step * 13 + k) % 1000) / 10, messageId });
        if (++n >= opts.target) { yield { points, messages, deadLetters: [] }; return; }
        if (points.length === opts.batch) {
          yield { points, messages, deadLetters: [] };
          points = [];
          messages = [];
        }
      }
    }
  }
}

/** The p-quantile of an ascending array. */
export function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}
