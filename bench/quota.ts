/**
 * Quota isolation: tenant A's HTTP ingest throughput alone, then in the same run while tenant B
 * floods the node far over its messagesPerSecond quota (refused with 429). Goal: A within 10%
 * of its solo figure — B's refusals cost little and B's bucket never makes A wait.
 *
 * One node (processing on, as shipped) in a child process pinned to core 0; the load
 * generator (autocannon, this process) on core 1. A sends single messages at a fixed offered
 * rate (--a-rate req/s over --a-connections; 0 = as fast as the node answers), B as fast as it
 * can over --b-connections with its quota set to --b-quota messages/s. Over-rate requests are
 * answered after tenants.refusalDelayMs (a timer): B's closed-loop flood then waits instead of
 * taking the core; --refusal-delay-ms 0 shows the same run without it. Each phase runs --seconds
 * after a warm-up; the phases alternate --rounds times (solo, flood, solo, flood, …) so drift on
 * a shared machine hits both alike; figures are per phase and their medians.
 *
 *   npm run bench -- quota [--seconds 8] [--warmup 2] [--rounds 2] [--a-rate 1000] [--a-connections 20]
 *        [--b-connections 50] [--b-quota 200] [--refusal-delay-ms N]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { apiClient, fmt, load, machine, pin, startNodeChild, stopChild, track, untrackDir, type Api, type LoadResult } from './run.js';

const BODY = JSON.stringify({ temperature: 21.5, humidity: 40.25, on: true });

/** A tenant with `n` devices made in one bulk call; returns their tokens and the tenant's admin API. */
async function tenant(admin: Api, url: string, id: string, n: number, settings: Record<string, number>): Promise<{ api: Api; tokens: string[] }> {
  const made = await admin('POST', '/api/v1/tenants', { id });
  if (made.status !== 201) throw new Error(`create tenant ${id}: ${made.status} ${JSON.stringify(made.body)}`);
  const api = apiClient(url, made.body.key.key);
  if (Object.keys(settings).length) {
    const p = await admin('PATCH', `/api/v1/tenants/${id}`, { settings });
    if (p.status !== 200) throw new Error(`settings of ${id}: ${p.status} ${JSON.stringify(p.body)}`);
  }
  const bulk = await api('POST', '/api/v1/devices/bulk', Array.from({ length: n }, (_, i) => ({ id: `${id}-dev-${i}` })));
  if (bulk.status !== 201) throw new Error(`devices of ${id}: ${bulk.status} ${JSON.stringify(bulk.body).slice(0, 300)}`);
  return { api, tokens: bulk.body.devices.map((d: { token: string }) => d.token) };
}

