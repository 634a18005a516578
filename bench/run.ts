/**
 * The bench runner: `npm run bench` lists the scripts in bench/ with one line each; `npm run
 * bench -- <name> [args…]` runs bench/<name>.ts. Also the helpers the spine benchmarks share
 * (CPU pinning, a node in a child process, devices, an autocannon load with exact latencies).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- shared helpers

/** Pins every thread of a process (default: this one) to the given CPU list, e.g. '1'. No-op without taskset. */
export function pin(cpuList: string, pid: number = process.pid): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** One line describing the machine, for the figures. */
export function machine(): string {
  return `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}, ${new Date().toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // Last resort: whatever is still running or on disk when this process ends is stopped / removed.
  process.on('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { console.error(`\n${sig}: stopping children, removing temp dirs`); process.exit(130); });
}

/** Registers a child process or a temp dir to be killed / removed if this process ends early. */
export function track(child?: ChildProcess, dir?: string): void {
  hookExit();
  if (child) { children.add(child); child.once('exit', () => children.delete(child)); }
  if (dir) dirs.add(dir);
}
export function untrackDir(dir: string): void { dirs.delete(dir); }

/** Sends `signal`, waits for the exit (SIGKILL after `graceMs`). */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export const ADMIN_KEY = 'bench-admin-key-0123456789abcdef';
const CLI = join(BENCH_DIR, '..', 'bin', 'fluxgate.js');

export type Api = (method: string, path: string, body?: unknown, token?: string) => Promise<{ status: number; body: any }>;

/** fetch against a node with the admin key (or `token`); JSON in and out. */
export function apiClient(url: string, defaultToken = ADMIN_KEY): Api {
  return async (method, path, body, token = defaultToken) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    return { status: res.status, body: parsed };
  };
}

export interface NodeChild { child: ChildProcess; pid: number; url: string; output: () => string; api: Api; startedAt: number; readyAt: number }

/**
 * A node (`bin/fluxgate.js start`) in a child process pinned to `cpu` (taskset -c, every
 * thread) on port 0 for HTTP and MQTT, with `dataDir`; `env` adds FLUXGATE_* settings,
 * `nodeArgs` node flags (e.g. --cpu-prof, which NODE_OPTIONS refuses). Resolves once /readyz
 * answers 200 (polled every 10 ms).
 */
export async function startNodeChild(dataDir: string, env: Record<string, string> = {}, opts: { cpu?: string; timeoutMs?: number; nodeArgs?: string[] } = {}): Promise<NodeChild> {
  const { cpu = '0', timeoutMs = 120_000, nodeArgs = [] } = opts;
  const startedAt = performance.now();
  const child = spawn('taskset', ['-c', cpu, process.execPath, ...nodeArgs, CLI, 'start'], {
    env: {
      ...process.env, FLUXGATE_DATA_DIR: dataDir, FLUXGATE_HTTP_HOST: '127.0.0.1', FLUXGATE_HTTP_PORT: '0',
      FLUXGATE_MQTT_HOST: '127.0.0.1', FLUXGATE_MQTT_PORT: '0', FLUXGATE_ADMIN_KEY: ADMIN_KEY, FLUXGATE_LOG_LEVEL: 'warn', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const deadline = Date.now() + timeoutMs;
  let url: string | undefined;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the node exited during start (${child.exitCode ?? child.signalCode}):\n${out}`);
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`the node was not ready within ${timeoutMs} ms:\n${out}`); }
    url ??= /HTTP\s+(http:\/\/\S+)/.exec(out)?.[1];
    if (url && (await fetch(url + '/readyz').then((r) => { void r.arrayBuffer(); return r.status === 200; }, () => false))) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const readyAt = performance.now();
  return { child, pid: child.pid!, url, output: () => out, api: apiClient(url), startedAt, readyAt };
}

/** node flags that write a CPU profile of every thread into `dir` on exit (SIGTERM: the node exits cleanly). */
export const cpuProfArgs = (dir: string | undefined): string[] => (dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []);

/** Creates `count` devices `${prefix}${i}` and returns their tokens in order. */
export async function createDevices(api: Api, prefix: string, count: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await api('POST', '/api/v1/devices', { id: `${prefix}${i}` });
    if (r.status !== 201) throw new Error(`create device ${prefix}${i}: ${r.status} ${JSON.stringify(r.body)}`);
    tokens.push(r.body.token);
  }
  return tokens;
}

/** Percentiles of a list of numbers (sorted in place). */
export function percentiles(values: number[], ps: number[] = [50, 99, 99.9]): Record<string, number> {
  values.sort((a, b) => a - b);
  const out: Record<string, number> = {};
  for (const p of ps) out[`p${p}`] = values.length ? values[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)] : NaN;
  out.max = values.length ? values[values.length - 1] : NaN;
  return out;
}

