import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startTestNode, ADMIN_KEY, type TestNode } from '../helpers/node.js';
import { waitFor, tempDir } from '../helpers/wait.js';
import { loadConfig } from '../../src/config/load.js';
import { startNode } from '../../src/node.js';
import { createLogger } from '../../src/core/logger.js';
import { isFluxgateError } from '../../src/core/errors.js';

describe('rest - devices', () => {
  let t: TestNode;
  before(async () => { t = await startTestNode(); });
  after(() => t?.stop());

  it('creates, gets, lists with paging, rotates and deletes devices', async () => {
    assert.equal((await t.api('POST', '/api/v1/projects', { name: 'plant-1' })).status, 201);
    const created = await t.api('POST', '/api/v1/devices', { id: 'dev-a', project: 'plant-1' });
    assert.equal(created.status, 201);
    assert.equal(created.body.id, 'dev-a');
    assert.equal(created.body.project, 'plant-1');
    assert.equal(created.body.tenant, 'default');
    assert.match(created.body.token, /^fgd_/);
    assert.equal((await t.api('POST', '/api/v1/devices', { id: 'dev-a' })).body.code, 'DEVICE_EXISTS');
    for (const id of ['dev-b', 'dev-c', 'dev-d']) await t.createDevice(id);
    const got = await t.api('GET', '/api/v1/devices/dev-a');
    assert.equal(got.status, 200);
    assert.equal(got.body.token, undefined, 'a token is shown only at creation');
    const seen: string[] = [];
    let after: string | undefined;
    do {
      const page = await t.api('GET', `/api/v1/devices?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(page.status, 200);
      assert.ok(page.body.items.length <= 2);
      seen.push(...page.body.items.map((d: any) => d.id));
      after = page.body.next;
    } while (after);
    assert.deepEqual(seen.sort(), ['dev-a', 'dev-b', 'dev-c', 'dev-d']);

    const send = (token: string) => fetch(t.url + '/api/v1/devices/dev-a/telemetry', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"v":1}' });
    assert.equal((await send(created.body.token)).status, 202);
    const rotated = await t.api('POST', '/api/v1/devices/dev-a/token');
    assert.equal(rotated.status, 200);
    assert.notEqual(rotated.body.token, created.body.token);
    assert.equal((await send(created.body.token)).status, 401, 'the old token stops working at once');
    assert.equal((await send(rotated.body.token)).status, 202);

    assert.equal((await t.api('DELETE', '/api/v1/devices/dev-a')).status, 204);
    assert.equal((await t.api('GET', '/api/v1/devices/dev-a')).status, 404);
    assert.equal((await t.api('DELETE', '/api/v1/devices/dev-a')).body.code, 'DEVICE_NOT_FOUND');
    assert.equal((await send(rotated.body.token)).status, 401, 'a deleted device is refused');
  });

  it('refuses bad input and missing credentials with codes', async () => {
    assert.equal((await t.api('POST', '/api/v1/devices', { id: 'has/slash' })).body.code, 'BAD_REQUEST');
    assert.equal((await t.api('POST', '/api/v1/devices', {})).body.code, 'BAD_REQUEST');
    assert.equal((await t.api('POST', '/api/v1/devices', '{"id":')).body.code, 'BAD_JSON');
    for (const [m, p] of [['GET', '/api/v1/devices'], ['POST', '/api/v1/devices'], ['GET', '/api/v1/devices/x/latest'], ['GET', '/api/v1/devices/x/telemetry'], ['GET', '/api/v1/messages'], ['GET', '/api/v1/dead-letters']]) {
      const r = await t.api(m, p, m === 'POST' ? { id: 'zz' } : undefined, 'wrong-key');
      assert.equal(r.status, 401, `${m} ${p}`);
      assert.equal(r.body.code, 'UNAUTHENTICATED');
    }
    const r = await t.api('GET', '/api/v1/devices/nobody/latest');
    assert.equal(r.status, 404);
    assert.equal(r.body.code, 'DEVICE_NOT_FOUND');
    assert.equal((await t.api('GET', '/api/v1/nowhere')).body.code, 'NOT_FOUND');
    await t.createDevice('q1');
    assert.match((await t.api('GET', '/api/v1/devices/q1/telemetry?from=soon')).body.message, /"from"/);
    assert.match((await t.api('GET', '/api/v1/devices/q1/telemetry?key=a&interval=7x')).body.message, /"interval"/);
    assert.match((await t.api('GET', '/api/v1/devices/q1/telemetry?interval=1m')).body.message, /"key"/);
  });

  it('serves health, metrics and the OpenAPI document', async () => {
    assert.equal((await fetch(t.url + '/livez')).status, 200);
    const ready = await (await fetch(t.url + '/readyz')).json();
    assert.equal(ready.ready, true);
    assert.ok(ready.components.log && ready.components.store && ready.components.process);
    const doc = await (await fetch(t.url + '/docs/json')).json();
    assert.ok(doc.paths['/api/v1/devices/{id}/latest']);
    assert.ok(doc.paths['/api/v1/devices/{id}/{kind}']);
    const metrics = await (await fetch(t.url + '/metrics')).text();
    for (const name of ['fluxgate_messages_total', 'fluxgate_log_append_seconds', 'fluxgate_log_fsync_batch_records', 'fluxgate_consumer_lag_records', 'fluxgate_store_write_seconds', 'fluxgate_dead_letters_total']) {
      assert.match(metrics, new RegExp(`^# HELP ${name} `, 'm'), name);
    }
  });
});

describe('rest - raw archive and dead letters', () => {
  it('keeps every message as received, dead-letters what cannot be decoded, and replays it', async () => {
    const t = await startTestNode();
    try {
      await t.createDevice('raw-1', 'p1');
      const now = Date.now();
      const env = (messageId: string, payload: string) => ({ tenant: 'default', project: 'p1', device: 'raw-1', kind: 'telemetry' as const, topic: 'devices/raw-1/telemetry', protocol: 'mqtt' as const, receiveTime: now, messageId, payload: Buffer.from(payload) });
      await t.node.log.append([env('m-empty', '{}'), env('m-text', 'not json at all'), env('m-ok', '{"t":1}'), env('m-bin', '\u0000\u00ff')]);
      const archive = await waitFor(async () => {
        const r = await t.api('GET', `/api/v1/messages?project=p1&from=${now - 1000}`);
        return r.body.items?.length === 4 ? r.body.items : undefined;
      }, { what: '4 archived messages' });
      assert.deepEqual(archive.map((m: any) => m.messageId).sort(), ['m-bin', 'm-empty', 'm-ok', 'm-text']);
      assert.equal(archive.find((m: any) => m.messageId === 'm-empty').payload, '{}');
      assert.equal((await t.api('GET', `/api/v1/messages?project=other&from=${now - 1000}`)).body.items.length, 0);
      const dl = await t.api('GET', '/api/v1/dead-letters');
      assert.deepEqual(dl.body.items.map((d: any) => d.messageId).sort(), ['m-bin', 'm-text']);
      assert.match(dl.body.items.find((d: any) => d.messageId === 'm-text').reason, /not valid JSON/);
      const metrics = await (await fetch(t.url + '/metrics')).text();
      assert.match(metrics, /fluxgate_dead_letters_total\{tenant="default",reason="undecodable"\} 2/);

      const replay = await t.api('POST', '/api/v1/dead-letters/replay', { ids: [dl.body.items.find((d: any) => d.messageId === 'm-text').id] });
      assert.deepEqual(replay.body, { replayed: 1 });
      // Still undecodable: it comes back as a new dead letter, and the other stays.
      await waitFor(async () => (await t.api('GET', '/api/v1/dead-letters')).body.items.filter((d: any) => d.messageId === 'm-text').length === 1 && (await fetch(t.url + '/metrics').then((r) => r.text())).includes('reason="undecodable"} 3'), { what: 'replayed dead letter' });
      const discarded = await t.api('DELETE', '/api/v1/dead-letters', {});
      assert.deepEqual(discarded.body, { discarded: 2 });
      assert.equal((await t.api('GET', '/api/v1/dead-letters')).body.items.length, 0);
    } finally {
      await t.stop();
    }
  });
});

describe('node - lifecycle', () => {
  it('resumes processing after a restart and stores nothing twice', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let t = await startTestNode({ process: { enabled: false } }, dir);
      const token = await t.createDevice('r1');
      const body = Array.from({ length: 50 }, (_, i) => ({ ts: 1_700_000_000_000 + i, id: `r-${i}`, n: i }));
      const send = () => fetch(t.url + '/api/v1/devices/r1/telemetry', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal((await send()).status, 202);
      await t.node.stop();
      t = await startTestNode({}, dir);
      assert.equal((await send()).status, 202, 'the same messages again (a device retry)');
      const q = `/api/v1/devices/r1/telemetry?key=n&from=1700000000000&to=1700000001000&limit=1000`;
      await waitFor(async () => (await t.api('GET', '/readyz')).body.components.log.detail.startsWith('lag 0 '), { what: 'lag 0' });
      const items = (await t.api('GET', q)).body.items;
      assert.equal(items.length, 50);
      assert.deepEqual(items.map((p: any) => p.value), body.map((b) => b.n));
      await t.node.stop();
    } finally {
      await cleanup();
    }
  });

  it('removes raw history older than the retention', async () => {
    const t = await startTestNode({ tenants: { defaultRawRetentionDays: 3 }, store: { retentionIntervalMs: 1000 } });
    try {
      const token = await t.createDevice('old-1');
      const old = Date.now() - 10 * 86_400_000;
      const r = await fetch(t.url + '/api/v1/devices/old-1/telemetry', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify([{ ts: old, v: 1 }, { v: 2 }]) });
      assert.equal(r.status, 202);
      const q = `/api/v1/devices/old-1/telemetry?key=v&from=${old - 1}`;
      await waitFor(async () => (await t.api('GET', q)).body.items.length === 2 || (await t.api('GET', q)).body.items.length === 1, { what: 'points stored' });
      const left = await waitFor(async () => { const items = (await t.api('GET', q)).body.items; return items.length === 1 ? items : undefined; }, { what: 'old point removed', timeoutMs: 15_000 });
      assert.equal(left[0].value, 2);
    } finally {
      await t.stop();
    }
  });

  it('fails at start naming the setting when the HTTP port is in use', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const { dir, cleanup } = await tempDir();
    try {
      const config = loadConfig({ env: {}, overrides: { dataDir: dir, adminKey: ADMIN_KEY, http: { host: '127.0.0.1', port }, mqtt: { host: '127.0.0.1', port: 0 } } });
      await assert.rejects(startNode(config, { logger: createLogger('silent') }), (err) => isFluxgateError(err, 'PORT_IN_USE') && /http\.port \(--http-port, FLUXGATE_HTTP_PORT\)/.test(err.message));
    } finally {
      blocker.close();
      await cleanup();
    }
  });

  it('reports every configuration problem at once', () => {
    assert.throws(() => loadConfig({ env: { FLUXGATE_HTTP_PORT: 'eighty' }, flags: { 'mqtt-port': '70000', 'no-such-flag': '1' } }), (err) => {
      assert.ok(isFluxgateError(err, 'CONFIG_INVALID'));
      assert.match(err.message, /http\.port \(--http-port, FLUXGATE_HTTP_PORT\)/);
      assert.match(err.message, /mqtt\.port/);
      assert.match(err.message, /--no-such-flag/);
      return true;
    });
  });
});

