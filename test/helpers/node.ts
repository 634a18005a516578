/** @module Test helpers: a node in this process on free ports and a temp data dir, or one in a child process (for SIGKILL tests). */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig, type DeepPartial } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { createLogger } from '../../src/core/logger.js';
import type { Store } from '../../src/stores/store.js';
import { tempDir, waitFor } from './wait.js';

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export interface TestNode {
  node: RunningNode;
  url: string;
  dir: string;
  /** fetch against the node with the admin key; JSON in and out. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any; headers: Headers }>;
  /** Creates the device (and its project, if named and missing); returns its token. */
  createDevice(id: string, project?: string): Promise<string>;
  stop(): Promise<void>;
}

export function apiClient(url: string, defaultToken: string) {
  return async (method: string, path: string, body?: unknown, token: string = defaultToken) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON: keep the text */ }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };
}

export async function startTestNode(overrides: DeepPartial<Config> = {}, existingDir?: string, nodeOpts: { wrapStore?: (s: Store) => Store } = {}): Promise<TestNode> {
  const tmp = existingDir ? { dir: existingDir, cleanup: async () => undefined } : await tempDir('fluxgate-node-');
  const config = loadConfig({
    env: {},
    overrides: { dataDir: tmp.dir, adminKey: ADMIN_KEY, logLevel: 'silent', ...overrides, http: { host: '127.0.0.1', port: 0, ...overrides.http }, mqtt: { host: '127.0.0.1', port: 0, ...overrides.mqtt } },
  });
  const node = await startNode(config, { logger: createLogger('silent'), wrapStore: nodeOpts.wrapStore });
  const api = apiClient(node.httpUrl, ADMIN_KEY);
  return {
    node, url: node.httpUrl, dir: tmp.dir, api,
    async createDevice(id, project) {
      // A device belongs to an existing project; 409 means an earlier call made it.
      if (project) {
        const p = await api('POST', '/api/v1/projects', { name: project });
        if (p.status !== 201 && p.status !== 409) throw new Error(`create project ${project}: ${p.status} ${JSON.stringify(p.body)}`);
      }
      const r = await api('POST', '/api/v1/devices', { id, ...(project ? { project } : {}) });
      if (r.status !== 201) throw new Error(`create device ${id}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.token as string;
    },
    async stop() {
      await node.stop();
      await tmp.cleanup();
    },
  };
}

const CLI = fileURLToPath(new URL('../../bin/fluxgate.js', import.meta.url));

/** A node in a child process; resolves once /readyz answers. Kill it with `child.kill('SIGKILL')`. */
export async function spawnNode(dataDir: string, extraEnv: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string; mqttPort?: number; output: () => string }> {
  const child = spawn(process.execPath, [CLI, 'start'], {
    env: { ...process.env, FLUXGATE_DATA_DIR: dataDir, FLUXGATE_HTTP_PORT: '0', FLUXGATE_MQTT_PORT: '0', FLUXGATE_ADMIN_KEY: ADMIN_KEY, FLUXGATE_LOG_LEVEL: 'warn', FLUXGATE_HTTP_HOST: '127.0.0.1', FLUXGATE_MQTT_HOST: '127.0.0.1', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  let exited = false;
  child.once('exit', () => { exited = true; });
  const url = await waitFor(() => {
    if (exited) throw new Error(`node exited during start:\n${out}`);
    return /HTTP\s+(http:\/\/\S+)/.exec(out)?.[1];
  }, { timeoutMs: 30_000, what: 'the node banner' });
  const mqtt = /MQTT\s+mqtt:\/\/[^:\s]+:(\d+)/.exec(out)?.[1];
  await waitFor(async () => (await fetch(url + '/readyz').catch(() => undefined))?.ok, { timeoutMs: 30_000, what: '/readyz' });
  return { child, url, mqttPort: mqtt ? Number(mqtt) : undefined, output: () => out };
}
