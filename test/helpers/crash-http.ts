/**
 * @module One crash round under HTTP load: several clients post unique messages to a node in
 * a child process, the node is SIGKILLed at a random moment and restarted on the same data
 * directory; then every message that got a 202 must be stored exactly once. Used by the
 * crash test (a few rounds) and bench/crash-http.ts (100 rounds).
 */
import type { ChildProcess } from 'node:child_process';
import { spawnNode, apiClient, ADMIN_KEY } from './node.js';
import { waitFor } from './wait.js';

export interface CrashResult { acked: number; lost: number; duplicated: number; storedUnacked: number }

export interface CrashOptions { dataDir: string; round: number; clients?: number; killAfterMs?: [number, number] }

async function devicesToken(url: string, id: string): Promise<string> {
  const api = apiClient(url, ADMIN_KEY);
  const created = await api('POST', '/api/v1/devices', { id });
  if (created.status === 201) return created.body.token;
  const rotated = await api('POST', `/api/v1/devices/${id}/token`);
  return rotated.body.token;
}

export async function crashRound(opts: CrashOptions): Promise<CrashResult> {
  const clients = opts.clients ?? 8;
  const [minKill, maxKill] = opts.killAfterMs ?? [200, 1200];
  let node: { child: ChildProcess; url: string } = await spawnNode(opts.dataDir);
  const device = `crash-${opts.round}`;
  const token = await devicesToken(node.url, device);
  const acked = new Set<number>();
  let seq = opts.round * 10_000_000;
  let killed = false;
  const client = async () => {
    while (!killed) {
      const n = seq++;
      try {
        const r = await fetch(`${node.url}/api/v1/devices/${device}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `m-${n}`, ts: 1_600_000_000_000 + n, seq: n }) });
        if (r.status === 202) acked.add(n);
        await r.arrayBuffer();
      } catch {
        return; // connection died with the node: that message was not acknowledged
      }
    }
  };
  const load = Array.from({ length: clients }, client);
  await new Promise((r) => setTimeout(r, minKill + Math.random() * (maxKill - minKill))); // the random kill moment, not a synchronisation
  killed = true;
  node.child.kill('SIGKILL');
  await new Promise((r) => node.child.once('exit', r));
  await Promise.all(load);

  node = await spawnNode(opts.dataDir);
  try {
    const api = apiClient(node.url, ADMIN_KEY);
    await waitFor(async () => (await api('GET', '/readyz')).body?.components?.log?.detail?.startsWith('lag 0 '), { timeoutMs: 60_000, what: 'processing caught up' });
    const seen = new Map<number, number>();
    let after: string | undefined;
    const from = 1_600_000_000_000 + opts.round * 10_000_000;
    do {
      const page = await api('GET', `/api/v1/devices/${device}/telemetry?key=seq&from=${from}&to=${from + 10_000_000}&limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      if (page.status !== 200) throw new Error(`history: ${page.status} ${JSON.stringify(page.body)}`);
      for (const p of page.body.items) seen.set(p.value, (seen.get(p.value) ?? 0) + 1);
      after = page.body.next;
    } while (after);
    let lost = 0;
    let duplicated = 0;
    for (const n of acked) if (!seen.has(n)) lost++;
    for (const count of seen.values()) if (count > 1) duplicated++;
    const storedUnacked = [...seen.keys()].filter((n) => !acked.has(n)).length;
    return { acked: acked.size, lost, duplicated, storedUnacked };
  } finally {
    node.child.kill('SIGTERM');
    await new Promise((r) => node.child.once('exit', r));
  }
}
