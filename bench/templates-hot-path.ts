/**
 * What a topic template adds per MQTT message on the broker's hot path (src/sources/mqtt/
 * accept.ts): `resolve` (topic → tenant/project/device/kind, cached per caller and topic) and
 * `admitCached` (the device check, cached per tenant and device), for a gateway publishing for
 * `--devices` devices round-robin under the seed-shaped platform template. In memory, no store
 * I/O (every device is known before timing), best of `--repeat` runs of `--messages` calls.
 *
 *   node --import tsx bench/templates-hot-path.ts [--devices 1000] [--messages 2000000] [--repeat 3]
 */
import { parseArgs } from 'node:util';
import type { DeviceRecord } from '../src/stores/store.js';
import { TemplateRegistry, type TemplateRegistryOptions } from '../src/templates/index.js';

const { values } = parseArgs({ options: { devices: { type: 'string', default: '1000' }, messages: { type: 'string', default: '2000000' }, repeat: { type: 'string', default: '3' } } });
const DEVICES = Number(values.devices);
const N = Number(values.messages);
const REPEAT = Number(values.repeat);

const devices = new Map<string, DeviceRecord>();
for (let i = 0; i < DEVICES; i++) devices.set(`d${i}`, { tenant: 'acme', id: `d${i}`, project: 'p', tokenHash: 'h', disabled: false, createdAt: 0 });
const store = { listObjects: async () => [], getDevice: async (_t: string, d: string) => devices.get(d) } as unknown as TemplateRegistryOptions['store'];
const registry = new TemplateRegistry({ store, config: [{ id: 'mtic', pattern: 'mtic/msg/client/realtime/{tenant}/{project}/{device}/#' }] });
await registry.open();
const topics = Array.from({ length: DEVICES }, (_, i) => `mtic/msg/client/realtime/acme/p/d${i}/data`);
const targets = topics.map((t) => registry.resolve(t, { tenant: 'acme' })!);
for (const t of targets) await registry.admitDevice(t);

function time(fn: (i: number) => unknown): number {
  let best = Infinity;
  for (let r = 0; r < REPEAT; r++) {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) fn(i % DEVICES);
    best = Math.min(best, ((performance.now() - t0) * 1e6) / N);
  }
  return Math.round(best);
}

const caller = { tenant: 'acme' };
const resolveNs = time((i) => registry.resolve(topics[i], caller));
const admitNs = time((i) => registry.admitCached(targets[i]));
console.log(JSON.stringify({ devices: DEVICES, messages: N, resolveNsPerMessage: resolveNs, admitCachedNsPerMessage: admitNs }));
registry.close();
