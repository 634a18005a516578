/**
 * @module `fluxgate tenant|key|project …` and `fluxgate device import`: tenancy commands over a running node's REST API,
 * with the key from --key / FLUXGATE_ADMIN_KEY / <data-dir>/admin.key. `--tenant T` makes the
 * platform admin key act on tenant T (header X-Fluxgate-Tenant); a tenant's own API key needs
 * no --tenant. New secrets (a tenant's first admin key, a created key) are printed once.
 */
export type RestCall = (method: string, path: string, body?: unknown) => Promise<any>;

/** A JSON REST caller for `url` with `key`, acting on `tenant` when given; errors print their code. */
export function restCaller(url: string, key: string, tenant?: string): RestCall {
  return async (method, path, body) => {
    let res: Response;
    const headers: Record<string, string> = { authorization: `Bearer ${key}` };
    if (tenant) headers['x-fluxgate-tenant'] = tenant;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new Error(`cannot reach a node at ${url} (${(err as Error).cause ?? (err as Error).message}): start one with npm start, or pass --url / FLUXGATE_URL`);
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new Error(`${json?.code ?? res.status}: ${json?.message ?? text}`);
    return json;
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** `--max-devices N` → maxDevices: each setting's flag; "default" (or "null") returns it to the node's default. */
const SETTING_FLAGS: Record<string, string> = {
  'max-devices': 'maxDevices', 'messages-per-second': 'messagesPerSecond', 'burst-messages': 'burstMessages', 'max-payload-bytes': 'maxPayloadBytes',
  'raw-retention-days': 'rawRetentionDays', 'rollup-1m-retention-days': 'rollup1mRetentionDays', 'rollup-1h-retention-days': 'rollup1hRetentionDays',
};
const SET_USAGE = `usage: fluxgate tenant set <id> [--name NAME] ${Object.keys(SETTING_FLAGS).map((f) => `[--${f} N|default]`).join(' ')}`;

/** The PATCH body of `tenant set`, or an error naming the flag. */
export function settingsPatch(flags: Record<string, string>): { name?: string; settings: Record<string, number | null> } {
  const settings: Record<string, number | null> = {};
  for (const [flag, field] of Object.entries(SETTING_FLAGS)) {
    const v = flags[flag];
    if (v === undefined) continue;
    if (v === 'default' || v === 'null') { settings[field] = null; continue; }
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a number ≥ 0 (0 = unlimited / forever) or "default", got ${JSON.stringify(v)}`);
    settings[field] = n;
  }
  return { ...(flags.name && flags.name !== 'true' ? { name: flags.name } : {}), settings };
}

function printTenant(t: any): void {
  console.log(`tenant ${t.id} (${t.name}), created ${iso(t.createdAt)}`);
  for (const [k, v] of Object.entries(t.effective as Record<string, number>)) console.log(`  ${k.padEnd(22)} ${String(v).padEnd(10)} ${k in t.settings ? '(tenant setting)' : '(node default)'}`);
}

export async function runTenant(call: RestCall, args: string[], flags: Record<string, string>): Promise<void> {
  const [verb, id] = args;
  switch (verb) {
    case 'create': {
      if (!id) throw new Error('usage: fluxgate tenant create <id> [--name NAME]');
      const r = await call('POST', '/api/v1/tenants', { id, ...(flags.name ? { name: flags.name } : {}) });
      console.log(`tenant ${r.tenant.id} created\nadmin key: ${r.key.key}\n(key id ${r.key.id}, role admin; shown once: keep it, revoke with \`fluxgate key revoke ${r.key.id} --key <key>\`)`);
      return;
    }
    case 'list':
      for (const t of (await call('GET', '/api/v1/tenants')).items) console.log(`${t.id}\t${t.name}\t${iso(t.createdAt)}`);
      return;
    case 'show':
      if (!id) throw new Error('usage: fluxgate tenant show <id>');
      printTenant(await call('GET', `/api/v1/tenants/${encodeURIComponent(id)}`));
      return;
    case 'set': {
      const patch = settingsPatch(flags);
      if (!id || (Object.keys(patch.settings).length === 0 && !patch.name)) throw new Error(SET_USAGE);
      printTenant(await call('PATCH', `/api/v1/tenants/${encodeURIComponent(id)}`, patch));
      return;
    }
    default: throw new Error(`unknown tenant command ${JSON.stringify(verb ?? '')}: use tenant create <id> | tenant list | tenant show <id> | tenant set <id> --max-devices N …`);
  }
}

export async function runKey(call: RestCall, args: string[], flags: Record<string, string>): Promise<void> {
  const [verb, id] = args;
  switch (verb) {
    case 'create': {
      const role = flags.role ?? 'read';
      const k = await call('POST', '/api/v1/keys', { role, ...(flags.name ? { name: flags.name } : {}) });
      console.log(`key ${k.id} created in tenant ${k.tenant} with role ${k.role}\nkey: ${k.key}\n(shown once: keep it; revoke with \`fluxgate key revoke ${k.id}\`)`);
      return;
    }
    case 'list':
      for (const k of (await call('GET', '/api/v1/keys')).items) console.log(`${k.id}\t${k.role}\t${k.name}\t${iso(k.createdAt)}`);
      return;
    case 'revoke':
      if (!id) throw new Error('usage: fluxgate key revoke <id>');
      await call('DELETE', `/api/v1/keys/${encodeURIComponent(id)}`);
      console.log(`key ${id} revoked`);
      return;
    default: throw new Error(`unknown key command ${JSON.stringify(verb ?? '')}: use key create --role admin|write|read [--name N] | key list | key revoke <id>`);
  }
}

export async function runProject(call: RestCall, args: string[]): Promise<void> {
  const [verb, name] = args;
  switch (verb) {
    case 'create': {
      if (!name) throw new Error('usage: fluxgate project create <name>');
      const p = await call('POST', '/api/v1/projects', { name });
      console.log(`project ${p.name} created in tenant ${p.tenant}`);
      return;
    }
    case 'list':
      for (const p of (await call('GET', '/api/v1/projects')).items) console.log(`${p.name}\t${iso(p.createdAt)}`);
      return;
    default: throw new Error(`unknown project command ${JSON.stringify(verb ?? '')}: use project create <name> | project list`);
  }
}

/**
 * `fluxgate device import <file.csv|file.json> [--out FILE]`: one bulk call (all or none). The
 * tokens come back once, as CSV id,project,token, to --out or stdout; bad rows are listed by row.
 */
export async function runDeviceImport(url: string, key: string, tenant: string | undefined, args: string[], flags: Record<string, string>): Promise<void> {
  const file = args[0];
  if (!file) throw new Error('usage: fluxgate device import <file.csv|file.json> [--out tokens.csv]');
  const { readFile, writeFile } = await import('node:fs/promises');
  let body: string;
  try {
    body = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  const csv = /\.csv$/i.test(file) || (!/\.json$/i.test(file) && !/^\s*[[{]/.test(body));
  const headers: Record<string, string> = { authorization: `Bearer ${key}`, 'content-type': csv ? 'text/csv' : 'application/json', accept: 'text/csv' };
  if (tenant) headers['x-fluxgate-tenant'] = tenant;
  let res: Response;
  try {
    res = await fetch(`${url}/api/v1/devices/bulk`, { method: 'POST', headers, body });
  } catch (err) {
    throw new Error(`cannot reach a node at ${url} (${(err as Error).cause ?? (err as Error).message}): start one with npm start, or pass --url / FLUXGATE_URL`);
  }
  const text = await res.text();
  if (!res.ok) {
    let json: any;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    const rows = (json?.errors ?? []) as Array<{ row: number; field: string; message: string }>;
    const list = rows.slice(0, 50).map((e) => `  row ${e.row}${e.field ? ` (${e.field})` : ''}: ${e.message}`).join('\n');
    throw new Error(`${json?.code ?? res.status}: ${json?.message ?? text}${list ? `\n${list}${rows.length > 50 ? `\n  … and ${rows.length - 50} more` : ''}` : ''}`);
  }
  const count = text.trim().split('\n').length - 1;
  if (flags.out && flags.out !== 'true') {
    await writeFile(flags.out, text, { mode: 0o600 });
    console.error(`${count} devices created; their tokens (shown once) are in ${flags.out}`);
  } else {
    process.stdout.write(text);
    console.error(`${count} devices created; the tokens above are shown once: keep them`);
  }
}