const ingest = (id: string, tokens: string[]) => (c: number) => ({
  method: 'POST' as const, path: `/api/v1/devices/${id}-dev-${c % tokens.length}/telemetry`,
  headers: { authorization: `Bearer ${tokens[c % tokens.length]}`, 'content-type': 'application/json' }, body: BODY,
});

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    seconds: { type: 'string', default: '8' }, warmup: { type: 'string', default: '2' }, rounds: { type: 'string', default: '2' },
    'a-rate': { type: 'string', default: '1000' }, 'a-connections': { type: 'string', default: '20' },
    'b-connections': { type: 'string', default: '50' }, 'b-quota': { type: 'string', default: '200' }, 'refusal-delay-ms': { type: 'string' },
  } });
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const rounds = Number(values.rounds);
  const aRate = Number(values['a-rate']);
  const aConns = Number(values['a-connections']);
  const bConns = Number(values['b-connections']);
  const bQuota = Number(values['b-quota']);
  const pinned = pin('1');
  console.log(`# Quotas — ${machine()}`);
  console.log(`# node on core 0 (processing on), load on core ${pinned ? '1' : '? (not pinned)'}; A: ${aRate > 0 ? `${fmt(aRate)} req/s offered` : 'as fast as answered'} over ${aConns} connections, single messages;`);
  console.log(`# B: ${bConns} connections as fast as answered, quota ${fmt(bQuota)} msg/s (burst = 1 s); tenants.refusalDelayMs ${values['refusal-delay-ms'] ?? 'default (500)'}; ${warmup} s warm-up + ${seconds} s per phase, ${rounds} rounds\n`);

  const dir = await mkdtemp(join(tmpdir(), 'fluxgate-bench-quota-'));
  track(undefined, dir);
  // --refusal-delay-ms sets tenants.refusalDelayMs (0 answers over-rate requests at once); unset: the node's default.
  const node = await startNodeChild(dir, values['refusal-delay-ms'] !== undefined ? { FLUXGATE_TENANTS_REFUSAL_DELAY_MS: values['refusal-delay-ms'] } : {});
  try {
    const a = await tenant(node.api, node.url, 'tenant-a', aConns, {});
    const b = await tenant(node.api, node.url, 'tenant-b', bConns, { messagesPerSecond: bQuota });
    const runA = (s: number) => load({ url: node.url, connections: aConns, seconds: s, request: ingest('tenant-a', a.tokens), ...(aRate > 0 ? { overallRate: aRate } : {}), watchPids: [node.pid] });
    const runB = (s: number) => load({ url: node.url, connections: bConns, seconds: s, request: ingest('tenant-b', b.tokens), watchPids: [node.pid] });
    await Promise.all([runA(warmup), runB(warmup)]);

    const solo: LoadResult[] = [];
    const flooded: Array<{ a: LoadResult; b: LoadResult }> = [];
    const line = (what: string, r: LoadResult) => `${what.padEnd(22)} ${fmt(r.okPerSec).padStart(8)} ok/s  p50 ${fmt(r.latency.p50 ?? 0, 1).padStart(6)} ms  p99 ${fmt(r.latency.p99 ?? 0, 1).padStart(6)} ms  statuses ${JSON.stringify(r.statuses)}  cores busy ${r.cpuBusy.map((c) => fmt(c)).join('/')}%  other procs ${fmt(r.foreign)}%`;
    for (let round = 1; round <= rounds; round++) {
      const s = await runA(seconds);
      solo.push(s);
      console.log(line(`round ${round} A solo`, s));
      const [fa, fb] = await Promise.all([runA(seconds), runB(seconds)]);
      flooded.push({ a: fa, b: fb });
      console.log(line(`round ${round} A, B flooding`, fa));
      console.log(line(`round ${round} B (flood)`, fb));
    }
    const soloRate = median(solo.map((r) => r.okPerSec));
    const floodRate = median(flooded.map((f) => f.a.okPerSec));
    const bOk = median(flooded.map((f) => f.b.okPerSec));
    const bRefused = median(flooded.map((f) => (f.b.statuses['429'] ?? 0) / f.b.seconds));
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    const refusedTotal = /fluxgate_quota_refused_total\{tenant="tenant-b",quota="rate"\} (\d+)/.exec(metrics)?.[1] ?? '0';
    const aRefused = /fluxgate_quota_refused_total\{tenant="tenant-a"/.test(metrics);
    console.log('');
    console.log(`A solo (median)            ${fmt(soloRate)} msg/s  p99 ${fmt(median(solo.map((r) => r.latency.p99 ?? 0)), 1)} ms`);
    console.log(`A while B floods (median)  ${fmt(floodRate)} msg/s  p99 ${fmt(median(flooded.map((f) => f.a.latency.p99 ?? 0)), 1)} ms`);
    console.log(`B accepted ${fmt(bOk)} msg/s (quota ${fmt(bQuota)}), refused ${fmt(bRefused)} req/s with 429; fluxgate_quota_refused_total{tenant-b,rate} = ${refusedTotal}; tenant-a refused: ${aRefused ? 'YES (unexpected)' : 'never'}`);
    const ratio = floodRate / soloRate;
    console.log(`GOAL A within 10% of solo: ${fmt(ratio * 100, 1)}% — ${ratio >= 0.9 ? 'MET' : 'NOT MET'}`);
  } finally {
    await stopChild(node.child);
    await rm(dir, { recursive: true, force: true });
    untrackDir(dir);
  }
  process.exit(0);
}

await main();
