/**
 * @module `fluxgate tenant|key|project …`: tenancy commands over a running node's REST API,
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
    default: throw new Error(`unknown tenant command ${JSON.stringify(verb ?? '')}: use tenant create <id> | tenant list`);
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