/**
 * Waits (at most `maxSeconds`) until other processes use under `limit`% of a core over 2 s,
 * so a measurement does not share the machine with someone else's build or test run.
 * Returns the last reading.
 */
export async function waitQuiet(pids: number[] = [], limit = 10, maxSeconds = 120): Promise<number> {
  const deadline = Date.now() + maxSeconds * 1000;
  for (;;) {
    const done = foreignCpu(pids);
    await new Promise((r) => setTimeout(r, 2000));
    const pct = done();
    if (pct < limit || Date.now() > deadline) return pct;
  }
}

export interface Req { method: 'GET' | 'POST'; path: string; headers: Record<string, string>; body?: string }

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  /** The request connection i sends (keep-alive; each connection repeats its own request). */
  request: (connection: number) => Req;
  /** Requests per second over all connections; unset: as fast as the server answers. */
  overallRate?: number;
  /** Server processes (children) whose CPU is not counted as foreign. */
  watchPids?: number[];
  /** Filled in with a function that ends the load early (the result then covers the time run). */
  control?: { stop?: () => void };
}

export interface LoadResult {
  seconds: number;
  requests: number;
  /** 2xx answers. */
  ok: number;
  okPerSec: number;
  statuses: Record<string, number>;
  errors: number;
  /** ms, exact (autocannon's own histogram keeps whole milliseconds). */
  latency: Record<string, number>;
  /** Busy % of each core during the run (from /proc/stat), e.g. [100, 82]. */
  cpuBusy: number[];
  /** CPU used meanwhile by processes other than this one and `watchPids`, % of one core (user+system). */
  foreign: number;
}

const procTicks = (pid: number): number => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15), every thread
  } catch { return 0; }
};
const userSys = (): { used: number; total: number } => {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { used: f[0] + f[1] + f[2], total: f.reduce((a, b) => a + b, 0) };
  } catch { return { used: 0, total: 0 }; }
};

/**
 * Measures how much CPU other processes (not this one, not `pids`) use between now and the call
 * of the returned function; `born` names processes started meanwhile (all their CPU is ours).
 */
export function foreignCpu(pids: number[]): (born?: number[]) => number {
  const all = [process.pid, ...pids];
  const a = userSys();
  const mine = all.reduce((s, p) => s + procTicks(p), 0);
  return (born = []) => {
    const b = userSys();
    const mine2 = [...all, ...born].reduce((s, p) => s + procTicks(p), 0);
    const cores = cpus().length || 1;
    const wallTicks = (b.total - a.total) / cores;
    return wallTicks > 0 ? Math.max(0, Math.round((100 * (b.used - a.used - (mine2 - mine))) / wallTicks)) : 0;
  };
}

/** Per-core [busy, total] jiffies from /proc/stat (empty off Linux). */
export function cpuTimes(): Array<[number, number]> {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l)).map((l) => {
      const f = l.trim().split(/\s+/).slice(1).map(Number);
      const idle = f[3] + (f[4] ?? 0);
      const total = f.reduce((a, b) => a + b, 0);
      return [total - idle, total];
    });
  } catch { return []; }
}
export function busySince(before: Array<[number, number]>): number[] {
  return cpuTimes().map(([b, t], i) => Math.round((100 * (b - (before[i]?.[0] ?? 0))) / Math.max(1, t - (before[i]?.[1] ?? 0))));
}

interface AutocannonResult { duration: number; errors: number; timeouts: number; statusCodeStats: Record<string, { count: number }> }
interface AutocannonInstance extends Promise<AutocannonResult> { on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void; stop(): void }
type Autocannon = (opts: Record<string, unknown>) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** Keep-alive HTTP load with autocannon (in this process: pin this process first). */
export async function load(opts: LoadOptions): Promise<LoadResult> {
  let next = 0;
  const latencies: number[] = [];
  const first = opts.request(0);
  const instance = autocannon({
    url: opts.url, connections: opts.connections, duration: opts.seconds, pipelining: 1, timeout: 30,
    ...(opts.overallRate ? { overallRate: opts.overallRate } : {}),
    method: first.method, headers: first.headers, body: first.body, path: first.path,
    setupClient: (client: { setRequests(r: Req[]): void }) => { client.setRequests([opts.request(next++)]); },
  });
  if (opts.control) opts.control.stop = () => instance.stop();
  instance.on('response', (_c, status, _b, ms) => { if (status >= 200 && status < 300) latencies.push(ms); });
  const cpu0 = cpuTimes();
  const foreign = foreignCpu(opts.watchPids ?? []);
  const r = await instance;
  const cpuBusy = busySince(cpu0);
  const foreignPct = foreign();
  const statuses: Record<string, number> = {};
  let requests = 0;
  for (const [code, { count }] of Object.entries(r.statusCodeStats ?? {})) { statuses[code] = Number(count); requests += Number(count); }
  const ok = Object.entries(statuses).filter(([c]) => c.startsWith('2')).reduce((s, [, n]) => s + n, 0);
  return { seconds: r.duration, requests, ok, okPerSec: ok / r.duration, statuses, errors: r.errors, latency: percentiles(latencies), cpuBusy, foreign: foreignPct };
}

