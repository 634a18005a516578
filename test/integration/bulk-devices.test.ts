/**
 * @module Bulk device creation over REST (POST /api/v1/devices/bulk) and the CLI: 10,000
 * devices in one call from JSON and from CSV, all or nothing (one bad row, an existing id or
 * the device quota creates none), every problem listed by row, tokens returned once and
 * working; malformed, oversized, unauthenticated and cross-tenant calls refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ADMIN_KEY, apiClient, startTestNode, type TestNode } from '../helpers/node.js';

const CLI = fileURLToPath(new URL('../../bin/fluxgate.js', import.meta.url));

async function countDevices(api: ReturnType<typeof apiClient>): Promise<number> {
  let n = 0;
  let after: string | undefined;
  do {
    const r = await api('GET', `/api/v1/devices?limit=10000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    assert.equal(r.status, 200);
    n += r.body.items.length;
    after = r.body.next;
  } while (after);
  return n;
}

async function post(url: string, key: string, body: string, contentType: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/api/v1/devices/bulk`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': contentType, ...headers }, body });
  const text = await res.text();
  let json: any;
  try { json = JSON.parse(text); } catch { /* CSV */ }
  return { status: res.status, text, json, type: res.headers.get('content-type') ?? '' };
}

describe('bulk device creation', () => {
  let t: TestNode;
  let acmeKey: string;
  let acme: ReturnType<typeof apiClient>;

  before(async () => {
    t = await startTestNode();
    acmeKey = (await t.api('POST', '/api/v1/tenants', { id: 'acme' })).body.key.key;
    acme = apiClient(t.url, acmeKey);
    assert.equal((await acme('POST', '/api/v1/projects', { name: 'plant' })).status, 201);
  });
  after(() => t?.stop());

  it('10,000 devices with one bad row: 400 lists the row, and nothing is created', async () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => ({ id: `s-${i}`, project: 'plant' }));
    rows[4321] = { id: 'bad/id', project: 'plant' };
    const r = await post(t.url, acmeKey, JSON.stringify(rows), 'application/json');
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.equal(r.json.code, 'BAD_REQUEST');
    assert.deepEqual(r.json.errors.map((e: any) => [e.row, e.field]), [[4322, 'id']]);
    assert.equal(await countDevices(acme), 0);
  });

  it('10,000 devices from JSON in one call: all created, tokens returned once and working', async () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => ({ id: `s-${i}`, ...(i % 2 ? { project: 'plant' } : {}) }));
    const started = Date.now();
    const r = await post(t.url, acmeKey, JSON.stringify(rows), 'application/json');
    assert.equal(r.status, 201, r.text.slice(0, 300));
    assert.equal(r.json.created, 10_000);
    assert.equal(r.json.devices.length, 10_000);
    assert.deepEqual(r.json.devices[1], { id: 's-1', project: 'plant', token: r.json.devices[1].token });
    assert.equal(r.json.devices[0].project, 'default');
    assert.equal(new Set(r.json.devices.map((d: any) => d.token)).size, 10_000, 'every token differs');
    console.log(`# 10,000 devices (JSON) created in ${Date.now() - started} ms`);
    assert.equal(await countDevices(acme), 10_000);
    const d = r.json.devices[9999];
    const ingest = await fetch(`${t.url}/api/v1/devices/${d.id}/telemetry`, { method: 'POST', headers: { authorization: `Bearer ${d.token}`, 'content-type': 'application/json' }, body: '{"v":1}' });
    assert.equal(ingest.status, 202);
    // Tokens are shown once: a read never carries them.
    const got = await acme('GET', '/api/v1/devices/s-9999');
    assert.equal(got.body.project, 'plant');
    assert.ok(!JSON.stringify(got.body).includes(d.token));
  });

  it('an id that exists, or one given twice, fails the whole call with the rows named', async () => {
    const r = await post(t.url, acmeKey, JSON.stringify([{ id: 'fresh-1' }, { id: 's-5' }, { id: 'fresh-2' }, { id: 's-7' }]), 'application/json');
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.code, 'DEVICE_EXISTS');
    assert.deepEqual(r.json.errors.map((e: any) => e.row), [2, 4]);
    assert.equal((await acme('GET', '/api/v1/devices/fresh-1')).status, 404, 'nothing created');
    const twice = await post(t.url, acmeKey, JSON.stringify([{ id: 'x-1' }, { id: 'x-1' }]), 'application/json');
    assert.equal(twice.status, 400);
    assert.match(twice.json.errors[0].message, /also in row 1/);
    assert.equal((await acme('GET', '/api/v1/devices/x-1')).status, 404);
  });

  it('CSV in, CSV out (Accept: text/csv); quoting and a BOM are read; a missing project is a row error', async () => {
    const csv = '\ufeffid,project\r\nc-1,plant\r\n"c-2",\r\nc-3,plant\r\n';
    const r = await post(t.url, acmeKey, csv, 'text/csv', { accept: 'text/csv' });
    assert.equal(r.status, 201, r.text);
    assert.match(r.type, /text\/csv/);
    const lines = r.text.trim().split('\n');
    assert.equal(lines[0], 'id,project,token');
    assert.deepEqual(lines.slice(1).map((l) => l.split(',').slice(0, 2).join(',')), ['c-1,plant', 'c-2,default', 'c-3,plant']);
    assert.equal((await acme('GET', '/api/v1/devices/c-2')).body.project, 'default');
    const missing = await post(t.url, acmeKey, 'id,project\nc-4,plant\nc-5,nowhere\nc-6,\n', 'text/csv');
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json.errors, [{ row: 2, field: 'project', message: 'no project nowhere in tenant acme: create it first (POST /api/v1/projects)' }]);
    assert.equal((await acme('GET', '/api/v1/devices/c-4')).status, 404);
  });

  it('malformed bodies get 400 with a reason and create nothing', async () => {
    const before = await countDevices(acme);
    const cases: Array<[string, string]> = [
      ['{"id":"a"}', 'application/json'],
      ['[{"id":"a"', 'application/json'],
      ['[]', 'application/json'],
      ['[1, null, {"id": 5}, {"id": "ok", "colour": "red"}]', 'application/json'],
      ['name,project\na,plant\n', 'text/csv'],
      ['id,project\na,plant,extra\n', 'text/csv'],
      ['', 'text/csv'],
    ];
    for (const [body, type] of cases) {
      const r = await post(t.url, acmeKey, body, type);
      assert.equal(r.status, 400, `${type} ${body} → ${r.status} ${r.text}`);
      assert.ok(r.json.message.length > 10);
    }
    const rows = await post(t.url, acmeKey, '[1, null, {"id": 5}, {"id": "ok", "colour": "red"}]', 'application/json');
    assert.deepEqual(rows.json.errors.map((e: any) => [e.row, e.field]), [[1, ''], [2, ''], [3, 'id'], [4, 'colour']]);
    const tooMany = await post(t.url, acmeKey, JSON.stringify(Array.from({ length: 10_001 }, (_, i) => ({ id: `m-${i}` }))), 'application/json');
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.json.message, /more than 10000/);
    const xml = await post(t.url, acmeKey, '<devices/>', 'application/xml');
    assert.equal(xml.status, 415);
    assert.equal(await countDevices(acme), before);
  });

  it('unauthenticated, read-only and cross-tenant calls are refused', async () => {
    assert.equal((await fetch(`${t.url}/api/v1/devices/bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{"id":"z"}]' })).status, 401);
    const readKey = (await acme('POST', '/api/v1/keys', { role: 'read' })).body.key;
    assert.equal((await post(t.url, readKey, '[{"id":"z"}]', 'application/json')).status, 403);
    const betaKey = (await t.api('POST', '/api/v1/tenants', { id: 'beta' })).body.key.key;
    // beta has no project plant; naming acme is forbidden.
    const r = await post(t.url, betaKey, '[{"id":"z","project":"plant"}]', 'application/json');
    assert.equal(r.status, 400);
    assert.equal(r.json.errors[0].field, 'project');
    assert.equal((await post(t.url, betaKey, '[{"id":"z"}]', 'application/json', { 'x-fluxgate-tenant': 'acme' })).status, 403);
    assert.equal((await acme('GET', '/api/v1/devices/z')).status, 404);
  });

  it('the device quota holds for bulk and single creation; nothing is created past it, and it is counted', async () => {
    assert.equal((await t.api('POST', '/api/v1/tenants', { id: 'small' })).status, 201);
    assert.equal((await t.api('PATCH', '/api/v1/tenants/small', { settings: { maxDevices: 5 } })).status, 200);
    const small = apiClient(t.url, (await t.api('POST', '/api/v1/keys?tenant=small', { role: 'admin' })).body.key);
    const r = await post(t.url, ADMIN_KEY, JSON.stringify(Array.from({ length: 6 }, (_, i) => ({ id: `q-${i}` }))), 'application/json', { 'x-fluxgate-tenant': 'small' });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.code, 'QUOTA_DEVICES');
    assert.equal(await countDevices(small), 0);
    assert.equal((await post(t.url, ADMIN_KEY, JSON.stringify(Array.from({ length: 4 }, (_, i) => ({ id: `q-${i}` }))), 'application/json', { 'x-fluxgate-tenant': 'small' })).status, 201);
    assert.equal((await small('POST', '/api/v1/devices', { id: 'q-4' })).status, 201);
    const over = await small('POST', '/api/v1/devices', { id: 'q-5' });
    assert.equal(over.status, 403);
    assert.equal(over.body.code, 'QUOTA_DEVICES');
    assert.equal(await countDevices(small), 5);
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /fluxgate_quota_refused_total\{tenant="small",quota="devices"\} 7/);
    // Raising the quota applies at once.
    assert.equal((await t.api('PATCH', '/api/v1/tenants/small', { settings: { maxDevices: 6 } })).status, 200);
    assert.equal((await small('POST', '/api/v1/devices', { id: 'q-5' })).status, 201);
  });

  it('fluxgate device import <file.csv> creates the devices and prints their tokens; a bad file creates none and names the row', async () => {
    const dir = t.dir;
    const good = join(dir, 'devices.csv');
    await writeFile(good, 'id,project\ncli-1,plant\ncli-2,plant\n');
    const run = (file: string) => promisify(execFile)(process.execPath, [CLI, 'device', 'import', file, '--url', t.url, '--key', acmeKey], { env: { ...process.env, FLUXGATE_ADMIN_KEY: '' } })
      .then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
    const ok = await run(good);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^id,project,token\ncli-1,plant,fgd_\S+\ncli-2,plant,fgd_\S+\n$/);
    assert.equal((await acme('GET', '/api/v1/devices/cli-2')).status, 200);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify([{ id: 'cli-3' }, { id: '' }]));
    const refused = await run(bad);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /row 2 \(id\)/);
    assert.equal((await acme('GET', '/api/v1/devices/cli-3')).status, 404);
  });
});