describe('cli', () => {
  it('creates and lists devices against a running node', async () => {
    const t = await startTestNode();
    try {
      const cli = fileURLToPath(new URL('../../bin/fluxgate.js', import.meta.url));
      // Asynchronous on purpose: the node under test runs in this process and must keep answering.
      const run = (...args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [cli, ...args, '--url', t.url, '--key', ADMIN_KEY], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
      });
      assert.equal((await run('device', 'create', 'cli-0', '--project', 'p9')).status, 1, 'a device needs an existing project');
      assert.equal((await run('project', 'create', 'p9')).status, 0);
      const created = await run('device', 'create', 'cli-1', '--project', 'p9');
      assert.equal(created.status, 0, created.stderr);
      const token = /token: (\S+)/.exec(created.stdout)?.[1];
      assert.ok(token);
      const r = await fetch(t.url + '/api/v1/devices/cli-1/telemetry', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"x":1}' });
      assert.equal(r.status, 202);
      assert.match((await run('device', 'list')).stdout, /^cli-1\tp9\tenabled/m);
      const dup = await run('device', 'create', 'cli-1');
      assert.equal(dup.status, 1);
      assert.match(dup.stderr, /DEVICE_EXISTS/);
      assert.equal((await run('device', 'delete', 'cli-1')).status, 0);
      assert.doesNotMatch((await run('device', 'list')).stdout, /cli-1/);
    } finally {
      await t.stop();
    }
  });
});