export interface Hist { buckets: Array<[number, number]>; sum: number; count: number }
export type MetricsSnapshot = Map<string, Hist>;

/** The histograms of a node's /metrics (labels summed), to compare two moments with `histDelta`. */
export async function metricsSnapshot(url: string): Promise<MetricsSnapshot> {
  const text = await (await fetch(url + '/metrics')).text();
  const out: MetricsSnapshot = new Map();
  const get = (n: string) => { let h = out.get(n); if (!h) out.set(n, h = { buckets: [], sum: 0, count: 0 }); return h; };
  for (const line of text.split('\n')) {
    const m = /^(\w+)_(bucket|sum|count)(\{[^}]*\})? ([\d.e+-]+|NaN|\+Inf)$/.exec(line);
    if (!m) continue;
    const h = get(m[1]);
    const v = Number(m[4]);
    if (m[2] === 'sum') h.sum += v;
    else if (m[2] === 'count') h.count += v;
    else {
      const le = /le="([^"]+)"/.exec(m[3] ?? '')?.[1];
      const bound = le === '+Inf' ? Infinity : Number(le);
      const b = h.buckets.find(([x]) => x === bound);
      if (b) b[1] += v; else h.buckets.push([bound, v]);
    }
  }
  for (const h of out.values()) h.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

/** One histogram between two snapshots: count, mean and the bucket bound holding the p99. */
export function histDelta(a: MetricsSnapshot, b: MetricsSnapshot, name: string, unit: 's' | '' = 's'): string {
  const hb = b.get(name);
  if (!hb) return `${name}: absent`;
  const ha = a.get(name) ?? { buckets: [], sum: 0, count: 0 };
  const count = hb.count - ha.count;
  if (count <= 0) return `${name}: none`;
  const mean = (hb.sum - ha.sum) / count;
  const cum = hb.buckets.map(([le, c]) => [le, c - (ha.buckets.find(([x]) => x === le)?.[1] ?? 0)] as const);
  const p99 = cum.find(([, c]) => c >= 0.99 * count)?.[0] ?? Infinity;
  const show = (v: number) => (unit === 's' ? `${fmt(v * 1000, 2)} ms` : fmt(v, 1));
  return `${name}: ${fmt(count)} observed, mean ${show(mean)}, p99 ≤ ${p99 === Infinity ? '+Inf' : show(p99)}`;
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

// ---------------------------------------------------------------- the runner

/** The first sentence of a file's first doc comment. */
function describe(file: string): string {
  const m = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(file, 'utf8'));
  if (!m) return '(no description)';
  const text = m[1].split('\n').map((l) => l.replace(/^\s*\*\s?/, '')).join(' ').replace(/@module\s+/, '').replace(/\s+/g, ' ').trim();
  const sentence = /^(.*?\.)(\s|$)/.exec(text)?.[1] ?? text;
  if (sentence.length <= 120) return sentence;
  const cut = sentence.slice(0, 118);
  return cut.slice(0, cut.lastIndexOf(' ')).replace(/[,;:]$/, '') + ' …';
}

function main(argv: string[]): void {
  const scripts = readdirSync(BENCH_DIR).filter((f) => f.endsWith('.ts') && f !== 'run.ts').sort();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    console.log('Benchmarks in bench/ (figures: docs/benchmarks.md):\n');
    const width = Math.max(...scripts.map((s) => s.length - 3));
    for (const s of scripts) console.log(`  ${basename(s, '.ts').padEnd(width)}  ${describe(join(BENCH_DIR, s))}`);
    console.log('\nRun one:  npm run bench -- <name> [args]     e.g. npm run bench -- http-ingest --seconds 10');
    console.log('   (same as node --import tsx bench/<name>.ts [args]; each script documents its arguments at its top)');
    return;
  }
  const file = join(BENCH_DIR, `${basename(name, '.ts')}.ts`);
  if (!existsSync(file) || basename(file) === 'run.ts') {
    console.error(`no benchmark named ${JSON.stringify(name)}; there are: ${scripts.map((s) => basename(s, '.ts')).join(', ')}`);
    process.exit(2);
  }
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...rest], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
