/**
 * @module Tenants, API keys with roles and projects over REST and the CLI, against a real node:
 * the platform admin creates tenants and names the tenant it acts on; a tenant key acts only on
 * its tenant; read < write < admin; a revoked key is refused at once; a device needs a project.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_KEY, apiClient, startTestNode, type TestNode } from '../helpers/node.js';

/** fetch with a key and extra headers; JSON in and out. */
async function call(url: string, method: string, path: string, key: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe('tenants - keys, roles and projects over REST', () => {
  let t: TestNode;
  before(async () => { t = await startTestNode(); });
  after(() => t?.stop());

  it('the platform admin creates a tenant with its first admin key, shown once; only the platform admin manages tenants', async () => {
    const created = await t.api('POST', '/api/v1/tenants', { id: 'acme', name: 'Acme Corp' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual({ ...created.body.tenant, createdAt: 0 }, { id: 'acme', name: 'Acme Corp', createdAt: 0 });
    assert.equal(created.body.key.role, 'admin');
    assert.equal(created.body.key.tenant, 'acme');
    assert.match(created.body.key.key, /^fgk_/);
    assert.equal((await t.api('POST', '/api/v1/tenants', { id: 'acme' })).body.code, 'TENANT_EXISTS');
    assert.equal((await t.api('POST', '/api/v1/tenants', { id: 'has/slash' })).body.code, 'BAD_REQUEST');
    const listed = await t.api('GET', '/api/v1/tenants');
    assert.deepEqual(listed.body.items.map((x: any) => x.id), ['acme', 'default']);
    const acme = created.body.key.key as string;
    for (const [m, body] of [['GET', undefined], ['POST', { id: 'evil' }]] as const) {
      const r = await call(t.url, m, '/api/v1/tenants', acme, { body });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'FORBIDDEN');
    }
    // The key is never shown again.
    const keys = await call(t.url, 'GET', '/api/v1/keys', acme);
    assert.deepEqual(keys.body.items.map((k: any) => [k.id, k.role, 'key' in k, 'keyHash' in k]), [[created.body.key.id, 'admin', false, false]]);
    assert.deepEqual((await call(t.url, 'GET', '/api/v1/projects', acme)).body.items.map((p: any) => p.name), ['default']);
  });

  it('roles - read only GETs, write changes devices and dead letters, admin also manages keys and projects', async () => {
    const admin = (await t.api('POST', '/api/v1/tenants', { id: 'roles' })).body.key.key as string;
    const mk = async (role: string) => {
      const r = await call(t.url, 'POST', '/api/v1/keys', admin, { body: { role, name: `${role} key` } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.role, role);
      return r.body.key as string;
    };
    const read = await mk('read');
    const write = await mk('write');
    const code = async (key: string, m: string, p: string, body?: unknown) => {
      const r = await call(t.url, m, p, key, { body });
      return r.status >= 400 ? r.body.code : r.status;
    };
    assert.equal(await code(read, 'GET', '/api/v1/devices'), 200);
    assert.equal(await code(read, 'GET', '/api/v1/projects'), 200);
    assert.equal(await code(read, 'POST', '/api/v1/devices', { id: 'r1' }), 'FORBIDDEN');
    assert.equal(await code(read, 'POST', '/api/v1/dead-letters/replay', {}), 'FORBIDDEN');
    assert.equal(await code(read, 'GET', '/api/v1/keys'), 'FORBIDDEN');

    assert.equal(await code(write, 'POST', '/api/v1/devices', { id: 'w1' }), 201);
    assert.equal(await code(write, 'PATCH', '/api/v1/devices/w1', { disabled: true }), 200);
    assert.equal(await code(write, 'POST', '/api/v1/dead-letters/replay', {}), 200);
    assert.equal(await code(write, 'DELETE', '/api/v1/dead-letters', {}), 200);
    assert.equal(await code(write, 'POST', '/api/v1/keys', { role: 'read' }), 'FORBIDDEN');
    assert.equal(await code(write, 'GET', '/api/v1/keys'), 'FORBIDDEN');
    assert.equal(await code(write, 'POST', '/api/v1/projects', { name: 'line-1' }), 'FORBIDDEN');

    assert.equal(await code(admin, 'POST', '/api/v1/projects', { name: 'line-1' }), 201);
    assert.equal(await code(admin, 'POST', '/api/v1/projects', { name: 'line-1' }), 'PROJECT_EXISTS');
    assert.equal(await code(admin, 'POST', '/api/v1/projects', { name: 'a/b' }), 'BAD_REQUEST');
    assert.equal(await code(write, 'POST', '/api/v1/devices', { id: 'w2', project: 'line-2' }), 'PROJECT_NOT_FOUND');
    assert.equal(await code(write, 'POST', '/api/v1/devices', { id: 'w2', project: 'line-1' }), 201);
    assert.equal(await code(write, 'PATCH', '/api/v1/devices/w2', { project: 'nope' }), 'PROJECT_NOT_FOUND');
    assert.equal(await code(write, 'PATCH', '/api/v1/devices/w2', { project: 'default' }), 200);
    assert.equal(await code(admin, 'POST', '/api/v1/keys', { role: 'root' }), 'BAD_REQUEST');
    const keys = (await call(t.url, 'GET', '/api/v1/keys', admin)).body.items;
    assert.deepEqual(keys.map((k: any) => k.role).sort(), ['admin', 'read', 'write']);
    // The devices are the tenant's own: the default tenant does not see them.
    assert.equal((await t.api('GET', '/api/v1/devices/w1')).status, 404);
  });

  it('the platform admin names its tenant by header or query; a tenant key naming another tenant is FORBIDDEN; revocation is at once', async () => {
    const made = (await t.api('POST', '/api/v1/tenants', { id: 'named' })).body.key;
    const key = made.key as string;
    assert.equal((await call(t.url, 'POST', '/api/v1/devices', ADMIN_KEY, { body: { id: 'n1' }, headers: { 'x-fluxgate-tenant': 'named' } })).status, 201);
    assert.equal((await call(t.url, 'GET', '/api/v1/devices/n1?tenant=named', ADMIN_KEY)).body.tenant, 'named');
    assert.equal((await call(t.url, 'GET', '/api/v1/devices/n1', ADMIN_KEY)).status, 404, 'without a name the admin key acts on default');
    assert.equal((await call(t.url, 'GET', '/api/v1/devices?tenant=nope', ADMIN_KEY)).body.code, 'TENANT_NOT_FOUND');
    assert.equal((await call(t.url, 'GET', '/api/v1/devices/n1', key)).body.tenant, 'named');
    assert.equal((await call(t.url, 'GET', '/api/v1/devices/n1?tenant=named', key)).status, 200);
    assert.equal((await call(t.url, 'GET', '/api/v1/devices', key, { headers: { 'x-fluxgate-tenant': 'default' } })).body.code, 'FORBIDDEN');
    assert.equal((await call(t.url, 'GET', '/api/v1/devices?tenant=acme', key)).body.code, 'FORBIDDEN');

    const spare = (await call(t.url, 'POST', '/api/v1/keys', key, { body: { role: 'read' } })).body;
    assert.equal((await call(t.url, 'GET', '/api/v1/devices', spare.key)).status, 200);
    assert.equal((await call(t.url, 'DELETE', `/api/v1/keys/${spare.id}`, key)).status, 204);
    const refused = await call(t.url, 'GET', '/api/v1/devices', spare.key);
    assert.equal(refused.status, 401, 'a revoked key is refused at once, cache or not');
    assert.equal(refused.body.code, 'UNAUTHENTICATED');
    assert.equal((await call(t.url, 'DELETE', `/api/v1/keys/${spare.id}`, key)).body.code, 'API_KEY_NOT_FOUND');
    // A tenant admin can revoke its own last key; after that only the platform admin acts on the tenant.
    assert.equal((await call(t.url, 'DELETE', `/api/v1/keys/${made.id}`, key)).status, 204);
    assert.equal((await call(t.url, 'GET', '/api/v1/devices', key)).status, 401);
  });

  it('cli - tenant, key and project commands', async () => {
    const cli = fileURLToPath(new URL('../../bin/fluxgate.js', import.meta.url));
    const run = (key: string, ...args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, ...args, '--url', t.url, '--key', key], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    });
    const made = await run(ADMIN_KEY, 'tenant', 'create', 'cli-co', '--name', 'CLI Co');
    assert.equal(made.status, 0, made.stderr);
    const admin = /admin key: (\S+)/.exec(made.stdout)?.[1];
    assert.ok(admin, made.stdout);
    assert.match((await run(ADMIN_KEY, 'tenant', 'list')).stdout, /^cli-co\tCLI Co\t/m);
    assert.match((await run(admin, 'tenant', 'list')).stderr, /FORBIDDEN/);
    assert.equal((await run(admin, 'project', 'create', 'plant-9')).status, 0);
    assert.match((await run(admin, 'project', 'list')).stdout, /^default\t.*\nplant-9\t/m);
    // The platform admin acts on the tenant with --tenant.
    assert.match((await run(ADMIN_KEY, 'project', 'list', '--tenant', 'cli-co')).stdout, /plant-9/);
    assert.equal((await run(admin, 'device', 'create', 'cd-1', '--project', 'plant-9')).status, 0);
    const k = await run(admin, 'key', 'create', '--role', 'read', '--name', 'dashboard');
    assert.equal(k.status, 0, k.stderr);
    const [, id, secret] = /key (\S+) created[\s\S]*\nkey: (\S+)/.exec(k.stdout) ?? [];
    assert.ok(id && secret, k.stdout);
    assert.match((await run(admin, 'key', 'list')).stdout, new RegExp(`^${id}\\tread\\tdashboard\\t`, 'm'));
    assert.match((await run(secret, 'device', 'list')).stdout, /^cd-1\tplant-9\tenabled/m);
    assert.equal((await run(admin, 'key', 'revoke', id)).status, 0);
    assert.match((await run(secret, 'device', 'list')).stderr, /UNAUTHENTICATED/);
    const api = apiClient(t.url, admin);
    assert.equal((await api('GET', '/api/v1/devices/cd-1')).body.project, 'plant-9');
  });
});
